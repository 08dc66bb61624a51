"""The local queue follows its replication group: the stand-in's ElastiCache made real.

moto records a replication group and serves nothing, so on this machine the queue
would never come and never go. This agent (`python -m tlops.local.queue_agent`,
one of the local stack's services, like the node agent) closes that gap. Every
`--poll` seconds it looks up the queue's current group in the stand-in, by its
tags and id prefix, as control does (tlops.control.queue), and makes one real
`redis-server` on the stack's queue port match it:

- a group appears (created: the deploy, or a wake after a sleep): after
  `--delay` seconds, standing for ElastiCache's minutes of creation, a
  redis-server starts on the port, its data under `<state dir>/queue/<group id>`;
- the group is deleted (the stack falls asleep, teardown, the budget killer):
  the server is stopped and its data removed, as ElastiCache's would be;
- the server dies or stops answering (a hang): it is ended (SIGKILL after
  `--term-timeout`) and started again on the same data, while the group exists.

What it runs is written to `--state-file` (JSON): the group, the server's pid
(`tlops local status` and the stack's `pids.redis`), and what it waits for. On
SIGTERM it stops the server (the stack going down) and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tlops.common import aws
from tlops.common.telemetry import Telemetry
from tlops.control import queue
from tlops.local import services

DEFAULT_DELAY_S = 3.0  # ElastiCache takes minutes; the demo and the tests a few seconds
HANG_LOOKS = 3  # PINGs in a row without an answer before the server counts as hung
TERM_TIMEOUT_S = 10.0


class QueueAgent:
    def __init__(
        self,
        *,
        project: str,
        prefix: str,
        port: int,
        data_root: Path,
        state_file: Path,
        delay_s: float = DEFAULT_DELAY_S,
        poll_s: float = 0.5,
        telemetry: Telemetry | None = None,
    ):
        self.project, self.prefix, self.port = project, prefix, port
        self.data_root, self.state_file = data_root, state_file
        self.delay_s, self.poll_s = delay_s, poll_s
        self.log = telemetry or Telemetry("queue-agent")
        self.stop_event = threading.Event()
        self.group: str | None = None  # the group the server belongs to (or will)
        self.seen_at = 0.0  # when that group was first seen
        self.server: subprocess.Popen | None = None
        self.unanswered = 0
        self._elasticache: Any = None
        self._lookup_failed = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _current(self) -> str | bool | None:
        """The current group's id, None when there is none, False when the stand-in did not
        answer (the last known group stands)."""
        if self._elasticache is None:
            self._elasticache = aws.client(
                "elasticache", connect_timeout=1, read_timeout=5, max_attempts=1
            )
        try:
            found = queue.current(
                queue.ours(self._elasticache, self.prefix, queue.tags_for(self.project))
            )
        except queue.QueueError as exc:
            if not self._lookup_failed:
                self.log.log("WARNING", "group lookup failed", reason=str(exc))
            self._lookup_failed = True
            return False
        self._lookup_failed = False
        return found["ReplicationGroupId"] if found else None

    # --- one look --------------------------------------------------------------------
    def step(self) -> None:
        current = self._current()
        if current is False:
            self._write_state()
            return
        if current != self.group:
            if self.group is not None:
                self._stop_server()
                self._forget(self.group)
                self.log.log("INFO", "the queue's group is gone: its data too", group=self.group)
            self.group, self.seen_at = current, time.monotonic()
            if current is not None:
                self.log.log("INFO", "a queue group appeared", group=current,
                             servesInS=self.delay_s)  # fmt: skip
        if self.group is not None and time.monotonic() - self.seen_at >= self.delay_s:
            self._keep_serving()
        self._write_state()

    def _keep_serving(self) -> None:
        if self.server is not None and self.server.poll() is not None:
            self.log.log("WARNING", "redis-server exited: starting it again",
                         code=self.server.returncode)  # fmt: skip
            self.server = None
        if self.server is not None and not self._answers():
            self.unanswered += 1
            if self.unanswered >= HANG_LOOKS:
                self.log.log(
                    "WARNING", "redis-server does not answer: ending it", pid=self.server.pid
                )
                self._stop_server()
        else:
            self.unanswered = 0
        if self.server is None:
            self._start_server()

    def _answers(self) -> bool:
        return services.redis_answers(self.url)

    def _start_server(self) -> None:
        assert self.group is not None
        owner = services.port_owner(self.port) if services.port_in_use(self.port) else None
        if owner is not None:
            # A server of ours from before (this agent restarted): end it, it is unsupervised.
            if _is_redis_server(owner):
                _end(owner, TERM_TIMEOUT_S)
            else:
                self.log.log("ERROR", "the queue's port is taken", port=self.port,
                             by=services.describe_pid(owner))  # fmt: skip
                return
        data = self.data_root / self.group
        log = (self.data_root / "redis.log").open("ab")
        self.server = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            services.redis_command(self.port, data, persist=True),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.unanswered = 0
        with contextlib.suppress(services.ServiceError):
            services.wait_until(self._answers, f"redis-server on port {self.port}", timeout=10)
        self.log.log("INFO", "redis-server serves the queue", group=self.group,
                     pid=self.server.pid, port=self.port)  # fmt: skip

    def _stop_server(self) -> None:
        if self.server is None:
            return
        _end(self.server.pid, TERM_TIMEOUT_S)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.server.wait(timeout=1)
        self.server = None

    def _forget(self, group: str) -> None:
        shutil.rmtree(self.data_root / group, ignore_errors=True)

    def _write_state(self) -> None:
        serving = self.server is not None and self.server.poll() is None
        report = {
            "group": self.group,
            "redis_pid": self.server.pid if serving else None,
            "port": self.port,
            "status": "serving" if serving else ("creating" if self.group else "absent"),
        }
        services.write_agent_state(self.state_file, report)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop_event.set())
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.log.log("INFO", "queue agent started", port=self.port, delayS=self.delay_s)
        try:
            while not self.stop_event.is_set():
                self.step()
                self.stop_event.wait(self.poll_s)
        finally:
            self._stop_server()
            self._write_state()
            self.log.log("INFO", "queue agent stopped")
        return 0


def _is_redis_server(pid: int) -> bool:
    return "redis-server" in services.describe_pid(pid)


def _end(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout` (a stopped process ignores SIGTERM until it is
    continued), and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)  # a hung (stopped) server takes its SIGTERM now
    if services.wait_gone(pid, timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    services.wait_gone(pid, 5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlops.local.queue_agent", description=__doc__)
    parser.add_argument("--project", required=True, help="the Project tag of the queue")
    parser.add_argument("--prefix", required=True, help="the queue groups' id prefix")
    parser.add_argument("--port", type=int, required=True, help="the port redis-server serves")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY_S,
                        help="seconds from a group's creation until it serves")  # fmt: skip
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between lookups")
    args = parser.parse_args(argv)
    return QueueAgent(
        project=args.project, prefix=args.prefix, port=args.port, data_root=args.data_root,
        state_file=args.state_file, delay_s=args.delay, poll_s=args.poll,
    ).run()  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

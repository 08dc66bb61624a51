"""The local node follows its instance record: the stand-in's power switch for the node.

moto changes an instance's state and runs nothing, so on this machine a
stopped node would keep serving and a started one would never boot. This agent
(`python -m tlops.local.node_agent`, one of the local stack's services) closes
that gap. Every `--poll` seconds it looks the node's instance up in the
stand-in by its tags (`Project`, `Role=gpu`, as the router does) and makes the
node's supervisord match it, as the instance's own init system would:

- instance `pending` or `running`, supervisord down: start it (`supervisord -c
  CONFIG`); its programs start, the boot reporter among them, which writes the
  boot phases to Redis;
- instance `stopped`, `stopping`, terminated or gone, supervisord up: shut it
  down (`supervisorctl shutdown`), which stops every program, vLLM included.

So the watchdog's StopInstances, `POST /stop` and teardown really stop the
node, and the router's cold boot really boots it. The agent also serves the
node's instance metadata (`tlops.local.imds`) for whichever instance the
stand-in holds, since the programs ask IMDSv2 who they are. On SIGTERM it
shuts supervisord down (the stack going down is the power going off) and exits.

What it saw is written to `--state-file` (JSON) for `tlops local status`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tlops.common import aws
from tlops.common.telemetry import Telemetry
from tlops.contract.states import NODE_UP_STATES
from tlops.control import node as gpu_node
from tlops.local import services, supervisor
from tlops.local.imds import ImdsDouble

SHUTDOWN_TIMEOUT_S = 90.0  # supervisord waits up to each program's stopwaitsecs


class Supervisord:
    """The node's supervisord, by its config and pid file (it daemonizes itself)."""

    def __init__(self, config: Path, pidfile: Path):
        self.config, self.pidfile = config, pidfile

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if services.pid_alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        subprocess.run(  # noqa: S603 - fixed argv, no shell
            [supervisor.supervisord_binary(), "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=True,
        )
        services.wait_until(lambda: self.running, f"supervisord ({self.config})", timeout)

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
        pid = self.pid()
        if pid is None:
            return
        children = services.child_pids(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # supervisord stops its programs, then exits
        services.wait_gone(pid, timeout)
        for group in (pid, *children):  # what outlived it (each program leads its group)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)


class NodeAgent:
    def __init__(
        self,
        project: str,
        supervisord: Supervisord,
        imds: ImdsDouble,
        state_file: Path,
        *,
        poll_s: float = 1.0,
        telemetry: Telemetry | None = None,
    ):
        self.project = project
        self.supervisord = supervisord
        self.imds = imds
        self.state_file = state_file
        self.poll_s = poll_s
        self.log = telemetry or Telemetry("node-agent")
        self.stop_event = threading.Event()
        self.instance: gpu_node.Node | None = None
        self._ec2: Any = None
        self._lookup_failed = False
        self._last_instance_id: str | None = None

    def _find(self) -> gpu_node.Node | bool | None:
        """The node's instance, None when there is none, False when the stand-in did not
        answer (the last known state stands)."""
        if self._ec2 is None:
            self._ec2 = aws.client("ec2", connect_timeout=1, read_timeout=5, max_attempts=1)
        try:
            found = gpu_node.find(self._ec2, self.project)
        except gpu_node.NodeUnavailable as exc:
            if not self._lookup_failed:
                self.log.log("WARNING", "instance lookup failed", reason=str(exc))
            self._lookup_failed = True
            return False
        self._lookup_failed = False
        return found

    def step(self) -> None:
        found = self._find()
        if found is False:
            return
        self.instance = found
        self._write_instance_id(found.instance_id if found else "")
        wanted = found is not None and found.state in NODE_UP_STATES
        up = self.supervisord.running
        if wanted and not up:
            self.log.log("INFO", "instance running: starting the node's services",
                         instance=found.instance_id)  # fmt: skip
            try:
                self.supervisord.start()
            except (OSError, subprocess.SubprocessError, services.ServiceError) as exc:
                self.log.log("ERROR", "supervisord did not start", reason=str(exc))
        elif up and not wanted:
            self._write_state()  # the instance's new state is known now, the shutdown takes time
            state = found.state if found else "absent"
            self.log.log("INFO", f"instance {state}: stopping the node's services",
                         instance=found.instance_id if found else None)  # fmt: skip
            self.supervisord.shutdown()
        self._write_state()

    def _write_instance_id(self, instance_id: str) -> None:
        """What the metadata double answers (it reads this file on every request)."""
        path = self.imds.instance_id_file
        if path is not None and self._last_instance_id != instance_id:
            temporary = path.with_suffix(".tmp")
            temporary.write_text(instance_id + "\n")
            temporary.replace(path)
            self._last_instance_id = instance_id

    def _write_state(self) -> None:
        report = {
            "instance": self.instance.instance_id if self.instance else None,
            "instance_state": self.instance.state if self.instance else None,
            "services": "running" if self.supervisord.running else "stopped",
            "imds_url": self.imds.url,
        }
        services.write_agent_state(self.state_file, report)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop_event.set())
        self.imds.start()
        self.log.log("INFO", "node agent started", imds=self.imds.url, project=self.project)
        try:
            while not self.stop_event.is_set():
                self.step()
                self.stop_event.wait(self.poll_s)
        finally:
            self.supervisord.shutdown()
            self.imds.stop()
            self._write_state()
            self.log.log("INFO", "node agent stopped")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlops.local.node_agent", description=__doc__)
    parser.add_argument("--project", required=True, help="the Project tag of the node")
    parser.add_argument("--supervisor-config", type=Path, required=True)
    parser.add_argument("--supervisor-pidfile", type=Path, required=True)
    parser.add_argument("--imds-port", type=int, required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between lookups")
    args = parser.parse_args(argv)
    agent = NodeAgent(
        args.project,
        Supervisord(args.supervisor_config, args.supervisor_pidfile),
        ImdsDouble(
            instance_id_file=args.state_file.with_name("node-instance-id"), port=args.imds_port
        ),
        args.state_file,
        poll_s=args.poll,
    )
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())

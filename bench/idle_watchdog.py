"""Idle watchdog precision: stop time minus deadline, the timer against a cron-only tick.

Each run is one idle node: a tagged, running instance in a moto server, the
IMDSv2 double answering its id, an activity file whose deadline falls at a
random phase of the tick, and a watchdog ticking every watchdog minute (its
`run` loop, in a thread) until it has stopped its node. Half the runs arm the
timer (the watchdog as shipped), half decide once per tick (the cron-only
baseline), all at the same time against the same Redis and moto. The figure
is the time StopInstances returned minus the deadline.

Idle times are scaled by `--minute-seconds` (one watchdog minute; 60 is the
real thing). The cron-only lateness scales with it (up to one tick); the
timer's does not (it is a sleep's accuracy plus one decision), so the cron-only
figure is also printed as what it would be with 60-second ticks. Figures, not
a test.

    PYTHONPATH=src:. .venv/bin/python bench/idle_watchdog.py [--runs 50] [--minute-seconds 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from tests.doubles.ec2 import tagged_instance
from tlops.common import aws
from tlops.common.telemetry import Telemetry
from tlops.local.imds import ImdsDouble
from tlops.local.services import MotoProcess, RedisProcess
from tlops.node.activity import Activity, now_ms
from tlops.node.watchdog import Watchdog, WatchdogSettings


class StopWatch:
    """The log stream of one watchdog: halts it once it logs its stop, and keeps the stop."""

    def __init__(self):
        self.watchdog: Watchdog | None = None
        self.stop: dict | None = None
        self.decisions: list[str] = []

    def write(self, text: str) -> None:
        for line in text.splitlines():
            record = json.loads(line)
            self.decisions.append(record["message"])
            if record["message"] == "stopped" and "stopped_ms" in record:
                self.stop = record
                if self.watchdog is not None:
                    self.watchdog.halt.set()

    def flush(self) -> None:
        pass


def one_run(root: Path, index: int, *, timer: bool, minute_s: float, redis_url: str, clients):
    instance = tagged_instance(stopped=False)
    imds = ImdsDouble(instance).start()
    state_dir = root / f"run-{index}"
    settings = WatchdogSettings(
        redis_url=redis_url, state_dir=state_dir, imds_url=imds.url, minute_s=minute_s
    )
    watch = StopWatch()
    watchdog = Watchdog(
        settings,
        telemetry=Telemetry("idle_watchdog", stream=watch),
        ec2=clients[0],
        cloudwatch=clients[1],
        timer=timer,
        boot=lambda: 0,
    )
    watch.watchdog = watchdog

    def go() -> None:
        # Nodes do not tick in step: each starts within half a minute of the others. Its
        # last activity was a random part of a minute ago, so the deadline's phase against
        # its ticks is random, as a real job's end is against cron's minutes; 2 or 3
        # minutes of idle put the deadline after the first tick.
        time.sleep(random.uniform(0, minute_s / 2))
        marks = Activity(state_dir)
        marks.mark(now_ms() - round(random.uniform(0, minute_s) * 1000), idle=random.choice((2, 3)))
        marks.flush(force=True)
        watchdog.run()

    return threading.Thread(target=go, daemon=True), watch, imds


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="runs of each kind (default 50)")
    parser.add_argument("--minute-seconds", type=float, default=2.0, help="one watchdog minute")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-watchdog-") as tmp:
        root = Path(tmp)
        moto = MotoProcess(root / "moto")
        (root / "moto").mkdir()
        moto.start()
        redis = RedisProcess(root / "redis")
        redis.start()
        os.environ.update(
            TL_AWS_ENDPOINT_URL=moto.url,
            TL_AWS_REGION="eu-west-1",
            AWS_ACCESS_KEY_ID="standin-key-id",
            AWS_SECRET_ACCESS_KEY="standin-secret",
        )
        clients = (aws.client("ec2"), aws.client("cloudwatch"))
        runs = []
        try:
            kinds = [True] * args.runs + [False] * args.runs
            random.shuffle(kinds)
            for index, timer in enumerate(kinds):
                runs.append(
                    (
                        timer,
                        *one_run(
                            root,
                            index,
                            timer=timer,
                            minute_s=args.minute_seconds,
                            redis_url=redis.url,
                            clients=clients,
                        ),
                    )
                )
            started = time.monotonic()
            for _, thread, _, _ in runs:
                thread.start()
            for _, thread, watch, _ in runs:
                thread.join(timeout=args.minute_seconds * 8 + 60)
                if watch.watchdog is not None:
                    watch.watchdog.halt.set()
            wall_s = time.monotonic() - started
        finally:
            for _, _, _, imds in runs:
                imds.stop()
            redis.stop()
            moto.stop()

    late: dict[bool, list[float]] = {True: [], False: []}
    missing = 0
    for timer, _, watch, _ in runs:
        if watch.stop is None:
            missing += 1
            continue
        late[timer].append((watch.stop["stopped_ms"] - watch.stop["deadline_ms"]) / 1000)
    print(
        f"idle watchdog precision, {args.runs} runs of each kind at once, watchdog minute "
        f"{args.minute_seconds:g} s; {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{platform.machine()}, {datetime.date.today().isoformat()}, {wall_s:.0f} s"
    )
    if missing:
        print(f"runs that did not stop their node: {missing}")
    print("stop time minus deadline (s): p50 / p99 / max / min")
    for timer, name in ((True, "minute tick + timer"), (False, "minute tick only (cron)")):
        values = late[timer]
        print(
            f"  {name:<25} {statistics.median(values):8.3f} / {percentile(values, 0.99):8.3f}"
            f" / {max(values):8.3f} / {min(values):8.3f}   ({len(values)} runs)"
        )
    timer_p99, cron_p99 = percentile(late[True], 0.99), percentile(late[False], 0.99)
    scale = 60 / args.minute_seconds
    print(f"cron-only p99 / timer p99: {cron_p99 / max(timer_p99, 1e-6):.0f}x")
    print(
        f"cron-only with 60 s ticks (scaled x{scale:g}): p50 "
        f"{statistics.median(late[False]) * scale:.1f} s, p99 {cron_p99 * scale:.1f} s; "
        f"the timer's lateness does not scale with the tick (goal: p99 within 2 s)"
    )


if __name__ == "__main__":
    main()

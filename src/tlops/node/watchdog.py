"""The idle watchdog: stops this instance once it has been idle for the idle time.

`python -m tlops.node.watchdog tick` makes one decision (cron runs it every
minute on an instance); `python -m tlops.node.watchdog run` ticks every minute
until SIGTERM (supervisord runs it on the local node). One tick:

1. IMDSv2: a token, then this instance's id.
2. What decides (`tlops.node.idle`): jobs the `watchers` group has not
   acknowledged, the heartbeat's in-flight count, the activity file (last
   activity and the newest job's idle minutes), the boot time.
3. Busy or not yet idle long enough: log it and return. If the deadline falls
   before the next tick could see it, sleep until the deadline and decide
   again from a fresh look (a job may have come): a cron tick alone would stop
   up to a minute late; the timer stops within milliseconds of the deadline.
4. Due: StopInstances on its own id, then `AutoStops` to CloudWatch.

Any doubt means no stop: IMDS, Redis or the activity file that cannot be read,
or EC2 refusing, is logged with its reason and the next tick tries again.
A lock in the watchdog's state dir lets one tick at a time decide (a tick
that finds another one waiting for its deadline waits for it), and the
deadline of the last stop is kept there so a stop is made, and counted, once.
"""

from __future__ import annotations

import argparse
import enum
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry

from tlops.common.telemetry import NAMESPACE, Telemetry
from tlops.node import activity, idle, watchdog_state
from tlops.node.idle import Decision, Observation, Verdict
from tlops.node.imds import Imds, MetadataUnavailable
from tlops.node.watchdog_settings import (
    WatchdogSettings,
    add_arguments,
    environment,
    from_arguments,
    parse_settings,
)
from tlops.node.watchdog_state import Doubt, boot_ms

__all__ = ["Doubt", "Outcome", "Watchdog", "WatchdogSettings", "environment", "parse_settings"]

METRIC = "AutoStops"
# How far past the next tick this tick's timer reaches: the next tick starts late by cron's
# and the interpreter's start-up, and a deadline inside that gap would be seen late by it.
WINDOW_SLACK = 0.1
# The longest the stop's two calls can take (two attempts each of a 2 s connect and a 5 s
# read, and the retry's backoff): a tick waits this much longer than a timer can wait.
CALLS_BOUND_S = 30.0


class TickResult(enum.StrEnum):
    """What one tick did; the value is the log line's message and `decision` field."""

    BUSY = "busy"
    IDLE = "idle"  # the deadline is ahead (with the timer armed, the tick waits for it)
    STOPPED = "stopped"  # this tick stopped the node
    ALREADY_STOPPED = "already stopped"  # due, and an earlier tick made this deadline's stop
    CANNOT_DECIDE = "cannot decide"  # something the decision needs could not be read


# The idle decision's verdicts that a tick reports as they are (STOP becomes STOPPED or
# CANNOT_DECIDE by what EC2 answers).
_REPORTED = {
    Decision.BUSY: TickResult.BUSY,
    Decision.IDLE: TickResult.IDLE,
    Decision.STOPPED: TickResult.ALREADY_STOPPED,
}


class Outcome:
    """What one tick decided (and, after a stop, whether the metric went out)."""

    def __init__(self, decision: TickResult, reason: str, **fields: Any):
        self.decision, self.reason, self.fields = decision, reason, fields

    @property
    def stopped(self) -> bool:
        """This tick stopped the node (not: an earlier one had)."""
        return self.decision is TickResult.STOPPED

    def __repr__(self) -> str:
        return f"Outcome({self.decision!r}, {self.reason!r})"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Watchdog:
    def __init__(
        self,
        settings: WatchdogSettings,
        *,
        telemetry: Telemetry | None = None,
        redis_client: redis_py.Redis | None = None,
        ec2: Any | None = None,
        cloudwatch: Any | None = None,
        timer: bool = True,
        boot: Callable[[], int] = boot_ms,
    ):
        self.settings = settings
        self.log = telemetry or Telemetry("idle_watchdog")
        self.imds = Imds(settings.imds_url)
        self.redis = redis_client or redis_py.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_connect_timeout=1.0,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),  # a failed read is a doubt: the next tick retries
        )
        self._ec2, self._cloudwatch = ec2, cloudwatch
        self.timer = timer  # False: decide once per tick (the cron-only way; the benchmark's)
        self.boot = boot
        self.halt = threading.Event()  # set by SIGTERM: no more waiting, no stop
        # a tick that finds the lock taken waits for the holder's timer and stop to end
        self.lock_wait_s = self.interval_s * (1 + WINDOW_SLACK) + CALLS_BOUND_S

    @property
    def interval_s(self) -> float:
        return self.settings.minute_s

    # AWS, through the one client factory with bounded timeouts --------------------------
    def _client(self, service: str) -> Any:
        from tlops.common import aws

        return aws.client(service, connect_timeout=2.0, read_timeout=5.0, max_attempts=2)

    def ec2(self) -> Any:
        if self._ec2 is None:
            self._ec2 = self._client("ec2")
        return self._ec2

    def cloudwatch(self) -> Any:
        if self._cloudwatch is None:
            self._cloudwatch = self._client("cloudwatch")
        return self._cloudwatch

    # looking --------------------------------------------------------------------------
    def observe(self, instance_id: str) -> Observation:
        try:
            queued = watchdog_state.unacknowledged(self.redis)
            watcher, in_flight = watchdog_state.heartbeat(self.redis)
        except redis_py.RedisError as exc:
            raise Doubt(f"Redis unreachable or refused: {type(exc).__name__}: {exc}") from exc
        assert self.settings.state_dir is not None  # required by the settings
        try:
            reading = activity.read(self.settings.state_dir)
        except activity.Unreadable as exc:
            raise Doubt(str(exc)) from exc
        stopped = watchdog_state.last_stop(self.settings.lock_dir, instance_id)
        return Observation(queued, in_flight, reading, self.boot(), stopped, watcher)

    # deciding ---------------------------------------------------------------------------
    def tick(self) -> Outcome:
        # The next tick is due one interval after this one started; a deadline before it
        # (plus its start-up) is this tick's to keep.
        window_end_ms = now_ms() + round(self.interval_s * (1 + WINDOW_SLACK) * 1000)
        try:
            lock = watchdog_state.tick_lock(
                self.settings.lock_dir, wait_s=self.lock_wait_s, halt=self.halt
            )
            with lock:
                return self._decide(window_end_ms)
        except Doubt as exc:
            return self._doubt(str(exc))

    def _decide(self, window_end_ms: int) -> Outcome:
        try:
            instance_id = self.imds.instance_id()
        except MetadataUnavailable as exc:
            return self._doubt(str(exc))
        while True:
            try:
                seen = self.observe(instance_id)
            except Doubt as exc:
                return self._doubt(str(exc), instance=instance_id)
            verdict = idle.decide(
                seen,
                now_ms=now_ms(),
                default_idle_minutes=self.settings.idle_minutes,
                minute_s=self.settings.minute_s,
            )
            if verdict.decision is Decision.STOP:
                return self._stop(instance_id, verdict)
            armed = (
                self.timer
                and verdict.decision is Decision.IDLE
                and (verdict.deadline_ms or 0) <= window_end_ms
            )
            outcome = self._report(instance_id, verdict, seen, armed=armed)
            if not armed:
                return outcome
            self.ec2(), self.cloudwatch()  # made now, so the stop does not wait for them
            if not self._sleep_until(verdict.deadline_ms or 0):
                return outcome  # halted while waiting: no stop

    def _report(self, instance_id: str, verdict: Verdict, seen: Observation, *, armed: bool):
        fields: dict[str, Any] = {"instance": instance_id, "project": self.settings.project}
        if verdict.decision is Decision.BUSY:
            fields |= {"queued": seen.queued, "in_flight": seen.in_flight, "watcher": seen.watcher}
        else:
            fields |= {
                "idle_s": (verdict.idle_ms or 0) / 1000,
                "limit_s": (verdict.limit_ms or 0) / 1000,
                "deadline_ms": verdict.deadline_ms,
            }
        if verdict.decision is Decision.IDLE:
            fields["timer"] = armed
        result = _REPORTED[verdict.decision]
        self.log.log("INFO", result, decision=result, reason=verdict.reason, **fields)
        return Outcome(result, verdict.reason, **fields)

    def _doubt(self, reason: str, **fields: Any) -> Outcome:
        fields = {"project": self.settings.project, **fields}
        result = TickResult.CANNOT_DECIDE
        self.log.log("WARNING", result, decision=result, reason=reason, **fields)
        return Outcome(result, reason, **fields)

    def _sleep_until(self, deadline_ms: int) -> bool:
        """Sleep until the wall clock reaches `deadline_ms`; False if halted meanwhile."""
        while (left_ms := deadline_ms - now_ms()) > 0:
            if self.halt.wait(left_ms / 1000):
                return False
        return not self.halt.is_set()

    # stopping ---------------------------------------------------------------------------
    def _stop(self, instance_id: str, verdict: Verdict) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        deadline_ms = verdict.deadline_ms or 0
        base = {"instance": instance_id, "project": self.settings.project}
        self.log.log(
            "INFO",
            "stopping",
            decision="stopping",
            reason=verdict.reason,
            deadline_ms=deadline_ms,
            **base,
        )
        try:
            self.ec2().stop_instances(InstanceIds=[instance_id])
        except (BotoCoreError, ClientError) as exc:
            return self._doubt(f"EC2 did not stop the instance: {exc}", **base)
        stopped_ms = now_ms()
        try:
            watchdog_state.record_stop(self.settings.lock_dir, instance_id, deadline_ms, stopped_ms)
        except OSError as exc:  # the stop stands; a later tick may stop (and count) again
            self.log.log("WARNING", "stop not recorded", error=repr(exc), **base)
        fields = {
            **base,
            "deadline_ms": deadline_ms,
            "stopped_ms": stopped_ms,
            "late_ms": stopped_ms - deadline_ms,
        }
        try:
            self.cloudwatch().put_metric_data(
                Namespace=NAMESPACE,
                MetricData=[{"MetricName": METRIC, "Value": 1, "Unit": "Count"}],
            )
        except (BotoCoreError, ClientError) as exc:
            fields["metric_error"] = str(exc)
            self.log.log("WARNING", "metric not sent", metric=METRIC, error=str(exc), **base)
        result = TickResult.STOPPED
        self.log.log("INFO", result, decision=result, reason=verdict.reason, **fields)
        return Outcome(result, verdict.reason, **fields)

    # forever ------------------------------------------------------------------------------
    def run(self) -> int:
        """A tick every interval until SIGTERM; a tick that waited past the next is followed
        at once by another."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.halt.set())
        self.log.log(
            "INFO",
            "watchdog started",
            interval_s=self.interval_s,
            idle_minutes=self.settings.idle_minutes,
        )
        next_tick = time.monotonic()
        while not self.halt.is_set():
            self.tick()
            next_tick = max(next_tick + self.interval_s, time.monotonic())
            self.halt.wait(next_tick - time.monotonic())
        self.log.log("INFO", "watchdog stopped")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tlops.node.watchdog",
        description="Stop this instance once no job has kept it busy for the idle time.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("tick", "decide once (cron, every minute)"), ("run", "tick forever")):
        add_arguments(commands.add_parser(name, help=text))
    args = parser.parse_args(argv)
    settings = from_arguments(parser, args, os.environ)
    # tlops.common.aws reads the stand-in and the region from the environment.
    for name, value in (
        ("TL_AWS_ENDPOINT_URL", settings.aws_endpoint_url),
        ("TL_AWS_REGION", settings.aws_region),
    ):
        if value:
            os.environ[name] = value
    watchdog = Watchdog(settings)
    if args.command == "run":
        return watchdog.run()
    return 1 if watchdog.tick().decision is TickResult.CANNOT_DECIDE else 0


if __name__ == "__main__":
    sys.exit(main())

"""`GET /queue-health`: is Redis reachable and fast, and what does the queue look like?

No JWT (operators and monitors call it), but only from configured source
networks: by default the VPC (10.20.0.0/22) and loopback. Besides the PING
round trip it reports the queue's depth, the dead letters and the watcher's
heartbeat (age and jobs in flight), read with a few more round trips once the
PING has answered. A missing heartbeat is not a failure: the node may simply
be stopped.

The same function also runs on a schedule (an EventBridge rule every five
minutes, made by the observability role): then it answers nobody and emits the
same look as metrics, `QueueHealthFailed` (1 or 0), `QueueDepth` and
`DeadLetterEntries`, which the alarms watch. On that schedule it is also what
puts a napping stack to sleep once it has napped `sleep_after` with nothing to
do (tlops.edge.sleep); invoked with `{"sleep": {"force": true}}` (the scheduled
sleep, `tlops ops sleep --deep`) it does so at once, stopping an idle node first.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from tlops import contract
from tlops.common import settings_table
from tlops.common.control_bucket import BucketUnavailable, ControlBucket
from tlops.common.settings_table import number, setting
from tlops.common.telemetry import Telemetry
from tlops.contract import ErrorCode
from tlops.contract.states import StackState
from tlops.edge import lambda_http, sleep
from tlops.edge.lambda_http import Answer, Refusal
from tlops.edge.resp import RedisReplyError, RedisUnavailable, RespClient

DEFAULT_ALLOWED_CIDRS = "10.20.0.0/22,127.0.0.0/8,::1/128"
SLOW_MS = 200.0
DEFAULT_SLEEP_AFTER_S = 7200  # two hours of napping, then asleep

telemetry = Telemetry("queue_health")


def parse_cidrs(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise RuntimeError(f"TL_QUEUE_HEALTH_CIDRS is not a list of CIDRs: {exc}") from None


def _group_backlog(client: RespClient) -> int | None:
    """Entries the `watchers` group has not delivered yet plus those delivered and unacked."""
    try:
        groups = client.execute("XINFO", "GROUPS", contract.JOB_STREAM) or []
    except RedisReplyError:
        return None  # no stream yet
    for flat in groups:
        info = dict(zip(flat[::2], flat[1::2], strict=True))
        if info.get("name") == contract.CONSUMER_GROUP:
            lag = info.get("lag")
            return (int(lag) if lag is not None else 0) + int(info.get("pending", 0))
    return None


def queue_snapshot(client: RespClient, *, now_ms: int | None = None) -> dict[str, Any]:
    """Queue depth, dead letters and the watcher heartbeat, as /queue-health reports them.

    `queueDepth` counts jobs not yet acknowledged by a watcher (waiting or in
    flight); before any watcher has made its group, every entry on the stream.
    """
    now_ms = round(time.time() * 1000) if now_ms is None else now_ms
    depth = _group_backlog(client)
    if depth is None:
        depth = int(client.execute("XLEN", contract.JOB_STREAM) or 0)
    snapshot: dict[str, Any] = {
        "queueDepth": depth,
        "deadLetters": int(client.execute("XLEN", contract.DEAD_LETTER_STREAM) or 0),
        "watcher": None,
    }
    raw = client.execute("GET", contract.HEARTBEAT_KEY)
    if raw:
        try:
            beat = json.loads(raw)
            snapshot["watcher"] = {
                "heartbeatAgeMs": max(0, now_ms - int(beat["ts_ms"])),
                "inFlight": int(beat.get("in_flight", 0)),
                "done": int(beat.get("done", 0)),
                "failed": int(beat.get("failed", 0)),
            }
        except (ValueError, KeyError, TypeError):
            snapshot["watcher"] = {"heartbeatAgeMs": None, "error": "unreadable heartbeat"}
    return snapshot


def memory_percent(client: RespClient) -> float | None:
    """How full the queue's memory is (used_memory of maxmemory, INFO memory); None without
    a limit (a local redis-server) or an answer. ElastiCache sets maxmemory to the node's
    memory less its reserve, so this is what CloudWatch's DatabaseMemoryUsagePercentage
    reports, without naming the node (each wake's queue has a new one)."""
    try:
        info = client.execute("INFO", "memory") or ""
    except (RedisUnavailable, RedisReplyError):
        return None
    fields = dict(line.split(":", 1) for line in str(info).splitlines() if ":" in line)
    try:
        used, most = int(fields["used_memory"]), int(fields["maxmemory"])
    except (KeyError, ValueError):
        return None
    return round(100 * used / most, 2) if most > 0 else None


@dataclasses.dataclass(frozen=True)
class QueueHealthSettings:
    redis_url: str = setting(None, "TL_REDIS_URL", "the queue's Redis")
    allowed_cidrs: str = setting(
        None, "TL_QUEUE_HEALTH_CIDRS", "who may call GET /queue_health", DEFAULT_ALLOWED_CIDRS
    )
    control_bucket: str = setting(None, "TL_CONTROL_BUCKET", "the control bucket; empty: none", "")
    sleep_after_s: int = setting(
        None, "TL_SLEEP_AFTER_S", "seconds napping before the stack sleeps; 0: never",
        DEFAULT_SLEEP_AFTER_S, number(int),
    )  # fmt: skip


class QueueHealth:
    def __init__(
        self,
        redis_url: str,
        allowed_cidrs: str = DEFAULT_ALLOWED_CIDRS,
        *,
        control_bucket: str = "",
        sleep_after_s: int = DEFAULT_SLEEP_AFTER_S,
    ):
        self.redis = RespClient(redis_url, connect_timeout=0.2, timeout=0.2)
        self.allowed = parse_cidrs(allowed_cidrs)
        self.sleep_after_s = sleep_after_s
        self.control_bucket = control_bucket
        self._bucket: ControlBucket | None = None

    @property
    def control(self) -> ControlBucket | None:
        """The control bucket (its S3 client made on first use); None without one."""
        if self._bucket is None and self.control_bucket:
            from tlops.common import aws

            s3 = aws.client("s3", connect_timeout=1, read_timeout=3)
            self._bucket = ControlBucket(s3, self.control_bucket)
        return self._bucket

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QueueHealth:
        found = settings_table.from_env(
            QueueHealthSettings, os.environ if env is None else env, "queue_health"
        )
        return cls(
            found.redis_url,
            found.allowed_cidrs,
            control_bucket=found.control_bucket,
            sleep_after_s=found.sleep_after_s,
        )

    def fall_asleep(self, *, force: bool = False, rid: str = "") -> dict[str, Any]:
        """The sleep handshake (tlops.edge.sleep): `verdict` says what it found and did."""
        if self.control is None:
            return {"verdict": "off", "reason": "no control bucket is configured"}
        try:
            looked = sleep.fall_asleep(
                self.redis, self.control, sleep_after_s=self.sleep_after_s, force=force
            )
        except (RedisUnavailable, RedisReplyError, BucketUnavailable) as exc:
            telemetry.log("ERROR", "sleep not asked", requestId=rid, reason=str(exc))
            return {"verdict": "failed", "reason": str(exc)}
        if looked.verdict == sleep.Verdict.CLOSING:
            telemetry.log("INFO", "sleep asked", requestId=rid, force=force)
        return {"verdict": looked.verdict.value, "detail": looked.detail}

    def _allowed(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.allowed)

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        """One invocation: the schedule's probe, a sleep asked for, or an HTTP request."""
        if is_scheduled(event):
            return self.probe(event)
        if isinstance(event.get("sleep"), dict):  # the scheduled sleep, `tlops ops sleep --deep`
            return self.fall_asleep(force=bool(event["sleep"].get("force")))
        return self.answer(event)

    def answer(self, event: dict[str, Any]) -> dict[str, Any]:
        """`GET /queue-health`: the HTTP API's event, its answer."""
        rid = lambda_http.request_id(event)
        try:
            answer = self._check(event, rid)
        except Refusal as refusal:
            answer = refusal.answer
        return lambda_http.respond(answer, rid)

    def _check(self, event: dict[str, Any], rid: str) -> Answer:
        if not self._allowed(lambda_http.source_ip(event)):
            raise Refusal(403, ErrorCode.FORBIDDEN, message="source address not allowed")
        return self._look(rid)

    def probe(self, event: dict[str, Any]) -> dict[str, Any]:
        """The scheduled look: the same check, as metrics; returns what it found."""
        rid = str(event.get("id", ""))
        found = self._look(rid).body
        failed = found["redis"] != "ok"
        if failed and self._sleeping():
            # No queue while the stack sleeps: nothing failed, and nothing is queued.
            found, failed = {"redis": "asleep", "queueDepth": 0, "deadLetters": 0}, False
            telemetry.metric("QueueHealthFailed", 0)
            telemetry.log("INFO", "queue probe: the stack sleeps", requestId=rid)
            return found
        telemetry.metric("QueueHealthFailed", int(failed))
        if not failed:
            telemetry.metric("QueueDepth", found["queueDepth"])
            telemetry.metric("DeadLetterEntries", found["deadLetters"])
            used = memory_percent(self.redis)
            if used is not None:  # by the queue itself: whatever its group's id this wake
                telemetry.metric("QueueMemoryPercent", used, unit="Percent")
        telemetry.log("WARNING" if failed else "INFO", "queue probe", requestId=rid, **found)
        if not failed:
            found = {**found, "sleep": self.fall_asleep(rid=rid)}
        return found

    def _sleeping(self) -> bool:
        """Whether control recorded the stack asleep (or waking): the queue is not there."""
        if self.control is None:
            return False
        try:
            state = self.control.state()
        except BucketUnavailable:
            return False
        return state.get("state") in (StackState.ASLEEP, StackState.WAKING)

    def _look(self, rid: str) -> Answer:
        step = "redis ping failed"
        started = time.perf_counter()
        try:
            self.redis.ping()
            latency_ms = round((time.perf_counter() - started) * 1000, 2)
            if latency_ms >= SLOW_MS:
                return _failing(f"PING took {latency_ms} ms (limit {SLOW_MS:g} ms)")
            step = "queue snapshot failed"
            snapshot = queue_snapshot(self.redis)
        except (RedisUnavailable, RedisReplyError) as exc:
            telemetry.log("ERROR", step, requestId=rid, reason=str(exc))
            return _failing(str(exc))
        return Answer(200, {"redis": "ok", "latencyMs": latency_ms, **snapshot})


def _failing(error: str) -> Answer:
    return Answer(503, {"redis": "fail", "error": error})


_health: QueueHealth | None = None


def is_scheduled(event: dict[str, Any]) -> bool:
    """Whether EventBridge's schedule sent the event (not the HTTP API)."""
    return event.get("source") == "aws.events" or event.get("detail-type") == "Scheduled Event"


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    global _health  # noqa: PLW0603 - one client per warm Lambda container
    if _health is None:
        _health = QueueHealth.from_env()
    return _health.handle(event, context)

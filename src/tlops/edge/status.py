"""`GET /status`: what an operator asks first: is the stack awake, is anything waiting, booting.

One answer from what the edge reaches: the deployment's state and the node's
EC2 state as control last recorded them (one S3 read of the state document: the
router cannot see EC2 itself), the queue's depth, dead letters and the watcher's
heartbeat (`queue_health.queue_snapshot`) and the boot record's phase. Each part
answers for itself: S3 refusing still shows the queue, Redis down (or asleep)
still shows the node, with fixed words (the exceptions' own text, which may hold
ARNs, goes to the log only). So the route answers 200 whenever the token is good;
`tlops status` turns the parts' errors into its exit code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.contract import boot as record
from tlops.contract.states import NODE_DOWN_STATES, StackState
from tlops.edge.control_link import BucketUnavailable
from tlops.edge.queue_health import queue_snapshot
from tlops.edge.resp import RedisReplyError, RedisUnavailable, RespClient

NODE_LOOKUP_FAILED = "the GPU node could not be looked up"
QUEUE_ASLEEP = "the queue sleeps: the stack is asleep, and the next request wakes it"
QUEUE_UNREACHABLE = "the queue could not be read"
# Phases shown as they are recorded; a boot phase only while it is current (not stale).
_SETTLED = (contract.BootPhase.READY, contract.BootPhase.STOPPED)


def node_part(state: Callable[[], dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The deployment's state and `{"state", "instance", "type", "observed_ms"}` of the node as
    control recorded them, `{"state": "absent"}` without a node, or an `error` in fixed words."""
    try:
        recorded = state()
    except BucketUnavailable as exc:
        return "unknown", {"state": "unknown", "error": NODE_LOOKUP_FAILED, "detail": str(exc)}
    node = recorded.get("node")
    if not isinstance(node, dict) or not node.get("instance"):
        return str(recorded.get("state") or "unknown"), {"state": "absent"}
    part = {"state": str(node.get("state", "unknown")), "instance": str(node["instance"]),
            "type": str(node.get("type", ""))}  # fmt: skip
    if isinstance(recorded.get("observed_ms"), int):
        part["observed_ms"] = recorded["observed_ms"]
    return str(recorded.get("state") or "unknown"), part


def queue_part(redis: RespClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """The queue's snapshot and the boot record's phase (`{"phase": None}` when no boot runs
    and none is recorded); an `error` in fixed words when Redis does not answer."""
    try:
        queue = queue_snapshot(redis)
        boot = redis.hgetall(contract.NODE_BOOT_KEY)
    except (RedisUnavailable, RedisReplyError) as exc:
        failed = {"error": QUEUE_UNREACHABLE, "detail": str(exc)}
        return failed, dict(failed)
    now_ms = time.time_ns() // 1_000_000
    phase = record.current_phase(boot, now_ms)
    recorded = boot.get(record.PHASE)
    return queue, {
        "phase": phase or (recorded if recorded in _SETTLED else None),
        "booting": phase is not None,
        "instance": boot.get(record.INSTANCE),
    }


def snapshot(
    *,
    project: str,
    state: Callable[[], dict[str, Any]],
    redis: RespClient,
    telemetry: Telemetry,
    rid: str,
) -> dict[str, Any]:
    """The body of `GET /status`; the parts' details are logged, not answered."""
    stack, node = node_part(state)
    queue, boot = queue_part(redis)
    if boot.get("booting") and node.get("state") in NODE_DOWN_STATES:
        # A boot record the node never finished (it was stopped, or never got going): the
        # node's state is the truth.
        boot = {**boot, "phase": None, "booting": False}
    if stack == StackState.ASLEEP and "error" in queue:
        queue = {"error": QUEUE_ASLEEP, "asleep": True}
        boot = {"phase": None, "booting": False, "instance": None}
    for part, name in ((node, "node"), (queue, "queue")):
        if "detail" in part:
            telemetry.log("WARNING", f"status: {name} unavailable", requestId=rid,
                          reason=part.pop("detail"))  # fmt: skip
    boot.pop("detail", None)
    return {"project": project, "state": stack, "node": node, "queue": queue, "boot": boot}

"""`GET /status`: what an operator asks first: is the node up, is anything waiting, is it booting.

One answer from the parts only the edge reaches: the node's EC2 state (one
DescribeInstances, the router's `FindTheNode` statement), the queue's depth,
dead letters and the watcher's heartbeat (`queue_health.queue_snapshot`) and
the boot record's phase. Each part answers for itself: EC2 refusing still
shows the queue, Redis down still shows the node, with fixed words (the
exceptions' own text, which may hold ARNs, goes to the log only). So the
route answers 200 whenever the token is good; `tlops status` turns the parts'
errors into its exit code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.contract import boot as record
from tlops.edge import gpu_node
from tlops.edge.queue_health import queue_snapshot
from tlops.edge.resp import RedisReplyError, RedisUnavailable, RespClient

NODE_LOOKUP_FAILED = "the GPU node could not be looked up"
QUEUE_UNREACHABLE = "the queue could not be read"
# Phases shown as they are recorded; a boot phase only while it is current (not stale).
_SETTLED = (contract.BootPhase.READY, contract.BootPhase.STOPPED)


def node_part(ec2: Callable[[], Any], project: str) -> dict[str, Any]:
    """`{"state", "instance", "type"}`, `{"state": "absent"}`, or an `error` in fixed words."""
    try:
        found = gpu_node.find(ec2(), project)
    except gpu_node.NodeUnavailable as exc:
        return {"state": "unknown", "error": NODE_LOOKUP_FAILED, "detail": str(exc)}
    if found is None:
        return {"state": "absent"}
    return {"state": found.state, "instance": found.instance_id, "type": found.instance_type}


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
    ec2: Callable[[], Any],
    redis: RespClient,
    telemetry: Telemetry,
    rid: str,
) -> dict[str, Any]:
    """The body of `GET /status`; the parts' details are logged, not answered."""
    node = node_part(ec2, project)
    queue, boot = queue_part(redis)
    for part, name in ((node, "node"), (queue, "queue")):
        if "detail" in part:
            telemetry.log("WARNING", f"status: {name} unavailable", requestId=rid,
                          reason=part.pop("detail"))  # fmt: skip
    boot.pop("detail", None)
    return {"project": project, "node": node, "queue": queue, "boot": boot}

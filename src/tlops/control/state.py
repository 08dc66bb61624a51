"""The recorded state: what control last saw of the node and the queue, kept in S3.

Control looks at EC2 and ElastiCache (`observe`) after everything it does and when
EC2 says the node changed state (an EventBridge rule), and writes what it saw to
`state.json` in the control bucket (`record`), keeping what only it can measure:
how long the last wakes took and why the last one failed, if it did. The router,
which cannot see either service from inside the VPC, reads that document after
Redis fails to connect; the node reads the queue's address from it at boot.
"""

from __future__ import annotations

import time
from typing import Any

from tlops.common.control_bucket import ControlBucket
from tlops.contract import control
from tlops.contract.states import StackState, stack_state
from tlops.control import node as gpu_node
from tlops.control import queue

VERSION = 1
WAKES_KEPT = 10  # measured wakes the ETA is the median of


def observe(
    ec2: Any,
    elasticache: Any,
    *,
    project: str,
    prefix: str,
    url: str = "",
    pinned: str | None = None,
) -> dict:
    """The node and the queue as EC2 and ElastiCache describe them now; `url` stands for the
    group's endpoint where the group is not what serves the queue (the stand-in); `pinned`:
    the deployment's node id, as for `tlops.control.node.find`.
    Raises NodeUnavailable or QueueError when a service does not answer."""
    found = gpu_node.find(ec2, project, pinned)
    group = queue.current(queue.ours(elasticache, prefix, queue.tags_for(project)))
    seen: dict[str, Any] = {
        "node": None
        if found is None
        else {"instance": found.instance_id, "state": found.state, "type": found.instance_type},
        "queue": None
        if group is None
        else {
            "id": group["ReplicationGroupId"],
            "status": group.get("Status", ""),
            "url": (url or queue.url_of(group)) if group.get("Status") != "creating" else "",
        },
    }
    state = stack_state(found.state if found else None, group.get("Status") if group else None)
    seen["state"] = state.value if state else ""
    return seen


def record(bucket: ControlBucket, seen: dict[str, Any], *, project: str, **changes: Any) -> dict:
    """Write `seen` (from observe) as the state, keeping the measured wakes and the last
    wake's outcome, with `changes` on top; returns what was written."""
    before = bucket.state()
    now = int(time.time() * 1000)
    doc: dict[str, Any] = {
        "version": VERSION,
        "project": project,
        "wakes_ms": before.get("wakes_ms", []),
        "boot_times_ms": before.get("boot_times_ms", []),
        "wake": before.get("wake", {}),
        **seen,
        "observed_ms": now,
    }
    if before.get("state") != doc["state"]:
        doc["since_ms"] = now
    else:
        doc["since_ms"] = before.get("since_ms", now)
    doc.update(changes)
    doc["wakes_ms"] = [int(ms) for ms in doc["wakes_ms"]][:WAKES_KEPT]
    bucket.put_json(control.STATE_KEY, doc)
    return doc


def asleep_or_waking(state: dict[str, Any]) -> bool:
    """Whether, by the recorded state, the queue is not there to take a job."""
    return state.get("state") in (StackState.ASLEEP, StackState.WAKING)

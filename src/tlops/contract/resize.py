"""`POST /resize`: what an admin may ask of the GPU node, and the record of one operation.

A request names an action and, for `resize`, the instance type to change to:

    {"action": "start" | "stop" | "resize", "target"?: "t3.small" | "g4dn.xlarge"}

`start` and `stop` may name a target too (stop, change the type, then start or
stay stopped); `resize` must, and leaves the node running if it ran, stopped if
it was stopped. The operation is a goal, a state and a type, which `control`
works towards (tlops.control.resize) while the router keeps its record
(tlops.edge.resize): the hash `resize:op:{id}` with the fields of `Field`, kept
`RECORD_TTL_SECONDS`.

    accepted --first step--> in_progress --goal reached--> done
                                         --a step refused--> failed

`done` and `failed` are final. While an operation is not final, the lock key
`resize:current` names it and every other `POST /resize` is refused with 409.
"""

from __future__ import annotations

import enum
import json
from typing import Any, NamedTuple

from tlops.contract import RESIZE_KEY_PREFIX, is_job_id, names
from tlops.contract.request import RequestError
from tlops.contract.states import NODE_UP_STATES

ACTIONS = ("start", "stop", "resize")
INSTANCE_TYPES = names.NODE_SHAPES  # what a resize may name as its target
REQUEST_FIELDS = ("action", "target")
RECORD_TTL_SECONDS = 24 * 3600  # an operation's progress stays readable this long
# The lock outlives any honest operation (a g4dn stops and starts within minutes); a lock
# whose operation was abandoned mid-way frees itself after this.
LOCK_TTL_SECONDS = 1800
MAX_STEPS = 20  # steps kept in a record: an operation takes at most a handful


class Status(enum.StrEnum):
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"


FINAL = frozenset({Status.DONE, Status.FAILED})


class Field(enum.StrEnum):
    ID = "id"
    ACTION = "action"
    TARGET = "target"  # the type asked for, "" when the action keeps the type
    SUB = "sub"  # the admin who asked
    STATUS = "status"
    PHASE = "phase"  # what the operation waits for now: stopping, starting, ... or done
    INSTANCE = "instance"
    NODE_STATE = "node_state"  # the node's EC2 state and type when last looked at
    NODE_TYPE = "node_type"
    GOAL_STATE = "goal_state"  # running | stopped
    GOAL_TYPE = "goal_type"
    FROM_TYPE = "from_type"  # the type the node had when the operation began
    STEPS = "steps"  # JSON list of {"step", "at"} (ms since the epoch)
    ERROR = "error"
    CREATED = "created"  # ms since the epoch
    UPDATED = "updated"


class ResizeRequest(NamedTuple):
    action: str
    target: str | None = None


class Goal(NamedTuple):
    state: str  # running | stopped
    instance_type: str


def goal_for(request: ResizeRequest, node_state: str, node_type: str) -> Goal:
    """start → running, stop → stopped, resize → the state the node is in (or heading to)."""
    instance_type = request.target or node_type
    if request.action == "start":
        return Goal("running", instance_type)
    if request.action == "stop":
        return Goal("stopped", instance_type)
    return Goal("running" if node_state in NODE_UP_STATES else "stopped", instance_type)


def operation_key(operation_id: str) -> str:
    """The Redis key of an operation's record; refuses anything but a lowercase UUIDv4."""
    if not is_job_id(operation_id):
        raise ValueError(f"not an operation id (lowercase UUIDv4 expected): {operation_id!r}")
    return RESIZE_KEY_PREFIX + operation_id


def parse_resize_request(payload: Any) -> ResizeRequest:
    """Validate a JSON-decoded body; raise RequestError naming the first bad field."""
    if not isinstance(payload, dict):
        raise RequestError("body", "must be a JSON object")
    for name in payload:
        if name not in REQUEST_FIELDS:
            raise RequestError(str(name), f"unknown field (allowed: {', '.join(REQUEST_FIELDS)})")
    action = payload.get("action")
    if action not in ACTIONS:
        shown = json.dumps(action) if action is not None else "nothing"
        raise RequestError("action", f"must be one of {', '.join(ACTIONS)}, got {shown}")
    target = payload.get("target")
    if target is None:
        if action == "resize":
            raise RequestError("target", f"resize needs a target: {', '.join(INSTANCE_TYPES)}")
        return ResizeRequest(action)
    if target not in INSTANCE_TYPES:
        raise RequestError(
            "target", f"must be one of {', '.join(INSTANCE_TYPES)}, got {json.dumps(target)}"
        )
    return ResizeRequest(action, target)


def view(record: dict[str, str]) -> dict[str, Any]:
    """What `GET /resize/{operationId}` answers for a record."""
    out: dict[str, Any] = {
        "operationId": record[Field.ID],
        "action": record[Field.ACTION],
        "status": record[Field.STATUS],
        "phase": record.get(Field.PHASE, ""),
        "instance": record.get(Field.INSTANCE, ""),
        "node": {
            "state": record.get(Field.NODE_STATE, ""),
            "instanceType": record.get(Field.NODE_TYPE, ""),
        },
        "goal": {"state": record[Field.GOAL_STATE], "instanceType": record[Field.GOAL_TYPE]},
        "fromType": record.get(Field.FROM_TYPE, ""),
        "steps": json.loads(record.get(Field.STEPS) or "[]"),
        "created": int(record.get(Field.CREATED, "0")),
        "updated": int(record.get(Field.UPDATED, "0")),
    }
    if record.get(Field.TARGET):
        out["target"] = record[Field.TARGET]
    if record.get(Field.ERROR):
        out["error"] = record[Field.ERROR]
    return out

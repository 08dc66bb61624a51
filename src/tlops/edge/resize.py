"""`POST /resize` and `GET /resize/{operationId}`: an admin reshapes or starts/stops the node.

An operation is a goal (a state and an instance type) that `control` works
towards, outside the VPC (tlops.control.resize): stop the node if its type must
change, change the type once it is stopped, start it if the goal is `running`.
The router keeps what is Redis' and asks for the rest:

- `POST /resize` takes the lock and writes the operation's record (one Lua script
  checks `resize:current` and writes the new record), then writes a resize request
  to the control bucket and answers 202 at once;
- control takes the steps, waiting while EC2 finishes each, and writes its progress
  to `results/resize/<operation>.json` after every look;
- `GET /resize/{operationId}` reads the record, reads control's progress into it,
  releases the lock once the operation is final, and asks control again when its
  progress has not moved for `STALE_AFTER_MS` (its invocation ended before EC2 did).

One operation at a time: another `POST /resize` while one runs is 409. The node's
state and type at the start come from the state control recorded, so the router
calls no EC2 API. Every stop leaves nothing billing: the node has no Elastic IP,
its public address goes with the stop.
"""

from __future__ import annotations

import json
import string
import time
import uuid
from collections.abc import Callable
from typing import Any

from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.contract import ErrorCode
from tlops.contract import control as control_contract
from tlops.contract import resize as spec
from tlops.contract.control import Action
from tlops.contract.resize import Field, Status, goal_for
from tlops.edge import lambda_http
from tlops.edge.control_link import BucketUnavailable, ControlLink
from tlops.edge.lambda_http import Answer, Refusal
from tlops.edge.resp import RespClient, Script

telemetry = Telemetry("router")

# Control's progress unchanged this long: its invocation ended (Lambda's time limit) before
# EC2 finished, and the next read asks it to go on.
STALE_AFTER_MS = 60_000
_COMPACT = (",", ":")

_LUA_NAMES = {
    "status": Field.STATUS.value,
    "done": Status.DONE.value,
    "failed": Status.FAILED.value,
}

# KEYS: the lock, the new record. ARGV: its id, the lock's TTL, the record's TTL, the record
# key prefix, then the record's fields and values. The current operation's record is read by
# a key built here from the lock's value (which rules out Redis Cluster, as admission does).
_BEGIN = Script(
    string.Template("""
local current = redis.call('GET', KEYS[1])
if current then
  local status = redis.call('HGET', ARGV[4] .. current, '$status')
  if status and status ~= '$done' and status ~= '$failed' then
    return {0, current}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {1, ARGV[1]}
""").substitute(_LUA_NAMES)
)

_RELEASE = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
""")


class Resizer:
    """The operations of one router container: Redis for the records, control for the steps."""

    def __init__(
        self, redis: RespClient, control: ControlLink, *, clock: Callable[[], float] = time.time
    ):
        self.redis = redis
        self.control = control
        self._clock = clock

    def submit(
        self, event: dict[str, Any], sub: str, rid: str, *, limit: Callable[[], None]
    ) -> Answer:
        """Begin an operation. `limit` raises the admin's 429 when their stops and starts are
        used up: called once the operation holds the lock, before control is asked, so a
        request refused for its body or for another operation in progress uses none of it."""
        request = lambda_http.parse_json_body(event, spec.parse_resize_request)
        node = self.control.state(fresh=True).get("node") or {}
        if not node.get("instance"):
            raise Refusal(503, ErrorCode.INSTANCE_UNAVAILABLE, message="no GPU node is deployed")
        goal = goal_for(request, str(node.get("state", "")), str(node.get("type", "")))
        operation_id, now = str(uuid.uuid4()), self._now_ms()
        record = {
            Field.ID: operation_id,
            Field.ACTION: request.action,
            Field.TARGET: request.target or "",
            Field.SUB: sub,
            Field.STATUS: Status.ACCEPTED,
            Field.PHASE: "",
            Field.INSTANCE: node["instance"],
            Field.NODE_STATE: node.get("state", ""),
            Field.NODE_TYPE: node.get("type", ""),
            Field.GOAL_STATE: goal.state,
            Field.GOAL_TYPE: goal.instance_type,
            Field.FROM_TYPE: node.get("type", ""),
            Field.STEPS: "[]",
            Field.CREATED: str(now),
            Field.UPDATED: str(now),
        }
        flat = [str(part) for item in record.items() for part in item]
        began, holder = self.redis.run_script(
            _BEGIN,
            [contract.RESIZE_LOCK_KEY, spec.operation_key(operation_id)],
            [
                operation_id,
                spec.LOCK_TTL_SECONDS,
                spec.RECORD_TTL_SECONDS,
                contract.RESIZE_KEY_PREFIX,
                *flat,
            ],
        )
        if not began:
            raise Refusal(
                409,
                ErrorCode.RESIZE_IN_PROGRESS,
                operationId=holder,
                message="another resize is in progress: follow it with GET /resize/{operationId}",
            )
        try:
            limit()
            self._ask(operation_id, 0, goal.state, goal.instance_type, node["instance"])
        except (Refusal, BucketUnavailable):
            # Not asked: the operation never began, and must not hold the lock.
            self.redis.run_script(_RELEASE, [contract.RESIZE_LOCK_KEY], [operation_id])
            self.redis.execute("DEL", spec.operation_key(operation_id))
            raise
        telemetry.metric("ResizeRequests", Action=request.action)
        telemetry.log(
            "INFO",
            "resize accepted",
            requestId=rid,
            operationId=operation_id,
            sub=sub,
            action=request.action,
            goalState=goal.state,
            goalType=goal.instance_type,
        )
        return Answer(202, {"status": Status.ACCEPTED.value, "operationId": operation_id})

    def _ask(self, operation_id: str, round_: int, state: str, instance_type: str, instance: str):
        self.control.ask(
            Action.RESIZE, f"{operation_id}-{round_}", operation=operation_id, goal_state=state,
            goal_type=instance_type, instance=instance,
        )  # fmt: skip

    def progress(self, operation_id: str, rid: str) -> Answer:
        if not contract.is_job_id(operation_id):
            raise Refusal(
                400,
                ErrorCode.INVALID_REQUEST,
                field="operationId",
                message="must be an operation id (a lowercase UUIDv4)",
            )
        record = self.redis.hgetall(spec.operation_key(operation_id))
        if not record:
            raise Refusal(404, ErrorCode.NOT_FOUND, id=operation_id)
        if record[Field.STATUS] not in spec.FINAL:
            record = self._follow(record, rid)
        return Answer(200, spec.view(record))

    def _follow(self, record: dict[str, str], rid: str) -> dict[str, str]:
        """The record with control's progress read into it; the lock released once final.
        Progress unchanged for STALE_AFTER_MS (control's invocation ended before EC2 did)
        is asked for again, at most once a STALE_AFTER_MS window."""
        operation_id = record[Field.ID]
        done = self.control.bucket.get_json(control_contract.resize_result_key(operation_id))
        now = self._now_ms()
        moved = int(done.get("updated_ms", 0)) if done else 0
        last = max(moved, int(record.get(Field.UPDATED, "0") or 0))
        if now - last >= STALE_AFTER_MS:
            self._ask(operation_id, now // STALE_AFTER_MS, record[Field.GOAL_STATE],
                      record[Field.GOAL_TYPE], record[Field.INSTANCE])  # fmt: skip
            key = spec.operation_key(operation_id)
            self.redis.execute("HSET", key, Field.UPDATED.value, str(now))
            record = {**record, Field.UPDATED.value: str(now)}
        if done is None:
            return record
        status = str(done.get("status", Status.IN_PROGRESS.value))
        changes = {
            Field.STATUS: status,
            Field.PHASE: str(done.get("phase", "")),
            Field.STEPS: json.dumps(
                done.get("steps", [])[-spec.MAX_STEPS :], separators=(",", ":")
            ),
            Field.UPDATED: str(max(moved, int(record.get(Field.UPDATED, "0") or 0))),
        }
        if "node_state" in done:
            changes[Field.NODE_STATE] = str(done["node_state"])
            changes[Field.NODE_TYPE] = str(done.get("node_type", ""))
        if done.get("error"):
            changes[Field.ERROR] = str(done["error"])
        key = spec.operation_key(operation_id)
        self.redis.execute("HSET", key, *[str(part) for item in changes.items() for part in item])
        self.redis.execute("EXPIRE", key, spec.RECORD_TTL_SECONDS)
        if status in spec.FINAL:
            self.redis.run_script(_RELEASE, [contract.RESIZE_LOCK_KEY], [operation_id])
            telemetry.log(
                "INFO", f"resize {status}", requestId=rid, operationId=operation_id,
                instance=record[Field.INSTANCE],
            )  # fmt: skip
        return {**record, **{k.value: v for k, v in changes.items()}}

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

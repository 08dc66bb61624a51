"""`POST /resize` and `GET /resize/{operationId}`: an admin reshapes or starts/stops the node.

An operation is a goal (a state and an instance type) that the router works
towards one EC2 step at a time: stop the node if its type must change, change
the type once it is stopped, start it if the goal is `running`. A step that EC2
has not finished yet (`stopping`, `pending`) ends the request; the next
`GET /resize/{operationId}` looks again and takes the next step, so no request
waits for a g4dn to stop, and an interrupted operation (someone started the
node in between) is simply steered back towards its goal. The stand-in answers
`stopping` and `pending` to the calls too (its next description says `stopped` or
`running`), so there as on AWS a client reads the progress until it is final.

One operation at a time: `resize:current` names the one in progress (one Lua
script checks it and writes the new record), and another `POST /resize` is 409.
The type of a running instance is never changed: AWS refuses that, the stand-in
does not, so `modify_type` checks the state itself. Every stop leaves nothing
billing: the node has no Elastic IP, its public address goes with the stop.
"""

from __future__ import annotations

import json
import string
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.contract import ErrorCode
from tlops.contract import resize as spec
from tlops.contract.resize import Field, Status
from tlops.edge import gpu_node, lambda_http
from tlops.edge.gpu_node import Node
from tlops.edge.lambda_http import Answer, Refusal
from tlops.edge.resp import RespClient, Script

telemetry = Telemetry("router")

# How long one request may keep taking steps: each EC2 call is bounded by the router's
# client (1 s to connect, 2 s to read), so the last step begun before this ends well
# inside the function's 10 s.
STEP_BUDGET_S = 4.0
_MOST_STEPS = 5  # stop, change the type, start, and a look either side


class StepRefused(Exception):
    """EC2 refused a step (or the node may not take it): the operation fails.

    The message is for the log (EC2's own words); `public` is what the admin reads."""

    def __init__(self, detail: str, public: str):
        super().__init__(detail)
        self.public = public


class Goal(NamedTuple):
    state: str  # running | stopped
    instance_type: str


def goal_for(request: spec.ResizeRequest, node: Node) -> Goal:
    """start → running, stop → stopped, resize → the state the node is in (or heading to)."""
    instance_type = request.target or node.instance_type
    if request.action == "start":
        return Goal("running", instance_type)
    if request.action == "stop":
        return Goal("stopped", instance_type)
    return Goal("running" if node.state in ("pending", "running") else "stopped", instance_type)


def modify_type(ec2: Any, node: Node, instance_type: str) -> None:
    """Change a stopped node's type. A node in any other state is refused here: AWS answers
    IncorrectInstanceState, while the stand-in would change a running instance's type."""
    from botocore.exceptions import BotoCoreError, ClientError

    if node.state != "stopped":
        raise StepRefused(
            f"{node.instance_id} is {node.state}: its type changes only while stopped",
            "the node's type can only be changed while it is stopped",
        )
    try:
        ec2.modify_instance_attribute(
            InstanceId=node.instance_id, InstanceType={"Value": instance_type}
        )
    except (BotoCoreError, ClientError) as exc:
        raise StepRefused(
            f"cannot change {node.instance_id} to {instance_type}: {exc}",
            f"EC2 refused to change the node to {instance_type}",
        ) from exc


def _power(step: Callable[[Any, Node], Node], ec2: Any, node: Node) -> Node:
    """gpu_node's start or stop as a step: EC2's refusal fails the operation."""
    try:
        return step(ec2, node)
    except gpu_node.NodeUnavailable as exc:
        raise StepRefused(str(exc), exc.public) from exc


def advance(
    ec2: Any,
    node: Node,
    goal: Goal,
    *,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Node, list[str], str]:
    """The steps towards `goal` that EC2 lets us take now, from `node` as just described.

    Returns the node as the last answer left it, the steps taken, and the phase: what the
    operation waits for (`stopping`, `starting`, or the step the deadline cut off), or
    `done` once the node is in the goal's state with the goal's type.
    """
    steps: list[str] = []
    for _ in range(_MOST_STEPS):
        if node.instance_type != goal.instance_type:
            if node.state == "stopped":
                if clock() >= deadline:
                    return node, steps, "modifying"
                modify_type(ec2, node, goal.instance_type)
                steps.append(f"changed the type from {node.instance_type} to {goal.instance_type}")
                node = node._replace(instance_type=goal.instance_type)
                continue
            if node.state == "running":
                if clock() >= deadline:
                    return node, steps, "stopping"
                node = _power(gpu_node.stop_instance, ec2, node)
                steps.append(f"stop requested (the type changes only while stopped): {node.state}")
                continue
            return node, steps, "stopping" if node.state == "stopping" else "starting"
        if node.state == goal.state:
            return node, steps, "done"
        if node.state in ("pending", "stopping"):
            return node, steps, "starting" if node.state == "pending" else "stopping"
        if clock() >= deadline:
            return node, steps, "starting" if goal.state == "running" else "stopping"
        if goal.state == "running":
            node = _power(gpu_node.start_instance, ec2, node)
            steps.append(f"start requested: {node.state}")
        else:
            node = _power(gpu_node.stop_instance, ec2, node)
            steps.append(f"stop requested: {node.state}")
    return node, steps, "done" if node.state == goal.state else node.state


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
    """The operations of one router container: Redis for the records, EC2 for the steps."""

    def __init__(
        self,
        redis: RespClient,
        ec2: Callable[[], Any],
        project: str,
        *,
        clock: Callable[[], float] = time.time,
        step_budget_s: float | None = None,
    ):
        self.redis = redis
        self._ec2_factory = ec2
        self._ec2: Any = None
        self.project = project
        self._clock = clock
        self.step_budget_s = STEP_BUDGET_S if step_budget_s is None else step_budget_s

    @property
    def ec2(self) -> Any:
        if self._ec2 is None:
            self._ec2 = self._ec2_factory()
        return self._ec2

    def _node(self) -> Node | None:
        return gpu_node.find(self.ec2, self.project)  # NodeUnavailable: 503, nothing written

    def submit(self, event: dict[str, Any], sub: str, rid: str) -> Answer:
        request = lambda_http.parse_json_body(event, spec.parse_resize_request)
        node = self._node()
        if node is None:
            raise Refusal(503, ErrorCode.INSTANCE_UNAVAILABLE, message="no GPU node is deployed")
        goal = goal_for(request, node)
        operation_id, now = str(uuid.uuid4()), self._now_ms()
        record = {
            Field.ID: operation_id,
            Field.ACTION: request.action,
            Field.TARGET: request.target or "",
            Field.SUB: sub,
            Field.STATUS: Status.ACCEPTED,
            Field.PHASE: "",
            Field.INSTANCE: node.instance_id,
            Field.NODE_STATE: node.state,
            Field.NODE_TYPE: node.instance_type,
            Field.GOAL_STATE: goal.state,
            Field.GOAL_TYPE: goal.instance_type,
            Field.FROM_TYPE: node.instance_type,
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
        self._step({k.value: v for k, v in record.items()}, node, rid)
        return Answer(202, {"status": Status.ACCEPTED.value, "operationId": operation_id})

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
            record = self._step(record, self._node(), rid)
        return Answer(200, spec.view(record))

    # --- one request's steps ------------------------------------------------------
    def _step(self, record: dict[str, str], node: Node | None, rid: str) -> dict[str, str]:
        goal = Goal(record[Field.GOAL_STATE], record[Field.GOAL_TYPE])
        changes: dict[str, str] = {}
        steps: list[str] = []
        try:
            if node is None or node.instance_id != record[Field.INSTANCE]:
                raise StepRefused(
                    f"node {record[Field.INSTANCE]} is gone (now: {node})",
                    "the GPU node this operation began with is gone",
                )
            deadline = time.monotonic() + self.step_budget_s
            node, steps, phase = advance(self.ec2, node, goal, deadline=deadline)
            status = Status.DONE if phase == "done" else Status.IN_PROGRESS
            changes = {Field.PHASE: phase, Field.NODE_STATE: node.state}
            changes[Field.NODE_TYPE] = node.instance_type
        except StepRefused as exc:
            status = Status.FAILED
            changes = {Field.PHASE: "failed", Field.ERROR: exc.public}
            telemetry.log(
                "ERROR", "resize step refused", requestId=rid, operationId=record[Field.ID],
                reason=str(exc),
            )  # fmt: skip
        now = self._now_ms()
        history = json.loads(record.get(Field.STEPS) or "[]")
        history += [{"step": step, "at": now} for step in steps]
        changes.update({
            Field.STATUS: status,
            Field.STEPS: json.dumps(history[-spec.MAX_STEPS :], separators=(",", ":")),
            Field.UPDATED: str(now),
        })  # fmt: skip
        flat = [str(part) for item in changes.items() for part in item]
        key = spec.operation_key(record[Field.ID])
        self.redis.execute("HSET", key, *flat)
        self.redis.execute("EXPIRE", key, spec.RECORD_TTL_SECONDS)
        if status in spec.FINAL:
            self.redis.run_script(_RELEASE, [contract.RESIZE_LOCK_KEY], [record[Field.ID]])
            telemetry.log(
                "INFO", f"resize {status}", requestId=rid, operationId=record[Field.ID],
                instance=record[Field.INSTANCE],
            )  # fmt: skip
        return {**record, **{k.value: str(v) for k, v in changes.items()}}

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

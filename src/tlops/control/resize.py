"""Control's side of `POST /resize`: the EC2 steps that take the node to an operation's goal.

The router keeps the operation's record and lock in Redis (tlops.edge.resize) and
asks control to work towards the goal, a state and an instance type: stop the node
if its type must change, change the type once it is stopped, start it if the goal
is `running`. Control takes every step EC2 lets it take, waits (bounded) while EC2
finishes one (`stopping`, `pending`), and writes the progress after each step to
`results/resize/<operation>.json`, which the router reads into the record on every
`GET /resize/{operationId}`. The type of a running instance is never changed: AWS
refuses that, the stand-in does not, so `modify_type` checks the state itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tlops.contract import resize as spec
from tlops.contract.resize import Goal
from tlops.control import node as gpu_node
from tlops.control.node import Node

_MOST_STEPS = 5  # stop, change the type, start, and a look either side
POLL_S = 5.0  # between looks while EC2 finishes a step


class StepRefused(Exception):
    """EC2 refused a step (or the node may not take it): the operation fails.

    The message is for the log (EC2's own words); `public` is what the admin reads."""

    def __init__(self, detail: str, public: str):
        super().__init__(detail)
        self.public = public


def modify_type(ec2: Any, node: Node, instance_type: str) -> None:
    """Change a stopped node's type. A node in any other state is refused here: AWS answers
    IncorrectInstanceState, while the stand-in would change a running instance's type."""
    from botocore.exceptions import BotoCoreError, ClientError

    if node.state != "stopped":
        raise StepRefused(
            f"{node.instance_id} is {node.state}: its type changes only while stopped",
            "the node's type can only be changed while it is stopped",
        )
    if instance_type not in spec.INSTANCE_TYPES:
        raise StepRefused(
            f"{instance_type} is not one of {spec.INSTANCE_TYPES}",
            f"the node may only become one of {', '.join(spec.INSTANCE_TYPES)}",
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


def advance(ec2: Any, node: Node, goal: Goal) -> tuple[Node, list[str], str]:
    """The steps towards `goal` that EC2 lets us take now, from `node` as just described.

    Returns the node as the last answer left it, the steps taken, and the phase: what the
    operation waits for (`stopping`, `starting`), or `done` once the node is in the goal's
    state with the goal's type.
    """
    steps: list[str] = []
    for _ in range(_MOST_STEPS):
        if node.instance_type != goal.instance_type:
            if node.state == "stopped":
                modify_type(ec2, node, goal.instance_type)
                steps.append(f"changed the type from {node.instance_type} to {goal.instance_type}")
                node = node._replace(instance_type=goal.instance_type)
                continue
            if node.state == "running":
                node = _power(gpu_node.stop_instance, ec2, node)
                steps.append(f"stop requested (the type changes only while stopped): {node.state}")
                continue
            return node, steps, "stopping" if node.state == "stopping" else "starting"
        if node.state == goal.state:
            return node, steps, "done"
        if node.state in ("pending", "stopping"):
            return node, steps, "starting" if node.state == "pending" else "stopping"
        if goal.state == "running":
            node = _power(gpu_node.start_instance, ec2, node)
            steps.append(f"start requested: {node.state}")
        else:
            node = _power(gpu_node.stop_instance, ec2, node)
            steps.append(f"stop requested: {node.state}")
    return node, steps, "done" if node.state == goal.state else node.state


def run(
    ec2: Any,
    project: str,
    instance_id: str,
    goal: Goal,
    *,
    deadline: float,
    report: Callable[[dict[str, Any]], None],
    pinned: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Work towards `goal` until it is reached, a step is refused or `deadline` passes;
    `report` gets the progress after every look (status, phase, steps, node state/type).
    Only the deployment's node (`pinned`) is ever the operation's instance."""
    steps: list[str] = []
    while True:
        progress: dict[str, Any] = {"steps": steps}
        try:
            if instance_id != pinned:
                raise StepRefused(
                    f"instance refused: {instance_id} is not the deployment's node "
                    f"(TL_NODE_INSTANCE_ID={pinned or 'unset'})",
                    "the operation names an instance that is not the GPU node",
                )
            node = gpu_node.find(ec2, project, pinned)
            if node is None or node.instance_id != instance_id:
                raise StepRefused(
                    f"node {instance_id} is gone (now: {node})",
                    "the GPU node this operation began with is gone",
                )
            node, taken, phase = advance(ec2, node, goal)
            steps = steps + taken
            status = spec.Status.DONE if phase == "done" else spec.Status.IN_PROGRESS
            progress = {
                "status": status.value,
                "phase": phase,
                "steps": steps,
                "node_state": node.state,
                "node_type": node.instance_type,
            }
        except (StepRefused, gpu_node.NodeUnavailable) as exc:
            public = exc.public
            progress = {"status": spec.Status.FAILED.value, "phase": "failed", "steps": steps,
                        "error": public, "detail": str(exc)}  # fmt: skip
        report(progress)
        if progress["status"] != spec.Status.IN_PROGRESS or clock() + POLL_S >= deadline:
            return progress
        sleep(POLL_S)

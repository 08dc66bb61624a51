"""The GPU node as the router sees it: find it by tags, start it, stop it.

The node is the one EC2 instance tagged `Project=<project>` and `Role=gpu`
(the Ansible `gpu_node` role creates it, stopped). Every call here goes through
the client factory in `tlops.aws`, so the same code talks to AWS or the stand-in.
"""

from __future__ import annotations

import dataclasses

from tlops import aws

NODE_ROLE = "gpu"
LIVE_STATES = ("pending", "running", "stopping", "stopped")


class NodeUnavailable(Exception):
    """The node does not exist or EC2 refused to start/stop it; the message says which."""


@dataclasses.dataclass(frozen=True)
class Node:
    instance_id: str
    state: str


@dataclasses.dataclass(frozen=True)
class BootDecision:
    state: str  # "running", "starting"
    started: bool  # this call issued StartInstances
    node: Node


def find(project: str) -> Node | None:
    """The tagged GPU node, or None. Terminated and shutting-down instances do not count."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        pages = (
            aws.client("ec2")
            .get_paginator("describe_instances")
            .paginate(
                Filters=[
                    {"Name": "tag:Project", "Values": [project]},
                    {"Name": "tag:Role", "Values": [NODE_ROLE]},
                    {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
                ]
            )
        )
        instances = [
            instance
            for page in pages
            for reservation in page["Reservations"]
            for instance in reservation["Instances"]
        ]
    except (BotoCoreError, ClientError) as exc:
        raise NodeUnavailable(f"cannot describe the GPU node: {exc}") from exc
    if not instances:
        return None
    instances.sort(key=lambda i: i["InstanceId"])  # several tagged nodes: pick one, stably
    return Node(instances[0]["InstanceId"], instances[0]["State"]["Name"])


def ensure_running(project: str) -> BootDecision:
    """Start the node if it is stopped; never start it twice (pending counts as starting)."""
    from botocore.exceptions import BotoCoreError, ClientError

    node = find(project)
    if node is None:
        raise NodeUnavailable(f"no EC2 instance tagged Project={project}, Role={NODE_ROLE}")
    if node.state == "running":
        return BootDecision("running", started=False, node=node)
    if node.state == "pending":
        return BootDecision("starting", started=False, node=node)
    if node.state == "stopping":
        raise NodeUnavailable(f"{node.instance_id} is stopping; retry once it has stopped")
    try:
        aws.client("ec2").start_instances(InstanceIds=[node.instance_id])
    except (BotoCoreError, ClientError) as exc:
        raise NodeUnavailable(f"cannot start {node.instance_id}: {exc}") from exc
    return BootDecision("starting", started=True, node=node)


def stop(project: str) -> Node | None:
    """Stop the node if it runs; returns its state after the call, None if there is no node."""
    from botocore.exceptions import BotoCoreError, ClientError

    node = find(project)
    if node is None or node.state in ("stopping", "stopped"):
        return node
    try:
        answer = aws.client("ec2").stop_instances(InstanceIds=[node.instance_id])
    except (BotoCoreError, ClientError) as exc:
        raise NodeUnavailable(f"cannot stop {node.instance_id}: {exc}") from exc
    return Node(node.instance_id, answer["StoppingInstances"][0]["CurrentState"]["Name"])

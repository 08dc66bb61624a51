"""The GPU node as EC2 sees it: find it by tags, start it, stop it.

The node is the one EC2 instance tagged `Project=<project>` and `Role=gpu`
(the Ansible `gpu_node` role creates it, stopped). Every function takes the
EC2 client to use, from the factory in `tlops.common.aws`, so the same code
talks to AWS or the stand-in, with whatever timeouts its caller can afford.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple

from tlops.contract import names
from tlops.contract.states import NODE_DOWN_STATES
from tlops.contract.states import NODE_LIVE_STATES as LIVE_STATES

NODE_ROLE = names.NODE_ROLE


class NodeUnavailable(Exception):
    """The node does not exist or EC2 refused to start/stop it.

    The message holds the detail for the log (EC2's own words, which may name
    ARNs and account ids); `public` is what a client may be told.
    """

    def __init__(self, detail: str, public: str = "the GPU node could not be started"):
        super().__init__(detail)
        self.public = public


class Node(NamedTuple):
    instance_id: str
    state: str
    instance_type: str = ""  # as DescribeInstances says; "" where a call does not tell


class BootDecision(NamedTuple):
    state: str  # "running", "starting"
    started: bool  # this call issued StartInstances
    node: Node


def find(ec2: Any, project: str) -> Node | None:
    """The tagged GPU node, or None. Terminated and shutting-down instances do not count.

    One DescribeInstances call, not a paginator: there is one node, and a bounded
    caller must know how many calls it makes.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = ec2.describe_instances(
            Filters=[
                *names.tag_filters(project, NODE_ROLE),
                {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
            ]
        )
    except (BotoCoreError, ClientError) as exc:
        raise NodeUnavailable(
            f"cannot describe the GPU node: {exc}", "the GPU node could not be looked up"
        ) from exc
    instances = [
        instance for reservation in answer["Reservations"] for instance in reservation["Instances"]
    ]
    if not instances:
        return None
    instances.sort(key=lambda i: i["InstanceId"])  # several tagged nodes: pick one, stably
    first = instances[0]
    return Node(first["InstanceId"], first["State"]["Name"], first.get("InstanceType", ""))


def ensure_running(ec2: Any, project: str) -> BootDecision:
    """Start the node if it is stopped; never start it twice (pending counts as starting)."""
    node = find(ec2, project)
    if node is None:
        raise NodeUnavailable(
            f"no EC2 instance tagged Project={project}, Role={NODE_ROLE}",
            "no GPU node is deployed",
        )
    if node.state == "running":
        return BootDecision("running", started=False, node=node)
    if node.state == "pending":
        return BootDecision("starting", started=False, node=node)
    if node.state == "stopping":
        raise NodeUnavailable(
            f"{node.instance_id} is stopping",
            "the GPU node is stopping; retry once it has stopped",
        )
    start_instance(ec2, node)
    return BootDecision("starting", started=True, node=node)


def stop(ec2: Any, project: str) -> Node | None:
    """Stop the node if it runs; returns its state after the call, None if there is no node."""
    node = find(ec2, project)
    if node is None or node.state in NODE_DOWN_STATES:
        return node
    return stop_instance(ec2, node)


def start_instance(ec2: Any, node: Node) -> Node:
    """StartInstances for `node`; the node in the state EC2 answered."""
    with _refused(node, "start", "the GPU node could not be started"):
        answer = ec2.start_instances(InstanceIds=[node.instance_id])
    return node._replace(state=answer["StartingInstances"][0]["CurrentState"]["Name"])


def stop_instance(ec2: Any, node: Node) -> Node:
    """StopInstances for `node`; the node in the state EC2 answered."""
    with _refused(node, "stop", "the GPU node could not be stopped"):
        answer = ec2.stop_instances(InstanceIds=[node.instance_id])
    return node._replace(state=answer["StoppingInstances"][0]["CurrentState"]["Name"])


@contextlib.contextmanager
def _refused(node: Node, verb: str, public: str) -> Iterator[None]:
    """EC2's refusal (or no answer) as NodeUnavailable: its words for the log, `public`'s
    for the client."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise NodeUnavailable(f"cannot {verb} {node.instance_id}: {exc}", public) from exc

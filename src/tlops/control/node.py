"""The GPU node as EC2 sees it: find it by tags, start it, stop it.

The node is the one EC2 instance tagged `Project=<project>` and `Role=gpu`
(the Ansible `gpu_node` role creates it, stopped). Tags anyone may copy: what
acts on the node (control) also names it by the id deploy.yml pinned (`pinned`),
and an instance tagged like it with another id is never the node, only logged.
Every function takes the EC2 client to use, from the factory in
`tlops.common.aws`, so the same code talks to AWS or the stand-in, with
whatever timeouts its caller can afford.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple

from tlops.common.telemetry import Telemetry
from tlops.contract import names
from tlops.contract.states import NODE_DOWN_STATES
from tlops.contract.states import NODE_LIVE_STATES as LIVE_STATES

NODE_ROLE = names.NODE_ROLE
telemetry = Telemetry("control")


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


def find(ec2: Any, project: str, pinned: str | None = None) -> Node | None:
    """The tagged GPU node, or None. Terminated and shutting-down instances do not count.

    `pinned`: the deployment's node id (control's configuration): only the tagged instance
    with that id is the node, every other one tagged like it is refused and logged, and ""
    (no id pinned) finds none. None: the first tagged instance, for tools that only look.

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
    instances.sort(key=lambda i: i["InstanceId"])  # several tagged nodes: pick one, stably
    found = [
        Node(i["InstanceId"], i["State"]["Name"], i.get("InstanceType", "")) for i in instances
    ]
    if pinned is None:
        return found[0] if found else None
    for stranger in (node for node in found if node.instance_id != pinned):
        telemetry.log(
            "WARNING", "instance refused: tagged like the node, but not the deployment's node",
            instance=stranger.instance_id, pinned=pinned or "none",
            reason="control acts only on the instance deploy.yml launched (TL_NODE_INSTANCE_ID)"
            if pinned else "no node is pinned (TL_NODE_INSTANCE_ID): run deploy.yml",
        )  # fmt: skip
    return next((node for node in found if node.instance_id == pinned), None)


def stop(ec2: Any, project: str, pinned: str | None = None) -> Node | None:
    """Stop the node if it runs; returns its state after the call, None if there is no node
    (`pinned`: as for `find`)."""
    node = find(ec2, project, pinned)
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

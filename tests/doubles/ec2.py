"""The GPU node's instance record in the stand-in, without a whole deploy."""

from __future__ import annotations

import json
import uuid
from importlib import resources

from tlops.common import aws
from tlops.contract import names
from tlops.contract.states import NODE_LIVE_STATES

NODE_TAGS = {"Project": "tinyllama", "Role": "gpu", "Name": "tinyllama-gpu"}
LAUNCH_READ_TIMEOUT_S = 120.0


def tagged_instance(tags: dict[str, str] | None = None, *, stopped: bool = True) -> str:
    """An instance in the stand-in (through tlops.aws), as the gpu_node role leaves the node:
    tagged and stopped. For tests that need the node without a whole deploy."""
    tags = NODE_TAGS if tags is None else tags
    amis = json.loads(resources.files("tlops.local").joinpath("ubuntu_amis.json").read_text())
    image = next(a["ami_id"] for a in amis if a["architecture"] == "x86_64")
    ec2 = aws.client("ec2")
    # RunInstances is idempotent only with a ClientToken, which AWS honours
    # (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html) and the
    # stand-in (moto 5.2.5) ignores: there a retried slow call made a second tagged node. So the
    # launch is never retried, and waits as long as a loaded machine needs.
    launcher = aws.client("ec2", read_timeout=LAUNCH_READ_TIMEOUT_S, max_attempts=1)
    instance_id = launcher.run_instances(
        ClientToken=uuid.uuid4().hex,
        ImageId=image,
        InstanceType="g4dn.xlarge",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )["Instances"][0]["InstanceId"]
    if stopped:
        ec2.stop_instances(InstanceIds=[instance_id])
    return instance_id


def pinned_node() -> str:
    """The id deploy.yml pins in control's configuration: the one live instance tagged as
    the node (the gpu_node role refuses a second), the lowest id if a test made more; ""
    when there is none."""
    found = aws.client("ec2").describe_instances(
        Filters=[
            *names.tag_filters(NODE_TAGS["Project"], NODE_TAGS["Role"]),
            {"Name": "instance-state-name", "Values": list(NODE_LIVE_STATES)},
        ]
    )
    ids = sorted(i["InstanceId"] for r in found["Reservations"] for i in r["Instances"])
    return ids[0] if ids else ""

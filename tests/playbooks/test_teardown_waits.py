"""Teardown's task files that issue 19 changed, each in a play of its own against the stand-in:
what a bake left running is terminated (tag-scoped).
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from tests.playbooks.role_play import include, play
from tests.playbooks.stand_in import REGION, UBUNTU_AMI
from tlops.local.services import MotoProcess

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=1)]


@pytest.fixture
def stand_in(moto_server: str):
    MotoProcess.reset_url(moto_server)
    session = boto3.Session(aws_access_key_id="standin-key-id",
                            aws_secret_access_key="standin-secret", region_name=REGION)  # fmt: skip
    return lambda service: session.client(service, endpoint_url=moto_server)


def instance(ec2, **tags: str) -> str:
    made = ec2.run_instances(
        ImageId=UBUNTU_AMI, InstanceType="g4dn.xlarge", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )  # fmt: skip
    return made["Instances"][0]["InstanceId"]


def state(ec2, instance_id: str) -> str:
    found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    return found["Instances"][0]["State"]["Name"]


def test_teardown_terminates_what_a_bake_left_and_nothing_else(
    stand_in, moto_server: str, tmp_path: Path
):
    ec2 = stand_in("ec2")
    bake = instance(ec2, Project="tinyllama", Role="bake")
    their_bake = instance(ec2, Project="someone-else", Role="bake")
    node = instance(ec2, Project="tinyllama", Role="gpu")
    tasks = [include("ami_bake", "teardown.yml")]
    done = play(tmp_path, tasks, endpoint=moto_server)
    assert done.rc == 0, done.failure() or done.stderr[-2000:]
    assert state(ec2, bake) == "terminated"
    assert state(ec2, their_bake) == state(ec2, node) == "running"
    again = play(tmp_path, tasks, endpoint=moto_server)
    assert again.rc == 0 and again.changed() == []

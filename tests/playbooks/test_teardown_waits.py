"""Teardown's task files that issue 19 changed, each in a play of its own against the stand-in:
what a bake left running is terminated (tag-scoped), and the router functions' roles are
deleted only once Lambda's network interfaces have left the project's security groups.
The module tests show the waits and retries in detail (tests/modules/test_tl_lambda_enis.py,
test_tl_vpc_delete.py); these show the roles' tasks use them as teardown.yml runs them.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import boto3
import pytest

from tests.playbooks.role_play import include, play
from tests.playbooks.stand_in import REGION, UBUNTU_AMI
from tlops.local.services import MotoProcess

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=1)]

OURS = [{"Key": "Project", "Value": "tinyllama"}]
ROLES = ("tinyllama-router", "tinyllama-queue-health")  # the router role's two functions
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
    "Action": "sts:AssumeRole"}]})  # fmt: skip


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


def test_the_roles_go_once_lambda_has_deleted_the_functions_interfaces(
    stand_in, moto_server: str, tmp_path: Path
):
    """Issue 19, 4: the roles went at once, before Lambda could delete the interfaces with
    them (and, found by a listing that carries no tags, they were never deleted at all)."""
    ec2, iam = stand_in("ec2"), stand_in("iam")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/22")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName="tinyllama-router", Description="r", VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": OURS}],
    )["GroupId"]  # fmt: skip
    eni = ec2.create_network_interface(
        SubnetId=subnet, Groups=[group], Description="AWS Lambda VPC ENI-tinyllama-router-1"
    )["NetworkInterface"]["NetworkInterfaceId"]
    for name in ROLES:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST, Tags=OURS)
    iam.create_role(RoleName="tinyllama-router-theirs", AssumeRolePolicyDocument=TRUST)
    roles_seen: list[set[str]] = []

    def lambda_lets_go() -> None:  # while the first look's pause runs (15 s)
        roles_seen.append({r["RoleName"] for r in iam.list_roles()["Roles"]})
        ec2.delete_network_interface(NetworkInterfaceId=eni)

    # Late in the first pause: the play must have looked once by then, which takes a few
    # seconds of Ansible's start alone (5 s was too early on a loaded machine: no look yet),
    # and the second look comes 15 s after the first.
    threading.Timer(12, lambda_lets_go).start()
    done = play(
        tmp_path,
        [include("router", "teardown_roles.yml", teardown_lambda_eni_wait_minutes=1)],
        endpoint=moto_server,
    )
    assert done.rc == 0, done.failure() or done.stderr[-2000:]
    (waited,) = done.results("Wait for Lambda to delete the functions' network interfaces "
                             "(a line a minute)")  # fmt: skip
    assert waited["looks"] == 1 and waited["interfaces"] == []
    assert set(ROLES) <= roles_seen[0]  # kept while the interface was there
    left = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    assert left == {"tinyllama-router-theirs"}  # ours gone, the untagged look-alike kept

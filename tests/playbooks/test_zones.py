"""Where the node and the bake run: zones that offer their instance type, on a real moto server.

The stand-in answers DescribeInstanceTypeOfferings from AWS's published offerings: in
us-east-1, g4dn.xlarge is offered in every zone but us-east-1e; in eu-west-1 p4d.24xlarge
only in eu-west-1c, which makes a zone the choice must find. The network role makes the node's
subnet there and refuses one that is elsewhere; the bake picks its subnet there, the default
VPC's, else (no default VPC) the project's public subnet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.playbooks.role_play import Run, include, play
from tests.playbooks.stand_in import Account
from tlops.local.services import MotoProcess

pytestmark = pytest.mark.integration

ONE_ZONE = "p4d.24xlarge"  # eu-west-1c alone, in the stand-in's offerings
PROJECT = {"Key": "Project", "Value": "tinyllama"}


@pytest.fixture
def account(moto_server: str) -> Account:
    MotoProcess.reset_url(moto_server)
    return Account(moto_server)


def network(tmp_path: Path, endpoint: str, **variables: Any) -> Run:
    return play(tmp_path, [include("network", "main")], endpoint=endpoint, variables=variables)


def public_subnet(account: Account) -> dict[str, Any]:
    (subnet,) = account.tagged(
        "subnets", Filters=[{"Name": "tag:Name", "Values": ["tinyllama-public"]}]
    )
    return subnet


def test_the_zones_that_offer_a_type_leave_out_the_one_that_does_not(
    account: Account, moto_server: str, tmp_path: Path
) -> None:
    run = play(
        tmp_path,
        [include("network", "zones", network_node_instance_type="g4dn.xlarge")],
        endpoint=moto_server,
        variables={"aws_region": "us-east-1"},
    )
    assert run.rc == 0, run.failure()
    (found,) = run.results("Find the zones that offer g4dn.xlarge")
    assert found["zones"] == ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f"]


def test_the_node_subnet_is_made_in_a_zone_that_offers_its_type(
    account: Account, moto_server: str, tmp_path: Path
) -> None:
    run = network(tmp_path, moto_server, network_node_instance_type=ONE_ZONE)
    assert run.rc == 0, run.failure() or run.stdout[-3000:]
    assert public_subnet(account)["AvailabilityZone"] == "eu-west-1c"
    again = network(tmp_path, moto_server, network_node_instance_type=ONE_ZONE)
    assert again.rc == 0 and again.changed() == [], again.changed()


def test_a_type_offered_nowhere_stops_before_anything_is_made(
    account: Account, moto_server: str, tmp_path: Path
) -> None:
    run = network(tmp_path, moto_server, network_node_instance_type="g4dn.nonesuch")
    assert run.rc != 0
    assert "No availability zone of eu-west-1 offers g4dn.nonesuch" in run.failure()
    assert not account.tagged("vpcs")


def test_an_existing_node_subnet_in_a_zone_without_the_type_is_refused(
    account: Account, moto_server: str, tmp_path: Path
) -> None:
    # An earlier deploy's subnet, made where EC2 chose: a zone without the type.
    ec2 = account.ec2
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/22")["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc], Tags=[PROJECT, {"Key": "Name", "Value": "tinyllama-vpc"}])
    subnet = ec2.create_subnet(
        VpcId=vpc, CidrBlock="10.20.0.0/24", AvailabilityZone="eu-west-1a"
    )["Subnet"]["SubnetId"]  # fmt: skip
    ec2.create_tags(
        Resources=[subnet], Tags=[PROJECT, {"Key": "Name", "Value": "tinyllama-public"}]
    )  # fmt: skip
    run = network(tmp_path, moto_server, network_node_instance_type=ONE_ZONE)
    assert run.rc != 0
    failure = run.failure()
    assert f"The node's subnet {subnet} (10.20.0.0/24) is in eu-west-1a" in failure
    assert f"where {ONE_ZONE} is not offered (only in eu-west-1c)" in failure


def bake_subnet(tmp_path: Path, endpoint: str, **variables: Any) -> Run:
    show = {
        "name": "Show the subnet",
        "ansible.builtin.debug": {"var": "_ami_bake_variables.subnet_id"},
    }
    tasks = [include("ami_bake", "subnet", public=True), show]
    return play(tmp_path, tasks, endpoint=endpoint,
                variables={"ami_bake_instance_type": ONE_ZONE, **variables})  # fmt: skip


def shown_subnet(run: Run) -> str:
    (shown,) = run.results("Show the subnet")
    return shown["_ami_bake_variables.subnet_id"]


def test_the_bake_runs_in_the_default_vpc_in_a_zone_that_offers_its_type(
    account: Account, moto_server: str, tmp_path: Path
) -> None:
    run = bake_subnet(tmp_path, moto_server)
    assert run.rc == 0, run.failure() or run.stdout[-3000:]
    (default_c,) = account.ec2.describe_subnets(Filters=[
        {"Name": "default-for-az", "Values": ["true"]},
        {"Name": "availability-zone", "Values": ["eu-west-1c"]},
    ])["Subnets"]  # fmt: skip
    assert shown_subnet(run) == default_c["SubnetId"]  # handed to Packer's subnet_id


def delete_default_vpc(account: Account) -> None:
    ec2 = account.ec2
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])[
        "Subnets"
    ]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.delete_vpc(VpcId=vpc["VpcId"])


def test_without_a_default_vpc_the_bake_runs_in_the_projects_public_subnet(
    account: Account, moto_server: str, tmp_path: Path
) -> None:
    delete_default_vpc(account)
    assert network(tmp_path, moto_server, network_node_instance_type=ONE_ZONE).rc == 0
    run = bake_subnet(tmp_path, moto_server)
    assert run.rc == 0, run.failure() or run.stdout[-3000:]
    assert shown_subnet(run) == public_subnet(account)["SubnetId"]


def test_without_any_subnet_to_bake_in_the_bake_stops_saying_what_to_do(
    account: Account, moto_server: str, tmp_path: Path
) -> None:
    delete_default_vpc(account)
    run = bake_subnet(tmp_path, moto_server)
    assert run.rc != 0
    failure = run.failure()
    assert "No subnet to bake in: this account has no default VPC subnet" in failure
    assert "Run deploy.yml first" in failure and "ami_bake_subnet_id" in failure

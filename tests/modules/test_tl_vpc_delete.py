"""tl_vpc_delete: tagged groups, subnets and VPCs deleted in that order, look-alikes left; a
delete AWS refuses with DependencyViolation tried again, bounded, then refused naming what
depends. The stand-in refuses only a VPC that still has subnets; what AWS alone refuses (a
group or subnet an interface is still in) is stubbed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import STUB_ARGS
from .harness import ModuleFailed, code, run_module, warned

NETWORK = code("tl_network")
OURS = {"Project": "tinyllama"}
LAMBDA_ENI = "AWS Lambda VPC ENI-tinyllama-router-6a2f4e1c"


def tags(pairs: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


@pytest.fixture
def network(aws) -> dict[str, str]:
    """A tagged VPC with a subnet and a group, and an untagged group in it: a look-alike."""
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/22")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="tinyllama-router", Description="r", VpcId=vpc)
    theirs = ec2.create_security_group(GroupName="theirs", Description="t", VpcId=vpc)
    ec2.create_tags(Resources=[vpc, subnet, group["GroupId"]], Tags=tags(OURS))
    return {"vpc": vpc, "subnet": subnet, "group": group["GroupId"], "theirs": theirs["GroupId"]}


@pytest.fixture
def pauses(monkeypatch) -> Callable[..., list[float]]:
    """`pauses(then)`: the module's pauses are recorded, none sleeps, and `then(n)` runs after
    the n-th, as what held a delete up going away meanwhile."""

    def install(then: Callable[[int], object] = lambda n: None) -> list[float]:
        recorded: list[float] = []

        def pause(seconds: float) -> None:
            recorded.append(seconds)
            then(len(recorded))

        monkeypatch.setattr(NETWORK, "PAUSE", pause)
        return recorded

    return install


def test_the_tagged_ones_go_in_order_and_a_look_alike_stays(aws, aws_args, network, pauses):
    recorded = pauses()
    groups = [network["group"], network["theirs"]]
    args = {**aws_args, "security_group_ids": groups, "subnet_ids": [network["subnet"]],
            "vpc_ids": [network["vpc"]], "tags": OURS}  # fmt: skip
    planned = run_module("tl_vpc_delete", args, check=True)
    assert planned["changed"] and planned["deleted"] == [
        network["group"], network["subnet"], network["vpc"]]  # fmt: skip
    ec2 = aws("ec2")
    assert network["vpc"] in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}  # a plan only

    done = run_module("tl_vpc_delete", args)
    assert done["changed"] and done["deleted"] == planned["deleted"]
    assert done["kept"] == [network["theirs"]] and warned(done, "does not carry Project=")
    assert network["vpc"] not in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    again = run_module("tl_vpc_delete", args)
    assert not again["changed"] and again["deleted"] == [] and recorded == []


def test_a_vpc_refused_for_its_subnet_is_deleted_once_the_subnet_goes(
    aws, aws_args, network, pauses
):
    ec2 = aws("ec2")
    ec2.delete_security_group(GroupId=network["theirs"])
    recorded = pauses(lambda n: n == 2 and ec2.delete_subnet(SubnetId=network["subnet"]))
    done = run_module("tl_vpc_delete", {**aws_args, "vpc_ids": [network["vpc"]], "tags": OURS})
    assert done["deleted"] == [network["vpc"]] and recorded == [10, 10]


def test_untagged_deletes_are_refused(aws_args):
    with pytest.raises(ModuleFailed, match="needs tags with at least Project"):
        run_module("tl_vpc_delete", {**aws_args, "vpc_ids": ["vpc-1"], "tags": {"Role": "x"}})


# --- what AWS alone refuses: stubbed ---------------------------------------------------------
GROUP = {"GroupId": "sg-1", "GroupName": "tinyllama-router", "Tags": tags(OURS)}
HELD = "resource sg-1 has a dependent object"


def interface(eni_id: str, **fields: str) -> dict:
    return {"NetworkInterfaceId": eni_id, "Status": "in-use", "SubnetId": "subnet-1",
            "Groups": [{"GroupId": "sg-1", "GroupName": "tinyllama-router"}], **fields}  # fmt: skip


def test_a_group_lambdas_interface_holds_is_deleted_once_it_goes(stubbed, pauses):
    """Issue 19, 4: AWS refuses the group while Lambda's interface is in it; teardown failed
    at the first DependencyViolation."""
    recorded = pauses()
    ec2 = stubbed("ec2")
    ec2.add_response(
        "describe_security_groups", {"SecurityGroups": [GROUP]}, {"GroupIds": ["sg-1"]}
    )
    for _ in range(2):
        ec2.add_client_error("delete_security_group", "DependencyViolation", HELD, 400)
    ec2.add_response("delete_security_group", {}, {"GroupId": "sg-1"})
    done = run_module("tl_vpc_delete", {**STUB_ARGS, "security_group_ids": ["sg-1"], "tags": OURS})
    assert done["changed"] and done["deleted"] == ["sg-1"] and recorded == [10, 10]


def test_past_the_retries_it_names_what_still_depends(stubbed, pauses):
    recorded = pauses()
    ec2 = stubbed("ec2")
    ec2.add_response("describe_security_groups", {"SecurityGroups": [GROUP]}, None)
    for _ in range(4):
        ec2.add_client_error("delete_security_group", "DependencyViolation", HELD, 400)
    held_by = [
        interface("eni-1", InterfaceType="lambda", Description=LAMBDA_ENI),
        interface("eni-2", InterfaceType="interface", Description="",
                  Attachment={"InstanceId": "i-1"}),
    ]  # fmt: skip
    ec2.add_response(
        "describe_network_interfaces",
        {"NetworkInterfaces": held_by},
        {"Filters": [{"Name": "group-id", "Values": ["sg-1"]}], "MaxResults": 1000},
    )
    args = {**STUB_ARGS, "security_group_ids": ["sg-1"], "tags": OURS, "retry_timeout": 30}
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_vpc_delete", args)
    message = failed.value.result["msg"]
    assert message.startswith(
        f"security group sg-1 still has dependents after 30 s of retries (AWS: {HELD}): "
        f"eni-1 (lambda, in-use: {LAMBDA_ENI}); eni-2 (interface, in-use: attached to i-1)."
    )
    assert "Lambda deletes its interfaces up to 20 minutes" in message
    assert recorded == [10, 10, 10]


def test_any_other_refusal_fails_at_once(stubbed, pauses):
    recorded = pauses()
    ec2 = stubbed("ec2")
    ec2.add_response("describe_security_groups", {"SecurityGroups": [GROUP]}, None)
    ec2.add_client_error("delete_security_group", "UnauthorizedOperation", "not allowed", 403)
    with pytest.raises(ModuleFailed, match="UnauthorizedOperation"):
        run_module("tl_vpc_delete", {**STUB_ARGS, "security_group_ids": ["sg-1"], "tags": OURS})
    assert recorded == []


@pytest.mark.parametrize(
    ("change", "named"), [({"delay": 0}, "delay 0"), ({"retry_timeout": -1}, "retry_timeout")]
)
def test_bad_input_fails_naming_the_option(aws_args, change, named):
    with pytest.raises(ModuleFailed, match=named):
        run_module("tl_vpc_delete", {**aws_args, "vpc_ids": ["vpc-1"], "tags": OURS, **change})

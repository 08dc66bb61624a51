"""tl_lambda_enis against the stand-in, with interfaces seeded as Lambda leaves them: it waits
while they are there, gives up naming them, looks only in check mode; and, stubbed, what AWS
alone shows (the `lambda` interface type, more than one page)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import STUB_ARGS
from .harness import ModuleFailed, code, run_module

NETWORK = code("tl_network")
LAMBDA_ENI = "AWS Lambda VPC ENI-tinyllama-router-6a2f4e1c-9b7d-4c3e-8f5a-0d1b2c3e4f5a"


@pytest.fixture
def network(aws) -> dict[str, str]:
    """The project's VPC, private subnet and router group; Lambda's interface in them, and an
    interface of the queue's (ElastiCache) in the same group, which is not Lambda's."""
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/22")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="tinyllama-router", Description="r", VpcId=vpc)
    made = {"vpc": vpc, "subnet": subnet, "group": group["GroupId"]}
    for name, description in (("lambda", LAMBDA_ENI), ("queue", "ElastiCache tinyllama-queue-1")):
        eni = ec2.create_network_interface(
            SubnetId=subnet, Groups=[made["group"]], Description=description
        )
        made[name] = eni["NetworkInterface"]["NetworkInterfaceId"]
    return made


@pytest.fixture
def pauses(monkeypatch) -> Callable[[Callable[[int], None]], list[float]]:
    """`pauses(then)`: the module's pauses are recorded, none sleeps, and `then(n)` runs after
    the n-th (1, 2, ...), as Lambda deleting an interface meanwhile."""

    def install(then: Callable[[int], None] = lambda n: None) -> list[float]:
        recorded: list[float] = []

        def pause(seconds: float) -> None:
            recorded.append(seconds)
            then(len(recorded))

        monkeypatch.setattr(NETWORK, "PAUSE", pause)
        return recorded

    return install


def test_it_waits_until_lambda_has_deleted_its_interfaces(aws, aws_args, network, pauses):
    ec2 = aws("ec2")
    recorded = pauses(
        lambda n: n == 2 and ec2.delete_network_interface(NetworkInterfaceId=network["lambda"])
    )
    args = {**aws_args, "security_group_ids": [network["group"]], "wait_timeout": 60}
    done = run_module("tl_lambda_enis", args)
    assert not done["changed"] and done["interfaces"] == []
    assert (done["looks"], done["waited_s"]) == (2, 30) and recorded == [15, 15]


def test_past_the_wait_it_fails_naming_the_interfaces_left(aws_args, network, pauses):
    recorded = pauses()
    args = {**aws_args, "security_group_ids": [network["group"]], "wait_timeout": 60}
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_lambda_enis", args)
    message = failed.value.result["msg"]
    assert message.startswith("Lambda has not yet deleted 1 network interface(s)")
    assert f"{network['lambda']} (interface, available: {LAMBDA_ENI})" in message
    assert "after 60 s" in message and "run teardown again later" in message
    assert network["queue"] not in message  # the queue's interface is not Lambda's
    assert recorded == [15, 15, 15, 15]


def test_check_mode_only_looks(aws_args, network, pauses):
    recorded = pauses()
    args = {**aws_args, "security_group_ids": [network["group"]]}
    done = run_module("tl_lambda_enis", args, check=True)
    assert [i["id"] for i in done["interfaces"]] == [network["lambda"]]
    assert done["interfaces"][0]["description"] == LAMBDA_ENI and recorded == []


def test_with_none_of_lambdas_interfaces_there_it_does_not_wait(aws, aws_args, network, pauses):
    aws("ec2").delete_network_interface(NetworkInterfaceId=network["lambda"])
    recorded = pauses()
    done = run_module("tl_lambda_enis", {**aws_args, "security_group_ids": [network["group"]]})
    assert done["interfaces"] == [] and done["looks"] == 0 and recorded == []


def eni(eni_id: str, **fields: str) -> dict:
    return {"NetworkInterfaceId": eni_id, "Status": "in-use", "SubnetId": "subnet-1",
            "Groups": [{"GroupId": "sg-1", "GroupName": "tinyllama-router"}], **fields}  # fmt: skip


def test_on_aws_an_interface_of_type_lambda_is_lambdas_whatever_its_description(stubbed, pauses):
    """AWS types Lambda's interfaces `lambda`; the stand-in cannot. Two pages are read."""
    recorded = pauses()
    ec2 = stubbed("ec2")
    by_group = [{"Name": "group-id", "Values": ["sg-1"]}]
    first = {"NetworkInterfaces": [eni("eni-1", InterfaceType="lambda", Description="")],
             "NextToken": "page-2"}  # fmt: skip
    ec2.add_response("describe_network_interfaces", first,
                     {"Filters": by_group, "MaxResults": 1000})  # fmt: skip
    ec2.add_response(
        "describe_network_interfaces",
        {"NetworkInterfaces": [eni("eni-2", InterfaceType="interface", Description="a node")]},
        {"Filters": by_group, "MaxResults": 1000, "NextToken": "page-2"},
    )
    args = {**STUB_ARGS, "security_group_ids": ["sg-1"], "wait_timeout": 0}
    done = run_module("tl_lambda_enis", args)
    assert [(i["id"], i["interface_type"]) for i in done["interfaces"]] == [("eni-1", "lambda")]
    assert recorded == []


@pytest.mark.parametrize(
    ("change", "named"), [({"delay": 0}, "delay 0"), ({"wait_timeout": -1}, "wait_timeout")]
)
def test_bad_input_fails_naming_the_option(aws_args, change, named):
    with pytest.raises(ModuleFailed, match=named):
        run_module("tl_lambda_enis", {**aws_args, "security_group_ids": ["sg-1"], **change})

"""tl_gpu_quota: whether the account may run the GPU instances, read before anything launches.

Expected values come from AWS's documentation: the quota "Running On-Demand G and VT
instances" has the code L-DB2E81BA and counts vCPUs of running instances of the G and VT
families (https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html);
a g4dn.xlarge has 4 vCPUs and a g4dn.2xlarge 8, a g5.xlarge 4
(https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html); GetServiceQuota answers
NoSuchResourceException when no applied value is available, and GetAWSDefaultServiceQuota
then gives AWS's default (Service Quotas API reference).
"""

from __future__ import annotations

import pytest

from .conftest import STUB_ARGS
from .harness import ModuleFailed, run_module, warned

QUOTA = "L-DB2E81BA"
VCPUS = {"g4dn.xlarge": 4, "g4dn.2xlarge": 8, "g5.xlarge": 4, "t3.micro": 2}


def instance(instance_id, instance_type, state="running", **tags):
    return {
        "InstanceId": instance_id,
        "InstanceType": instance_type,
        "State": {"Name": state, "Code": 16},
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }


def arrange(stubbed, instances, *, applied=None, default=None):
    """Queue what EC2 and Service Quotas answer: the instances, their types' vCPUs, the quota."""
    ec2 = stubbed("ec2")
    ec2.add_response("describe_instances", {"Reservations": [{"Instances": instances}]})
    types = sorted({i["InstanceType"] for i in instances} | {"g4dn.xlarge"})
    types = [t for t in types if t in VCPUS and not t.startswith("t")]
    ec2.add_response(
        "describe_instance_types",
        {
            "InstanceTypes": [
                {"InstanceType": t, "VCpuInfo": {"DefaultVCpus": VCPUS[t]}} for t in types
            ]
        },
    )
    quotas = stubbed("service-quotas")
    wanted = {"ServiceCode": "ec2", "QuotaCode": QUOTA}
    if applied is not None:
        quotas.add_response("get_service_quota", {"Quota": {"Value": applied}}, wanted)
        return
    quotas.add_client_error("get_service_quota", "NoSuchResourceException", expected_params=wanted)
    quotas.add_response("get_aws_default_service_quota", {"Quota": {"Value": default}}, wanted)


def check(**over):
    return run_module(
        "tl_gpu_quota", {**STUB_ARGS, "launch": ["g4dn.xlarge"], "project": "tinyllama", **over}
    )


def test_a_new_account_with_no_g_vcpus_fails_naming_the_quota_and_the_request(stubbed):
    arrange(stubbed, [], applied=0.0)
    with pytest.raises(ModuleFailed) as failed:
        check()
    message = failed.value.result["msg"]
    assert QUOTA in message
    assert "need 4" in message  # a g4dn.xlarge's 4 vCPUs
    assert "request-service-quota-increase" in message and "--desired-value 4" in message
    assert "days" in message


def test_without_an_applied_value_the_default_is_read(stubbed):
    arrange(stubbed, [], default=4.0)
    done = check()
    assert (done["quota"], done["source"], done["needed"]) == (4.0, "default", 4)
    assert done["changed"] is False


def test_a_bake_beside_the_node_needs_both_and_four_are_not_enough(stubbed):
    node = instance("i-0node", "g4dn.xlarge", "stopped", Project="tinyllama", Role="gpu")
    arrange(stubbed, [node], applied=4.0)
    with pytest.raises(ModuleFailed) as failed:
        check(beside_project_node=True)
    assert "need 8" in failed.value.result["msg"]  # 4 for the bake, 4 for the node


def test_a_bake_beside_the_node_passes_with_eight(stubbed):
    node = instance("i-0node", "g4dn.xlarge", "stopped", Project="tinyllama", Role="gpu")
    arrange(stubbed, [node], applied=8.0)
    assert check(beside_project_node=True)["needed"] == 8


def test_others_running_g_instances_leave_too_little_now_a_warning_names_them(stubbed):
    theirs = instance("i-0theirs", "g5.xlarge", Project="someone-else")
    ours = instance("i-0node", "g4dn.xlarge", Project="tinyllama", Role="gpu")
    cpu = instance("i-0cpu", "t3.micro")  # not a G instance: not counted
    arrange(stubbed, [theirs, ours, cpu], applied=6.0)
    done = check()
    assert warned(done, "use 4 of the 6 vCPUs") and warned(done, "i-0theirs")
    assert [r["id"] for r in done["running"]] == ["i-0theirs", "i-0node"]


def test_an_instance_type_the_quota_does_not_count_is_refused_before_any_call(stubbed):
    with pytest.raises(ModuleFailed) as failed:
        check(launch=["t3.micro"])
    assert "launch: t3.micro is not a G or VT instance type" in failed.value.result["msg"]


def test_the_stand_in_serves_no_ec2_quota_and_says_it_was_not_read(aws_args):
    done = run_module(
        "tl_gpu_quota", {**aws_args, "launch": ["g4dn.xlarge"], "project": "tinyllama"}
    )
    assert done["source"] == "unread" and done["quota"] is None
    assert done["needed"] == 4  # the stand-in does know a g4dn.xlarge's vCPUs
    assert warned(done, "the G-instance vCPU quota was not read")

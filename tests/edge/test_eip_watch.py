"""eip_watch against the stand-in's EC2: it counts the project's unassociated addresses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.doubles.ec2 import tagged_instance
from tests.lambdas import load_handler, sample_event
from tlops.common import aws
from tlops.edge import eip_watch

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def address(tags: dict[str, str]) -> str:
    ec2 = aws.client("ec2")
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    if tags:
        ec2.create_tags(
            Resources=[allocation], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
        )
    return allocation


def test_only_the_projects_detached_addresses_count(aws_stand_in, capsys, monkeypatch):
    held = address({"Project": "tinyllama"})
    aws.client("ec2").associate_address(
        AllocationId=held, InstanceId=tagged_instance(stopped=False)
    )
    loose = address({"Project": "tinyllama", "Role": "gpu"})
    address({"Project": "someone-else"})
    address({})
    monkeypatch.setenv("TL_PROJECT", "tinyllama")
    handler = load_handler("eip_watch")
    found = handler.lambda_handler(sample_event("scheduled"))
    assert [a["allocationId"] for a in found["detached"]] == [loose]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [metric] = [r for r in lines if "_aws" in r]
    assert metric["DetachedEIPs"] == 1
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TLFIF"
    assert any(r.get("message") == "elastic ip detached" for r in lines)


def test_none_is_zero(aws_stand_in, capsys):
    assert eip_watch.watch(aws.client("ec2"), "tinyllama")["detached"] == []
    assert '"DetachedEIPs":0' in capsys.readouterr().out

"""The two guard-rail Lambdas through their thin entry points in lambda_src, on the sample
events of tests/events, against a moto server; a failing action raised to the runtime so
that Lambda retries; and their zips, which carry no third-party package at all."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from tests.doubles.ec2 import tagged_instance
from tests.lambdas import LambdaContext, load_handler, sample_event
from tlops.common import aws
from tlops.guard import killer
from tlops.local import costs as canned
from tlops.tooling import lambda_zip

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"


def budget(amount: str = "20", spent: str = "21.2") -> None:
    """The budget, with the actual spend AWS Budgets would report (past the kill line)."""
    aws.client("budgets").create_budget(
        AccountId=ACCOUNT,
        Budget={"BudgetName": "tinyllama-monthly", "BudgetType": "COST", "TimeUnit": "MONTHLY",
                "BudgetLimit": {"Amount": amount, "Unit": "USD"},
                "CalculatedSpend": {"ActualSpend": {"Amount": spent, "Unit": "USD"}}},
    )  # fmt: skip


CONTROL_BUCKET = f"tinyllama-control-{ACCOUNT}"


@pytest.fixture
def killer_env(aws_stand_in, monkeypatch) -> None:
    """The killer's environment as the guardrails role sets it, and the control bucket (the
    storage role's) it leaves its mark in."""
    for name, value in {
        "TL_PROJECT": "tinyllama",
        "TL_BUDGET_NAME": "tinyllama-monthly",
        "TL_ACCOUNT_ID": ACCOUNT,
        "TL_QUEUE_PREFIX": "tinyllama-queue",
        "TL_CONTROL_BUCKET": CONTROL_BUCKET,
    }.items():
        monkeypatch.setenv(name, value)  # fmt: skip
    aws.client("s3").create_bucket(
        Bucket=CONTROL_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )


def test_the_killer_entry_point_serves_the_sample_notification(killer_env, capsys):
    budget()
    node = tagged_instance()
    aws.client("ec2").start_instances(InstanceIds=[node])
    event = sample_event("budget_notification")
    handler = load_handler("budget_killer")

    # sent in November 2026: a period that ended
    late = handler.lambda_handler(event, LambdaContext())
    assert not late["acted"] and "budget period that has ended" in late["reasons"][0]

    event["Records"][0]["Sns"]["Timestamp"] = datetime.now(UTC).isoformat()
    result = handler.lambda_handler(event, LambdaContext())
    assert result["acted"] and result["changed"]
    assert [(a["kind"], a["resource"]) for a in result["actions"]] == [
        ("mark-killed", CONTROL_BUCKET), ("stop-instance", node)]  # fmt: skip
    assert '"BudgetStops":1' in capsys.readouterr().out  # the mark stops nothing itself
    mark = aws.client("s3").get_object(Bucket=CONTROL_BUCKET, Key="killed.json")["Body"].read()
    assert "tinyllama-monthly" in json.loads(mark)["why"]


def test_a_failed_action_fails_the_invocation_so_lambda_retries(killer_env, monkeypatch):
    budget()
    ec2 = boto3.client("ec2", region_name="eu-west-1", aws_access_key_id="x",
                       aws_secret_access_key="x")  # fmt: skip
    stub = Stubber(ec2)
    instance = {"InstanceId": "i-0123456789abcdef0", "State": {"Name": "running", "Code": 16}}
    stub.add_response("describe_instances", {"Reservations": [{"Instances": [instance]}]})
    stub.add_client_error("stop_instances", "UnauthorizedOperation", "not allowed")
    stub.add_response("describe_instances", {"Reservations": []})  # no bake left running
    stub.add_response("describe_addresses", {"Addresses": []})
    stub.activate()
    real = killer._client
    monkeypatch.setattr(killer, "_client", lambda s: ec2 if s == "ec2" else real(s))
    event = sample_event("budget_notification")
    event["Records"][0]["Sns"]["Timestamp"] = datetime.now(UTC).isoformat()
    with pytest.raises(killer.KillIncomplete, match="UnauthorizedOperation") as raised:
        killer.lambda_handler(event)
    stub.assert_no_pending_responses()  # the refusal did not stop the steps after it
    assert "1 action(s) failed" in str(raised.value)  # the mark was left: only the stop failed


def test_the_cost_summary_entry_point_publishes_the_days_mail(aws_stand_in, monkeypatch):
    topic = aws.client("sns").create_topic(Name="tinyllama-cost-daily")["TopicArn"]
    canned.ensure(aws.client("ce"), aws_stand_in, datetime.now(UTC).date())
    for name, value in {
        "TL_PROJECT": "tinyllama",
        "TL_COST_TOPIC_ARN": topic,
        "TL_BUDGET_AMOUNT": "20",
        "TL_BUDGET_UNIT": "USD",
    }.items():
        monkeypatch.setenv(name, value)  # fmt: skip
    handler = load_handler("cost_summary")
    result = handler.lambda_handler(sample_event("cost_mail_schedule"), LambdaContext())
    assert result["message_id"] and result["problem"] == ""
    assert result["subject"].endswith(f"tinyllama daily cost, {datetime.now(UTC).date()}") or (
        "projection" in result["subject"]
    )
    monkeypatch.delenv("TL_COST_TOPIC_ARN")
    with pytest.raises(RuntimeError, match="TL_COST_TOPIC_ARN"):
        handler.lambda_handler(sample_event("cost_mail_schedule"), LambdaContext())


@pytest.mark.parametrize("function", ["budget_killer", "cost_summary"])
def test_the_zips_carry_tlops_and_nothing_third_party(function, tmp_path):
    report = lambda_zip.build_function_zip(function, tmp_path / f"{function}.zip")
    assert report.packages == ()  # boto3 is the runtime's; no pydantic, no redis
    assert report.size < 200_000

"""The budget killer against a moto server: it stops the tagged node, releases the project's
Elastic IPs, deletes the router's EC2 endpoint and the tagged queue, leaves every untagged
look-alike alone, and a repeated, late, stale, foreign or malformed notification changes
nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.doubles.ec2 import tagged_instance
from tlops.common import aws
from tlops.guard import killer, notification
from tlops.guard.killer import KillerConfig

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
ACCOUNT = "123456789012"
BUDGET = "tinyllama-monthly"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:tinyllama-budget-kill"
CONFIG = KillerConfig(project="tinyllama", budget_name=BUDGET, account=ACCOUNT, region=REGION,
                      queue_id="tinyllama-queue")  # fmt: skip
NOW = datetime.now(UTC)


def tags(**pairs: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def event(*, spend: float = 21.2, limit: float = 20.0, when: datetime = NOW, **overrides):
    text = notification.budget_message(
        **{"budget_name": BUDGET, "account": ACCOUNT, "limit": limit, "unit": "USD",
           "threshold_percent": 105, "spend": spend, "when": when, **overrides}
    )  # fmt: skip
    return notification.sns_event(topic_arn=TOPIC, message_id="m-1", message=text, when=when)


def run(event_: object, config: KillerConfig = CONFIG) -> killer.Report:
    return killer.handle(event_, config, aws.client)


def state(instance_id: str) -> str:
    found = aws.client("ec2").describe_instances(InstanceIds=[instance_id])
    return found["Reservations"][0]["Instances"][0]["State"]["Name"]


@pytest.fixture
def account(aws_stand_in):
    """A deployment with everything the killer acts on, and untagged look-alikes of each."""
    ec2, cache = aws.client("ec2"), aws.client("elasticache")
    aws.client("budgets").create_budget(
        AccountId=ACCOUNT,
        Budget={"BudgetName": BUDGET, "BudgetLimit": {"Amount": "20", "Unit": "USD"},
                "TimeUnit": "MONTHLY", "BudgetType": "COST"},
    )  # fmt: skip
    node = tagged_instance()
    ec2.start_instances(InstanceIds=[node])
    theirs = tagged_instance(tags={"Project": "someone-else", "Role": "gpu"})
    builder = tagged_instance(tags={"Project": "tinyllama", "Role": "builder"})
    ec2.start_instances(InstanceIds=[theirs, builder])

    def address(**pairs: str) -> str:
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        if pairs:
            ec2.create_tags(Resources=[allocation], Tags=tags(**pairs))
        return allocation

    ours = address(Project="tinyllama", Role="gpu")
    ec2.associate_address(AllocationId=ours, InstanceId=node)
    loose = address(Project="tinyllama")
    untagged, foreign = address(), address(Project="someone-else")

    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/22")["Vpc"]["VpcId"]

    def endpoint(service: str, kind: str, **pairs: str) -> str:
        spec = {"ResourceType": "vpc-endpoint", "Tags": tags(**pairs)} if pairs else None
        return ec2.create_vpc_endpoint(
            VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.{service}", VpcEndpointType=kind,
            **({"TagSpecifications": [spec]} if spec else {}),
        )["VpcEndpoint"]["VpcEndpointId"]  # fmt: skip

    router_endpoint = endpoint("ec2", "Interface", Project="tinyllama", Role="router")
    other_endpoint = endpoint("ec2", "Interface")
    gateway = endpoint("s3", "Gateway", Project="tinyllama", Role="network")

    def queue(group_id: str, **pairs: str) -> None:
        cache.create_replication_group(
            ReplicationGroupId=group_id, ReplicationGroupDescription="q", Engine="redis",
            CacheNodeType="cache.t4g.micro", NumCacheClusters=1, Tags=tags(**pairs),
        )  # fmt: skip

    queue("tinyllama-queue", Project="tinyllama", Role="queue")
    queue("other-queue")
    return {"node": node, "theirs": theirs, "builder": builder, "ours": ours, "loose": loose,
            "untagged": untagged, "foreign": foreign, "router_endpoint": router_endpoint,
            "other_endpoint": other_endpoint, "gateway": gateway}  # fmt: skip


def addresses() -> set[str]:
    return {a["AllocationId"] for a in aws.client("ec2").describe_addresses()["Addresses"]}


def endpoint_states() -> dict[str, str]:
    found = aws.client("ec2").describe_vpc_endpoints()["VpcEndpoints"]
    return {e["VpcEndpointId"]: e["State"].lower() for e in found}


def queue_status(group_id: str) -> str:
    found = aws.client("elasticache").describe_replication_groups(ReplicationGroupId=group_id)
    return found["ReplicationGroups"][0]["Status"]


def test_a_breach_stops_everything_that_costs_and_nothing_else(account, capsys):
    report = run(event())
    assert report.acted and report.changed and not report.failed
    done = {(a.kind, a.resource) for a in report.actions}
    assert done == {
        ("stop-instance", account["node"]),
        ("release-address", account["ours"]),
        ("release-address", account["loose"]),
        ("delete-endpoint", account["router_endpoint"]),
        ("delete-queue", "tinyllama-queue"),
    }
    assert state(account["node"]) in ("stopping", "stopped")
    assert state(account["theirs"]) == state(account["builder"]) == "running"
    assert addresses() == {account["untagged"], account["foreign"]}
    endpoints = endpoint_states()
    assert endpoints[account["router_endpoint"]] == "deleted"
    assert endpoints[account["other_endpoint"]] == endpoints[account["gateway"]] == "available"
    assert queue_status("tinyllama-queue") == "deleting"
    assert queue_status("other-queue") == "available"

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    logged = [line for line in lines if line.get("message", "").startswith("budget killer ")]
    assert len(logged) == 5 and all(line["why"] and line["resource"] for line in logged)
    (metric,) = [line for line in lines if "BudgetStops" in line]
    assert metric["BudgetStops"] == 5 and metric["_aws"]["CloudWatchMetrics"][0]["Namespace"]

    again = run(event())  # SNS delivers at least once; Lambda retries
    assert again.acted and again.actions == []


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: event(budget_name="someone-elses-budget"), "a notification for budget"),
        (lambda: event(alert_type="FORECASTED"), "only actual spend stops anything"),
        (lambda: event(when=NOW.replace(day=1) - timedelta(days=1)), "period that has ended"),
        (lambda: event(limit=10.0, spend=10.6), "stale notification"),
        (lambda: event(threshold_percent=75, spend=15.5), "under the kill line"),
        (lambda: {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "{}"}}]},
         "names no budget"),
        (lambda: {"hello": "world"}, "not an SNS event"),
    ],
)  # fmt: skip
def test_notifications_it_must_not_believe_change_nothing(account, make, why):
    report = run(make())
    assert not report.acted and report.actions == []
    assert any(why in reason for reason in report.reasons), report.reasons
    assert state(account["node"]) == "running"
    assert account["ours"] in addresses()
    assert queue_status("tinyllama-queue") == "available"


def test_a_raised_limit_makes_an_earlier_notification_stale(account):
    aws.client("budgets").delete_budget(AccountId=ACCOUNT, BudgetName=BUDGET)
    report = run(event())
    assert not report.acted and "no longer exists" in report.reasons[0]
    aws.client("budgets").create_budget(
        AccountId=ACCOUNT,
        Budget={"BudgetName": BUDGET, "BudgetLimit": {"Amount": "40", "Unit": "USD"},
                "TimeUnit": "MONTHLY", "BudgetType": "COST"},
    )  # fmt: skip
    assert not run(event()).acted  # sent for 20, the limit is 40 now
    assert run(event(limit=40.0, spend=42.5)).changed


def test_an_untagged_queue_of_the_configured_name_is_left_alone(aws_stand_in):
    aws.client("elasticache").create_replication_group(
        ReplicationGroupId="tinyllama-queue", ReplicationGroupDescription="not ours",
        Engine="redis", CacheNodeType="cache.t4g.micro", NumCacheClusters=1,
    )  # fmt: skip
    aws.client("budgets").create_budget(
        AccountId=ACCOUNT,
        Budget={"BudgetName": BUDGET, "BudgetLimit": {"Amount": "20", "Unit": "USD"},
                "TimeUnit": "MONTHLY", "BudgetType": "COST"},
    )  # fmt: skip
    report = run(event())
    assert report.acted and report.actions == []
    assert queue_status("tinyllama-queue") == "available"


def test_the_lambda_entry_point_reads_its_configuration(account, monkeypatch):
    for name, value in {
        "TL_PROJECT": "tinyllama",
        "TL_BUDGET_NAME": BUDGET,
        "TL_ACCOUNT_ID": ACCOUNT,
        "TL_QUEUE_ID": "tinyllama-queue",
    }.items():
        monkeypatch.setenv(name, value)  # fmt: skip
    result = killer.lambda_handler(event())
    assert result["acted"] and result["changed"] and len(result["actions"]) == 5
    monkeypatch.delenv("TL_BUDGET_NAME")
    with pytest.raises(RuntimeError, match="TL_BUDGET_NAME"):
        killer.lambda_handler(event())

"""The budget killer against a moto server: it leaves its mark in the control bucket first,
then stops the tagged node, terminates what a bake left running, releases the project's
Elastic IPs and deletes every tagged group of the queue's prefix, leaves every untagged
look-alike alone, and a repeated, late, stale, forged, foreign or malformed notification
changes nothing: it acts on the spend AWS Budgets reports, not on the message's. With its
mark there, control restarts nothing: a wake or a resize asked during the kill is refused."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.control.test_control import s3_event
from tests.doubles.ec2 import tagged_instance
from tlops.checkout import ROOT
from tlops.checks import access
from tlops.common import aws
from tlops.common.control_bucket import ControlBucket
from tlops.contract import control, names
from tlops.contract.control import Action
from tlops.control.actions import Control
from tlops.control.config import ControlConfig
from tlops.control.queue import QueueSpec
from tlops.guard import killer, notification
from tlops.guard.killer import KillerConfig

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
ACCOUNT = "123456789012"
BUDGET = "tinyllama-monthly"
BUCKET = f"tinyllama-control-{ACCOUNT}"
PREFIX = "tinyllama-queue"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:tinyllama-budget-kill"
CONFIG = KillerConfig(project="tinyllama", budget_name=BUDGET, account=ACCOUNT, region=REGION,
                      queue_prefix=PREFIX, control_bucket=BUCKET)  # fmt: skip
QUEUE_TAGS = {"Project": "tinyllama", "Role": "queue"}
BAKE_TAGS = {"Project": "tinyllama", "Role": "bake", "Name": "tinyllama-gpu-20261207-build"}
NOW = datetime.now(UTC)


def tags(**pairs: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def event(*, spend: float = 21.2, limit: float = 20.0, when: datetime = NOW, **overrides):
    text = notification.budget_message(
        **{"budget_name": BUDGET, "account": ACCOUNT, "limit": limit, "unit": "USD",
           "threshold_percent": 105, "spend": spend, "when": when, **overrides}
    )  # fmt: skip
    return notification.sns_event(topic_arn=TOPIC, message_id="m-1", message=text, when=when)


def run(event_: object, config: KillerConfig = CONFIG, client: Any = aws.client) -> killer.Report:
    return killer.handle(event_, config, client)


def state(instance_id: str) -> str:
    found = aws.client("ec2").describe_instances(InstanceIds=[instance_id])
    return found["Reservations"][0]["Instances"][0]["State"]["Name"]


def budget(amount: str = "20", spent: str = "21.2") -> None:
    """The budget, with the actual spend AWS Budgets would report for it (the stand-in keeps
    what it is given: it accrues no spend of its own)."""
    aws.client("budgets").create_budget(
        AccountId=ACCOUNT,
        Budget={"BudgetName": BUDGET, "BudgetLimit": {"Amount": amount, "Unit": "USD"},
                "TimeUnit": "MONTHLY", "BudgetType": "COST",
                "CalculatedSpend": {"ActualSpend": {"Amount": spent, "Unit": "USD"}}},
    )  # fmt: skip


def rebudget(amount: str = "20", spent: str = "21.2") -> None:
    """The budget as it is now (the stand-in cannot update one: it is made again)."""
    aws.client("budgets").delete_budget(AccountId=ACCOUNT, BudgetName=BUDGET)
    budget(amount, spent)


def queue(group_id: str, **pairs: str) -> None:
    aws.client("elasticache").create_replication_group(
        ReplicationGroupId=group_id, ReplicationGroupDescription="q", Engine="redis",
        CacheNodeType="cache.t4g.micro", NumCacheClusters=1, Tags=tags(**pairs),
    )  # fmt: skip


@pytest.fixture
def bucket(aws_stand_in) -> ControlBucket:
    """The control bucket (the storage role's), where the killer leaves its mark."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return ControlBucket(s3, BUCKET)


@pytest.fixture
def account(bucket):
    """A deployment with everything the killer acts on, and untagged look-alikes of each."""
    ec2 = aws.client("ec2")
    budget()
    node = tagged_instance()
    ec2.start_instances(InstanceIds=[node])
    theirs = tagged_instance(tags={"Project": "someone-else", "Role": "gpu"})
    builder = tagged_instance(tags={"Project": "tinyllama", "Role": "builder"})
    ec2.start_instances(InstanceIds=[theirs, builder])
    # what a bake Packer could not clean up leaves: its build instance, running; a stopped
    # one bills its volume; someone else's bake is not ours
    bake = tagged_instance(tags=BAKE_TAGS, stopped=False)
    stopped_bake = tagged_instance(tags=BAKE_TAGS)
    their_bake = tagged_instance(tags={**BAKE_TAGS, "Project": "someone-else"}, stopped=False)

    def address(**pairs: str) -> str:
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        if pairs:
            ec2.create_tags(Resources=[allocation], Tags=tags(**pairs))
        return allocation

    ours = address(Project="tinyllama", Role="gpu")
    ec2.associate_address(AllocationId=ours, InstanceId=node)
    loose = address(Project="tinyllama")
    untagged, foreign = address(), address(Project="someone-else")

    # the queue, and an older group of it that a sleep left (still listed while deleting)
    queue("tinyllama-queue-1", **QUEUE_TAGS)
    queue("tinyllama-queue-2", **QUEUE_TAGS)
    queue("tinyllama-queue-3", Project="someone-else", Role="queue")  # the prefix, not ours
    queue("tinyllama-queue-4", Project="tinyllama")  # ours, but not tagged as the queue
    queue("other-queue-1", **QUEUE_TAGS)  # tagged as ours, another prefix
    queue("other-queue-2")
    return {"node": node, "theirs": theirs, "builder": builder, "ours": ours, "loose": loose,
            "untagged": untagged, "foreign": foreign, "bake": bake,
            "stopped_bake": stopped_bake, "their_bake": their_bake}  # fmt: skip


def addresses() -> set[str]:
    return {a["AllocationId"] for a in aws.client("ec2").describe_addresses()["Addresses"]}


def queue_statuses() -> dict[str, str]:
    found = aws.client("elasticache").describe_replication_groups()["ReplicationGroups"]
    return {g["ReplicationGroupId"]: g["Status"] for g in found}


LOOK_ALIKES = {"tinyllama-queue-3": "available", "tinyllama-queue-4": "available",
               "other-queue-1": "available", "other-queue-2": "available"}  # fmt: skip


def test_a_breach_stops_everything_that_costs_and_nothing_else(account, bucket, capsys):
    before_ms = time.time() * 1000
    report = run(event())
    after_ms = time.time() * 1000
    assert report.acted and report.changed and not report.failed
    done = {(a.kind, a.resource) for a in report.actions}
    assert done == {
        ("mark-killed", BUCKET),
        ("stop-instance", account["node"]),
        ("terminate-bake", account["bake"]),
        ("terminate-bake", account["stopped_bake"]),
        ("release-address", account["ours"]),
        ("release-address", account["loose"]),
        ("delete-queue", "tinyllama-queue-1"),
        ("delete-queue", "tinyllama-queue-2"),
    }
    assert report.actions[0].kind == "mark-killed"  # before anything is stopped
    assert state(account["node"]) in ("stopping", "stopped")
    assert state(account["theirs"]) == state(account["builder"]) == "running"
    gone = {"shutting-down", "terminated"}
    assert {state(account["bake"]), state(account["stopped_bake"])} <= gone
    assert state(account["their_bake"]) == "running"
    assert addresses() == {account["untagged"], account["foreign"]}
    assert queue_statuses() == {"tinyllama-queue-1": "deleting", "tinyllama-queue-2": "deleting",
                                **LOOK_ALIKES}  # fmt: skip
    mark = bucket.get_json(control.KILLED_KEY)
    assert "m-1" in mark["why"] and BUDGET in mark["why"]
    assert before_ms - 1 <= mark["at_ms"] <= after_ms + 1

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    logged = [line for line in lines if line.get("message", "").startswith("budget killer ")]
    assert len(logged) == 8 and all(line["why"] and line["resource"] for line in logged)
    (metric,) = [line for line in lines if "BudgetStops" in line]
    assert metric["BudgetStops"] == 7 and metric["_aws"]["CloudWatchMetrics"][0]["Namespace"]

    again = run(event())  # SNS delivers at least once; Lambda retries
    assert again.acted and again.actions == [] and not again.changed
    assert bucket.get_json(control.KILLED_KEY) == mark  # the first kill's mark stays


def test_the_mark_is_written_before_anything_is_stopped(account, bucket):
    calls: list[str] = []
    hooked: list[tuple[Any, str]] = []

    def seen(model, **_: Any) -> None:
        marked = bucket.get_json(control.KILLED_KEY) is not None
        calls.append(f"{model.name}{' (marked)' if marked else ''}")

    def client(service: str) -> Any:
        made = aws.client(service)  # cached: the hooks come off again below
        for operation in ("PutObject", "StopInstances", "TerminateInstances", "ReleaseAddress",
                          "DeleteReplicationGroup"):  # fmt: skip
            made.meta.events.register(f"before-call.*.{operation}", seen)
            hooked.append((made, f"before-call.*.{operation}"))
        return made

    try:
        assert run(event(), client=client).changed
    finally:
        for made, name in hooked:
            made.meta.events.unregister(name, seen)
    assert calls[0] == "PutObject"
    assert calls[1:] == ["StopInstances (marked)", "TerminateInstances (marked)",
                         "ReleaseAddress (marked)",
                         "ReleaseAddress (marked)", "DeleteReplicationGroup (marked)",
                         "DeleteReplicationGroup (marked)"]  # fmt: skip


def test_a_kill_that_cannot_leave_its_mark_still_stops_everything(account, bucket):
    bucket.s3.delete_bucket(Bucket=BUCKET)
    report = run(event())
    [failed] = report.failed
    assert (failed.kind, failed.resource) == ("mark-killed", BUCKET)
    assert "NoSuchBucket" in failed.detail
    assert state(account["node"]) in ("stopping", "stopped")
    assert queue_statuses()["tinyllama-queue-2"] == "deleting"


def test_a_budget_killer_during_a_wake_restarts_nothing(account, bucket):
    """A request came while the stack slept: the router asked for a wake, and the kill lands
    before control runs it. Control then finds the mark: nothing starts, nothing is made."""
    ec2 = aws.client("ec2")
    ec2.stop_instances(InstanceIds=[account["node"]])  # asleep-ish: the node is stopped
    now_ms = int(NOW.timestamp() * 1000)
    name = control.wake_name(now_ms, None)
    wake = control.request_key(Action.WAKE, name)
    assert bucket.ask(Action.WAKE, name, by="router", now_ms=now_ms)
    operation = "3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b"
    start = control.request_key(Action.RESIZE, f"{operation}-1")
    assert bucket.ask(Action.RESIZE, f"{operation}-1", by="router", now_ms=now_ms,
                      operation=operation, goal_state="running", goal_type="g4dn.xlarge",
                      instance=account["node"])  # fmt: skip

    assert run(event()).changed
    before = queue_statuses()

    spec = QueueSpec(id_prefix=PREFIX, subnet_group="tinyllama-queue", tags=QUEUE_TAGS)
    ctl = Control(ControlConfig("tinyllama", BUCKET, spec, node_instance_id=account["node"]),
                  sleep=lambda s: None)  # fmt: skip
    outcomes = ctl.handle(s3_event(wake, start, bucket=BUCKET))["outcomes"]
    assert [(o["action"], o["outcome"]) for o in outcomes] == [("wake", "refused"),
                                                               ("resize", "refused")]  # fmt: skip
    assert state(account["node"]) == "stopped"
    assert queue_statuses() == before  # no group made: the kill's deletions stand
    recorded = bucket.state()
    assert recorded["wake"]["error"].startswith("the budget killer stopped the stack")
    assert recorded["state"] == "asleep"
    progress = bucket.get_json(control.resize_result_key(operation))
    assert progress["status"] == "failed"
    assert progress["error"] == "the budget killer stopped the stack"

    # a stop is still allowed: it costs nothing
    stop = control.request_key(Action.STOP, "req-1")
    assert bucket.ask(Action.STOP, "req-1", by="router", now_ms=now_ms, sub="admin-1")
    [stopped] = ctl.handle(s3_event(stop, bucket=BUCKET))["outcomes"]
    assert stopped["outcome"] in ("stopped", "stopping")


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: event(budget_name="someone-elses-budget"), "a notification for budget"),
        (lambda: event(alert_type="FORECASTED"), "only actual spend stops anything"),
        (lambda: event(when=NOW.replace(day=1) - timedelta(days=1)), "period that has ended"),
        (lambda: {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "{}"}}]},
         "names no budget"),
        (lambda: {"hello": "world"}, "not an SNS event"),
    ],
)  # fmt: skip
def test_notifications_it_must_not_believe_change_nothing(account, bucket, make, why):
    report = run(make())
    assert not report.acted and report.actions == []
    assert any(why in reason for reason in report.reasons), report.reasons
    assert state(account["node"]) == state(account["bake"]) == "running"
    assert account["ours"] in addresses()
    assert queue_statuses()["tinyllama-queue-2"] == "available"
    assert bucket.get_json(control.KILLED_KEY) is None  # wakes stay allowed


def test_a_raised_limit_makes_an_earlier_notification_stale(account):
    aws.client("budgets").delete_budget(AccountId=ACCOUNT, BudgetName=BUDGET)
    report = run(event())
    assert not report.acted and "no longer exists" in report.reasons[0]
    budget("40", spent="21.2")
    assert not run(event()).acted  # sent for 20; 21.20 is under 105 % of 40
    rebudget("40", spent="42.5")
    assert run(event()).changed  # the message is the old one; the spend is past the line now


def untouched(account: dict[str, str], bucket: ControlBucket) -> None:
    assert state(account["node"]) == state(account["bake"]) == "running"
    assert account["ours"] in addresses()
    assert queue_statuses()["tinyllama-queue-2"] == "available"
    assert bucket.get_json(control.KILLED_KEY) is None


@pytest.mark.parametrize(
    "message",
    [
        {"spend": 22.0},  # past the line by its own account: 110 %
        {"spend": 20.0, "threshold_percent": 100},  # a 100 % alert wired to the kill topic
        {"spend": 1000.0, "limit": 20.0},
    ],
)
def test_a_message_past_the_line_while_the_budget_is_under_it_changes_nothing(
    account, bucket, capsys, message
):
    rebudget("20", spent="20.0")  # 100 %: under the kill line of 105 % (21.00)
    report = run(event(**message))
    assert not report.acted and report.actions == []
    [reason] = report.reasons
    assert "actual spend is 20.00, under the kill line 21.00" in reason
    untouched(account, bucket)
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any("stale or forged" in line.get("message", "") for line in logged)


def test_at_the_kill_line_it_acts_whatever_the_message_says(account, bucket):
    rebudget("20", spent="21.0")  # 105 % of 20, exactly
    report = run(event(spend=15.5, threshold_percent=75))  # a lower alert, late: spend is past
    assert report.acted and report.changed
    assert "actual spend 21.00 of 20.00" in report.reasons[0]
    assert state(account["node"]) in ("stopping", "stopped")


def test_untagged_queues_of_the_prefix_are_left_alone(bucket):
    """Only a group tagged Project=tinyllama and Role=queue is the queue (ARCHITECTURE: every
    resource carries Project and a Role; the killer touches what both tags name)."""
    budget()
    queue("tinyllama-queue-1")
    queue("tinyllama-queue-2", Role="queue")
    queue("tinyllama-queue-3", Project="tinyllama", Role="cache")  # the project's, not the queue
    queue("tinyllama-queue-4", Project="tinyllama")
    report = run(event())
    assert report.acted
    assert [a.kind for a in report.actions] == ["mark-killed"]
    assert queue_statuses() == {"tinyllama-queue-1": "available",
                                "tinyllama-queue-2": "available",
                                "tinyllama-queue-3": "available",
                                "tinyllama-queue-4": "available"}  # fmt: skip


def test_without_a_control_bucket_or_a_prefix_it_only_stops_and_releases(account):
    report = run(event(), dataclasses.replace(CONFIG, control_bucket="", queue_prefix=""))
    assert {a.kind for a in report.actions} == {"stop-instance", "terminate-bake",
                                                "release-address"}  # fmt: skip
    assert queue_statuses()["tinyllama-queue-2"] == "available"


def test_the_lambda_entry_point_reads_its_configuration(account, monkeypatch):
    for name, value in {
        "TL_PROJECT": "tinyllama",
        "TL_BUDGET_NAME": BUDGET,
        "TL_ACCOUNT_ID": ACCOUNT,
        "TL_QUEUE_PREFIX": PREFIX,
        "TL_CONTROL_BUCKET": BUCKET,
    }.items():
        monkeypatch.setenv(name, value)  # fmt: skip
    assert KillerConfig.from_env() == CONFIG
    result = killer.lambda_handler(event())
    assert result["acted"] and result["changed"] and len(result["actions"]) == 8
    monkeypatch.delenv("TL_BUDGET_NAME")
    with pytest.raises(RuntimeError, match="TL_BUDGET_NAME"):
        killer.lambda_handler(event())


def test_the_bake_role_is_the_one_packer_tags_its_build_instance_with():
    """The killer finds a bake's leftovers by the Role tag Packer gives the build instance."""
    source = (ROOT / "packer" / "source.pkr.hcl").read_text()
    run_tags = source[source.index("run_tags = {") : source.index("}", source.index("run_tags"))]
    assert f'Role    = "{names.BAKE_ROLE}"' in run_tags


def test_its_policy_terminates_only_the_projects_bake_instances():
    """access.yml's statement for it: TerminateInstances on an instance tagged Project and
    Role=bake, never the node, an untagged one or someone else's."""
    context = {"region": REGION, "account": ACCOUNT, "project": "tinyllama",
               "control_bucket": BUCKET, "queue_prefix": PREFIX, "budget_name": BUDGET,
               "function_name": "tinyllama-budget-killer"}  # fmt: skip
    policy = access.render_policy(access.load()["budget_killer"], context)
    instance = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0"

    def terminates(**tags: str) -> bool:
        keys = {f"aws:ResourceTag/{key}": value for key, value in tags.items()}
        return access.allows(policy, "ec2:TerminateInstances", instance, keys)

    assert terminates(Project="tinyllama", Role="bake")
    assert not terminates(Project="tinyllama", Role="gpu")
    assert not terminates(Project="someone-else", Role="bake")
    assert not terminates(Role="bake") and not terminates()

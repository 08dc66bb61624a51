"""`control` against a moto server: the requests the control bucket carries (wake, stop,
sleep), EC2's state changes, what it records in `state.json`, and what it refuses or
ignores. botocore's Stubber stands in only where ElastiCache refuses what moto never does
(capacity, quotas). docs/decisions.md, "Sleep and wake", is where the expected behaviour
comes from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from botocore.stub import Stubber

from tests.doubles.ec2 import pinned_node, tagged_instance
from tests.lambdas import LambdaContext, load_handler
from tlops.common import aws
from tlops.common.control_bucket import ControlBucket
from tlops.contract import control
from tlops.contract.control import Action
from tlops.control import actions, queue
from tlops.control.actions import Control
from tlops.control.config import ControlConfig
from tlops.control.queue import QueueSpec
from tlops.tooling import lambda_zip

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

PROJECT = "tinyllama"
BUCKET = "tinyllama-control-test"
PREFIX = "tinyllama-queue"
QUEUE_TAGS = {"Project": "tinyllama", "Role": "queue"}
# What deploy.yml's queue role hands control (tl_elasticache's queue_spec), tags included.
SPEC = QueueSpec(id_prefix=PREFIX, subnet_group="tinyllama-queue", tags=QUEUE_TAGS)
NOW_MS = 1_776_620_100_000  # 2026-04-19 17:35 UTC: control's clock in these tests


class Clock:
    """Control's clock and sleep: time moves only when control sleeps."""

    def __init__(self, now_ms: int = NOW_MS):
        self.now = now_ms / 1000

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make_control(client: Any = None, spec: QueueSpec | None = SPEC) -> Control:
    clock = Clock()
    return Control(
        ControlConfig(PROJECT, BUCKET, spec, node_instance_id=pinned_node()),
        client=client, clock=clock.time, sleep=clock.sleep,
    )  # fmt: skip


@pytest.fixture
def bucket(aws_stand_in) -> ControlBucket:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region()})
    return ControlBucket(s3, BUCKET)


@pytest.fixture
def node(bucket) -> str:
    """The GPU node, stopped, as deploy.yml leaves it."""
    return tagged_instance()


def ask(bucket: ControlBucket, action: Action, name: str, *, at_ms: int = NOW_MS, **args) -> str:
    """Write a request as the router or the queue probe does; its key."""
    assert bucket.ask(action, name, by="router", now_ms=at_ms, **args)
    return control.request_key(action, name)


def s3_event(*keys: str, bucket: str = BUCKET) -> dict[str, Any]:
    """The event S3's notification invokes control with: one record per object created."""
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key)}},
            }
            for key in keys
        ]
    }


def ec2_event(instance_id: str, state: str) -> dict[str, Any]:
    return {
        "version": "0",
        "source": "aws.ec2",
        "detail-type": "EC2 Instance State-change Notification",
        "detail": {"instance-id": instance_id, "state": state},
    }


def groups() -> dict[str, str]:
    found = aws.client("elasticache").describe_replication_groups()["ReplicationGroups"]
    return {g["ReplicationGroupId"]: g["Status"] for g in found}


def make_group(group_id: str, tags: dict[str, str]) -> None:
    aws.client("elasticache").create_replication_group(
        ReplicationGroupId=group_id, ReplicationGroupDescription="q", Engine="redis",
        CacheNodeType="cache.t4g.micro", NumCacheClusters=1,
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )  # fmt: skip


def tags_of(group_id: str) -> dict[str, str]:
    cache = aws.client("elasticache")
    arn = cache.describe_replication_groups(ReplicationGroupId=group_id)["ReplicationGroups"][0]
    listed = cache.list_tags_for_resource(ResourceName=arn["ARN"])["TagList"]
    return {t["Key"]: t["Value"] for t in listed}


def node_state(instance_id: str) -> str:
    found = aws.client("ec2").describe_instances(InstanceIds=[instance_id])
    return found["Reservations"][0]["Instances"][0]["State"]["Name"]


def logged(capsys) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def metrics(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if name in line and "_aws" in line]


def wake(bucket: ControlBucket, ctl: Control, *, at_ms: int, **args: Any) -> dict[str, Any]:
    name = control.wake_name(at_ms, bucket.state().get("since_ms"))
    key = ask(bucket, Action.WAKE, name, at_ms=at_ms, reason="a request while the stack sleeps",
              **args)  # fmt: skip
    [outcome] = ctl.handle(s3_event(key))["outcomes"]
    return outcome


# --- wake ---------------------------------------------------------------------------------
def test_a_wake_from_asleep_creates_the_queue_and_starts_the_node(bucket, node, capsys):
    ctl = make_control()
    outcome = wake(bucket, ctl, at_ms=NOW_MS - 240_000)  # asked four minutes ago
    assert outcome == {"action": "wake", "outcome": "awake", "queue": "tinyllama-queue-1",
                       "created": True, "started": True}  # fmt: skip
    assert groups() == {"tinyllama-queue-1": "available"}
    assert tags_of("tinyllama-queue-1") == QUEUE_TAGS  # what it is known by from now on
    assert node_state(node) == "running"

    state = bucket.state()
    assert state["state"] == "awake"
    assert state["node"] == {"instance": node, "state": "running", "type": "g4dn.xlarge"}
    assert (state["queue"]["id"], state["queue"]["status"]) == ("tinyllama-queue-1", "available")
    assert state["queue"]["url"].startswith("rediss://")  # transit encryption: TLS
    assert state["wakes_ms"] == [240_000]  # from the request to the queue: the next ETA
    assert state["wake"] == {}
    assert state["project"] == PROJECT

    lines = logged(capsys)
    [start] = metrics(lines, "EC2Starts")
    assert (start["EC2Starts"], start["Reason"]) == (1, "Wake")
    assert metrics(lines, "WakeFailures") == []


def test_a_wake_when_the_queue_is_there_creates_nothing(bucket, node):
    ctl = make_control()
    make_group("tinyllama-queue-4", QUEUE_TAGS)  # napping: the queue is up, the node stopped
    outcome = wake(bucket, ctl, at_ms=NOW_MS)
    assert outcome == {"action": "wake", "outcome": "awake", "queue": "tinyllama-queue-4",
                       "created": False, "started": True}  # fmt: skip
    assert groups() == {"tinyllama-queue-4": "available"}
    assert node_state(node) == "running"
    assert bucket.state()["wakes_ms"] == []  # no queue was made: nothing to measure


def test_two_wakes_make_one_queue(bucket, node):
    ctl = make_control()
    first = wake(bucket, ctl, at_ms=NOW_MS - 120_000)
    second = wake(bucket, ctl, at_ms=NOW_MS - 60_000)  # the next minute's request
    assert (first["created"], first["started"]) == (True, True)
    assert second == {"action": "wake", "outcome": "awake", "queue": "tinyllama-queue-1",
                      "created": False, "started": False}  # fmt: skip
    assert groups() == {"tinyllama-queue-1": "available"}
    assert bucket.state()["wakes_ms"] == [120_000]


def test_the_same_minutes_wake_reaches_control_once(bucket, node):
    name = control.wake_name(NOW_MS, bucket.state().get("since_ms"))
    assert bucket.ask(Action.WAKE, name, by="router", now_ms=NOW_MS)
    assert not bucket.ask(Action.WAKE, name, by="router", now_ms=NOW_MS + 30_000)


class RacingWake:
    """An ElastiCache client whose CreateReplicationGroup another wake, which computed the
    same id, beats by an instant: the group appears between the listing and the create."""

    def __init__(self, real: Any):
        self._real = real
        self.creates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def create_replication_group(self, **kwargs: Any) -> Any:
        self.creates += 1
        self._real.create_replication_group(**kwargs)  # the other wake's
        return self._real.create_replication_group(**kwargs)  # refused: it exists


def test_two_wakes_racing_make_one_create(bucket, node):
    racing = RacingWake(actions._client("elasticache"))
    ctl = make_control(lambda s: racing if s == "elasticache" else actions._client(s))
    outcome = wake(bucket, ctl, at_ms=NOW_MS)
    assert racing.creates == 1
    assert outcome == {"action": "wake", "outcome": "awake", "queue": "tinyllama-queue-1",
                       "created": False, "started": True}  # fmt: skip
    assert groups() == {"tinyllama-queue-1": "available"}
    assert bucket.state()["queue"]["id"] == "tinyllama-queue-1"


def test_a_wake_after_a_deep_sleep_makes_a_fresh_id(bucket, node):
    ctl = make_control()
    assert wake(bucket, ctl, at_ms=NOW_MS - 300_000)["queue"] == "tinyllama-queue-1"
    key = ask(bucket, Action.SLEEP, "closing-1", deep=True, stop_node=True)
    [slept] = ctl.handle(s3_event(key))["outcomes"]
    assert slept == {"action": "sleep", "outcome": "asleep", "deleted": ["tinyllama-queue-1"]}
    assert bucket.state()["state"] == "asleep"
    # A deleted group's id stays taken while it is deleted (for ever, on the stand-in).
    outcome = wake(bucket, ctl, at_ms=NOW_MS - 200_000)
    assert (outcome["queue"], outcome["created"], outcome["started"]) == (
        "tinyllama-queue-2", True, True)  # fmt: skip
    assert groups() == {"tinyllama-queue-1": "deleting", "tinyllama-queue-2": "available"}
    state = bucket.state()
    assert (state["state"], state["queue"]["id"]) == ("awake", "tinyllama-queue-2")
    assert state["wakes_ms"] == [200_000, 300_000]  # newest first


def stubbed_elasticache(refusal: str, words: str) -> tuple[Any, Stubber]:
    """ElastiCache listing no group and refusing the create as AWS does when it lacks
    capacity or the account's quota is used up (moto never refuses)."""
    client = boto3.client("elasticache", region_name="eu-west-1", aws_access_key_id="x",
                          aws_secret_access_key="x")  # fmt: skip
    stub = Stubber(client)
    stub.add_response("describe_replication_groups", {"ReplicationGroups": []})  # the look
    stub.add_response("describe_replication_groups", {"ReplicationGroups": []})  # the create's
    stub.add_client_error("create_replication_group", refusal, words, http_status_code=400)
    stub.activate()
    return client, stub


@pytest.mark.parametrize(
    ("refusal", "words"),
    [
        ("InsufficientCacheClusterCapacity",
         "cache.t4g.micro capacity not available in eu-west-1b for account 123456789012"),
        ("NodeQuotaForCustomerExceeded", "quota of 300 nodes for account 123456789012"),
    ],
)  # fmt: skip
def test_a_refused_creation_starts_nothing_and_is_recorded(bucket, node, capsys, refusal, words):
    cache, stub = stubbed_elasticache(refusal, words)
    ctl = make_control(lambda s: cache if s == "elasticache" else actions._client(s))
    outcome = wake(bucket, ctl, at_ms=NOW_MS - 5_000)
    stub.assert_no_pending_responses()
    assert outcome == {"action": "wake", "outcome": "failed",
                       "reason": "the queue could not be created"}  # fmt: skip
    assert node_state(node) == "stopped"  # no node without its queue
    state = bucket.state()
    # the failed wake's request time is dropped: the next wake is timed from its own request
    assert state["wake"] == {"error_ms": NOW_MS, "error": "the queue could not be created"}
    assert state["state"] == "asleep" and state["wakes_ms"] == []
    assert refusal not in json.dumps(state) and "123456789012" not in json.dumps(state)

    lines = logged(capsys)
    [failure] = metrics(lines, "WakeFailures")
    assert failure["WakeFailures"] == 1
    [line] = [entry for entry in lines if entry.get("message") == "wake failed"]
    assert line["level"] == "ERROR" and refusal in line["reason"]  # AWS's words: the log only
    assert metrics(lines, "EC2Starts") == []


def test_the_next_wake_clears_a_recorded_failure(bucket, node):
    cache, _ = stubbed_elasticache("InsufficientCacheClusterCapacity", "no capacity")
    failing = make_control(lambda s: cache if s == "elasticache" else actions._client(s))
    assert wake(bucket, failing, at_ms=NOW_MS - 60_000)["outcome"] == "failed"
    assert bucket.state()["wake"]["error"]
    assert wake(bucket, make_control(), at_ms=NOW_MS)["outcome"] == "awake"
    state = bucket.state()
    assert state["wake"] == {} and state["state"] == "awake"


def test_after_the_budget_killer_a_wake_starts_and_creates_nothing(bucket, node, capsys):
    mark = {"at_ms": NOW_MS - 1_000, "why": "budget tinyllama-monthly reports actual spend"}
    bucket.put_json(control.KILLED_KEY, mark)
    outcome = wake(bucket, make_control(), at_ms=NOW_MS)
    assert outcome["outcome"] == "refused"
    assert "the budget killer stopped the stack" in outcome["reason"]
    assert groups() == {}
    assert node_state(node) == "stopped"
    state = bucket.state()
    assert state["wake"]["error"].startswith("the budget killer stopped the stack")
    assert state["state"] == "asleep"
    [line] = [entry for entry in logged(capsys) if entry.get("message") == "wake refused"]
    assert line["killedMs"] == NOW_MS - 1_000


def test_a_wake_without_a_node_fails_and_is_counted(bucket, capsys):
    outcome = wake(bucket, make_control(), at_ms=NOW_MS)
    assert outcome == {"action": "wake", "outcome": "failed", "reason": "no GPU node is deployed"}
    [failure] = metrics(logged(capsys), "ControlFailures")
    assert failure["Action"] == "wake"


def test_without_a_queue_spec_a_wake_only_starts_the_node(bucket, node, monkeypatch):
    # a deployment whose queue is not ElastiCache's: deploy.yml gives control no spec
    monkeypatch.setenv("TL_PROJECT", PROJECT)
    monkeypatch.setenv("TL_CONTROL_BUCKET", BUCKET)
    monkeypatch.delenv("TL_QUEUE_SPEC", raising=False)
    monkeypatch.setenv("TL_NODE_INSTANCE_ID", node)
    config = ControlConfig.from_env()
    assert config.queue is None and config.queue_prefix == "tinyllama-queue"
    [outcome] = Control(config).handle({"action": "wake"})["outcomes"]
    assert outcome == {"action": "wake", "outcome": "awake", "queue": "", "created": False,
                       "started": True}  # fmt: skip
    assert groups() == {} and node_state(node) == "running"


# --- what control does not act on --------------------------------------------------------
def test_a_malformed_request_is_logged_and_ignored(bucket, node, capsys):
    s3 = bucket.s3
    s3.put_object(Bucket=BUCKET, Key="requests/wake/torn.json", Body=b'{"action": "wa')
    sleep_body = control.request_body(Action.SLEEP, by="router", at_ms=NOW_MS, deep=True)
    s3.put_object(Bucket=BUCKET, Key="requests/wake/misfiled.json", Body=sleep_body)
    s3.put_object(Bucket=BUCKET, Key="requests/wake/huge.json", Body=b" " * (16 * 1024 + 1))
    keys = ["requests/wake/torn.json", "requests/wake/misfiled.json", "requests/wake/huge.json"]
    assert make_control().handle(s3_event(*keys)) == {"outcomes": []}
    ignored = [entry for entry in logged(capsys) if entry.get("message") == "request ignored"]
    assert [entry["key"] for entry in ignored] == keys
    assert "is not JSON" in ignored[0]["reason"]
    assert "a sleep request under requests/wake/" in ignored[1]["reason"]
    assert "over 16384" in ignored[2]["reason"]
    assert groups() == {} and node_state(node) == "stopped"
    assert bucket.get_json(control.STATE_KEY) is None


def test_a_request_that_is_gone_is_logged_and_ignored(bucket, node, capsys):
    assert make_control().handle(s3_event("requests/wake/never-written.json")) == {"outcomes": []}
    [line] = [entry for entry in logged(capsys) if entry.get("message") == "request unreadable"]
    assert line["key"] == "requests/wake/never-written.json"


def test_objects_outside_requests_and_other_buckets_are_ignored(bucket, node, capsys):
    body = control.request_body(Action.WAKE, by="router", at_ms=NOW_MS)
    bucket.s3.put_object(Bucket=BUCKET, Key="held/wake.json", Body=body)
    other = "someone-elses-bucket"
    bucket.s3.create_bucket(
        Bucket=other, CreateBucketConfiguration={"LocationConstraint": aws.region()}
    )
    bucket.s3.put_object(Bucket=other, Key="requests/wake/minute-1.json", Body=body)
    ctl = make_control()
    event = s3_event("held/wake.json")
    event["Records"] += s3_event("requests/wake/minute-1.json", bucket=other)["Records"]
    assert ctl.handle(event) == {"outcomes": []}
    assert ctl.handle({"hello": "world"}) == {"outcomes": []}
    assert ctl.handle({"action": "reboot"}) == {"outcomes": []}
    lines = logged(capsys)
    ignored = [entry for entry in lines if entry.get("message") == "request ignored"]
    assert [(e.get("bucket"), e.get("key")) for e in ignored[:2]] == [
        (BUCKET, "held/wake.json"), (other, "requests/wake/minute-1.json")]  # fmt: skip
    assert "unknown action 'reboot'" in ignored[2]["reason"]
    assert any(entry.get("message") == "event ignored" for entry in lines)
    assert groups() == {} and node_state(node) == "stopped"


def test_a_direct_invocation_is_a_request(bucket, node):
    [outcome] = make_control().handle({"action": "wake", "reason": "scheduled"})["outcomes"]
    assert (outcome["outcome"], outcome["created"], outcome["started"]) == ("awake", True, True)


# --- the queue's groups, by their tags ------------------------------------------------------
def test_the_queue_is_the_prefixs_groups_with_both_tags_newest_first(aws_stand_in):
    make_group("tinyllama-queue-1", QUEUE_TAGS)
    make_group("tinyllama-queue-2", {"Project": "tinyllama"})
    make_group("tinyllama-queue-3", {"Role": "queue"})
    make_group("tinyllama-queue-4", {**QUEUE_TAGS, "Name": "the queue"})
    make_group("tinyllama-queue-5", {"Project": "someone-else", "Role": "queue"})
    make_group("other-queue-9", QUEUE_TAGS)
    found = queue.ours(aws.client("elasticache"), PREFIX, queue.tags_for(PROJECT))
    assert [g["ReplicationGroupId"] for g in found] == ["tinyllama-queue-4", "tinyllama-queue-1"]


# --- sleep ------------------------------------------------------------------------------
@pytest.fixture
def queues(bucket) -> None:
    """Two groups of the queue (an older one left by a sleep the stand-in never finished),
    and look-alikes: a foreign project's group of the prefix, groups of ours with another
    Role or only one tag, and one of another prefix."""
    make_group("tinyllama-queue-1", QUEUE_TAGS)
    make_group("tinyllama-queue-2", QUEUE_TAGS)
    make_group("tinyllama-queue-3", {"Project": "someone-else", "Role": "queue"})
    make_group("tinyllama-queue-4", {"Project": "tinyllama", "Role": "cache"})
    make_group("tinyllama-queue-5", {"Project": "tinyllama"})
    make_group("other-queue-1", QUEUE_TAGS)


def test_a_deep_sleep_with_the_node_stopped_deletes_every_group_of_the_queue(bucket, node, queues):
    bucket.put_json(control.SURVIVORS_KEY, {"boot_times": ["41000", "39000", "45000"],
                                            "dead_letters": [], "idempotency": []})  # fmt: skip
    key = ask(bucket, Action.SLEEP, "closing-1", deep=True)
    [outcome] = make_control().handle(s3_event(key))["outcomes"]
    assert outcome == {"action": "sleep", "outcome": "asleep",
                       "deleted": ["tinyllama-queue-2", "tinyllama-queue-1"]}  # fmt: skip
    assert groups() == {
        "tinyllama-queue-1": "deleting",
        "tinyllama-queue-2": "deleting",
        "tinyllama-queue-3": "available",
        "tinyllama-queue-4": "available",
        "tinyllama-queue-5": "available",
        "other-queue-1": "available",
    }
    state = bucket.state()
    assert (state["state"], state["queue"]) == ("asleep", None)
    assert state["boot_times_ms"] == [41_000, 39_000, 45_000]  # the wake's ETA meanwhile
    assert state["node"]["state"] == "stopped"


def test_a_deep_sleep_never_deletes_the_queue_under_a_running_node(bucket, node, queues, capsys):
    aws.client("ec2").start_instances(InstanceIds=[node])  # a wake won the race
    key = ask(bucket, Action.SLEEP, "closing-1", deep=True)
    [outcome] = make_control().handle(s3_event(key))["outcomes"]
    assert outcome == {"action": "sleep", "outcome": "not taken",
                       "reason": "the node is running"}  # fmt: skip
    assert groups()["tinyllama-queue-2"] == groups()["tinyllama-queue-1"] == "available"
    assert node_state(node) == "running"
    assert bucket.state()["state"] == "awake"
    assert any(entry.get("message") == "deep sleep not taken" for entry in logged(capsys))


def test_a_sleep_that_stops_the_node_first_then_deletes_the_queue(bucket, node, queues):
    aws.client("ec2").start_instances(InstanceIds=[node])
    key = ask(bucket, Action.SLEEP, "forced-1", deep=True, stop_node=True)
    [outcome] = make_control().handle(s3_event(key))["outcomes"]
    assert outcome["outcome"] == "asleep"
    assert set(outcome["deleted"]) == {"tinyllama-queue-1", "tinyllama-queue-2"}
    assert node_state(node) == "stopped"
    assert bucket.state()["state"] == "asleep"


def test_a_sleep_that_is_not_deep_only_stops_the_node(bucket, node, queues):
    aws.client("ec2").start_instances(InstanceIds=[node])
    key = ask(bucket, Action.SLEEP, "nap-1", stop_node=True)
    [outcome] = make_control().handle(s3_event(key))["outcomes"]
    assert outcome == {"action": "sleep", "outcome": "napping"}
    assert node_state(node) == "stopped"
    assert groups()["tinyllama-queue-2"] == "available"
    state = bucket.state()
    assert (state["state"], state["queue"]["id"]) == ("napping", "tinyllama-queue-2")


# --- observe and stop --------------------------------------------------------------------
def test_an_ec2_state_change_is_recorded(bucket, node):
    ctl = make_control()
    first = ctl.handle(ec2_event(node, "stopped"))
    assert first == {"outcomes": [{"action": "observe", "outcome": "recorded", "state": "asleep"}]}
    recorded = bucket.state()
    assert recorded["node"] == {"instance": node, "state": "stopped", "type": "g4dn.xlarge"}

    again = ctl.handle(ec2_event(node, "stopped"))["outcomes"][0]
    assert again["state"] == "asleep"
    assert bucket.state()["since_ms"] == recorded["since_ms"]  # the same state since then

    make_group("tinyllama-queue-1", QUEUE_TAGS)
    aws.client("ec2").start_instances(InstanceIds=[node])
    assert ctl.handle(ec2_event(node, "running"))["outcomes"][0]["state"] == "awake"
    state = bucket.state()
    assert state["node"]["state"] == "running" and state["queue"]["id"] == "tinyllama-queue-1"
    assert state["since_ms"] >= recorded["observed_ms"]


def test_an_ec2_event_of_another_kind_is_ignored(bucket, node):
    event = {**ec2_event(node, "running"), "detail-type": "EC2 Spot Instance Interruption Warning"}
    assert make_control().handle(event) == {"outcomes": []}
    assert bucket.get_json(control.STATE_KEY) is None


def test_a_stop_request_stops_the_node(bucket, node, capsys):
    aws.client("ec2").start_instances(InstanceIds=[node])
    key = ask(bucket, Action.STOP, "req-1", sub="admin-1")
    [outcome] = make_control().handle(s3_event(key))["outcomes"]
    assert outcome == {"action": "stop", "outcome": "stopping", "instance": node}
    assert node_state(node) == "stopped"
    assert bucket.state()["node"]["state"] == "stopped"
    [line] = [entry for entry in logged(capsys) if entry.get("message") == "node stop requested"]
    assert (line["instance"], line["sub"]) == (node, "admin-1")


def test_a_stop_without_a_node(bucket):
    key = ask(bucket, Action.STOP, "req-1", sub="admin-1")
    assert make_control().handle(s3_event(key))["outcomes"] == [
        {"action": "stop", "outcome": "no node"}
    ]


# --- the entry point -----------------------------------------------------------------------
def test_the_lambda_entry_point_reads_its_configuration(bucket, node, monkeypatch, lambda_context):
    handler = load_handler("control")
    monkeypatch.setattr(actions, "_control", None)  # a cold container
    monkeypatch.setenv("TL_PROJECT", PROJECT)
    monkeypatch.setenv("TL_CONTROL_BUCKET", BUCKET)
    monkeypatch.setenv("TL_QUEUE_SPEC", SPEC.to_json())
    monkeypatch.setenv("TL_NODE_INSTANCE_ID", node)
    result = handler.lambda_handler(ec2_event(node, "stopped"), lambda_context)
    assert result["outcomes"][0]["state"] == "asleep"
    assert bucket.state()["node"]["instance"] == node

    monkeypatch.setattr(actions, "_control", None)
    monkeypatch.delenv("TL_CONTROL_BUCKET")
    with pytest.raises(RuntimeError, match="TL_CONTROL_BUCKET"):
        handler.lambda_handler(ec2_event(node, "stopped"), LambdaContext())


def test_the_zip_carries_tlops_and_nothing_third_party(tmp_path):
    report = lambda_zip.build_function_zip("control", tmp_path / "control.zip")
    assert report.packages == ()  # boto3 is the runtime's
    assert report.size < 200_000

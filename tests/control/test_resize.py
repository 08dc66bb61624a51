"""`POST /resize` and `GET /resize/{operationId}`: the router (the record and the lock, in a
real redis-server) and `control` (the EC2 steps, tlops.control.resize) against the
stand-in's EC2, each request object the router writes delivered to control as the control
bucket's notification would; botocore's Stubber for the states the stand-in never shows
(`stopping`, `pending`) and the refusals only AWS makes."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import boto3
import pytest
import redis as redis_py
from botocore.stub import Stubber

from tests.conftest import http_event
from tests.control.test_control import ec2_event, s3_event
from tests.doubles.ec2 import pinned_node, tagged_instance
from tests.edge.test_router import body, emf, stdout_records
from tests.support.router_fixtures import *  # noqa: F403 - the fixtures
from tests.support.router_fixtures import admin_token
from tlops import contract
from tlops.common import aws
from tlops.contract import control
from tlops.contract import resize as resize_spec
from tlops.contract import resize as spec
from tlops.control import actions
from tlops.control import resize as steps_of
from tlops.control.actions import Control
from tlops.control.config import ControlConfig
from tlops.control.node import Node, find
from tlops.edge.router import Router

pytestmark = pytest.mark.integration

PROJECT = "tinyllama"
# What an operation's steps say (tlops.control.resize), in the order they are taken.
STOP, CHANGE, START = "stop requested", "changed the type from g4dn.xlarge to t3.small", "start"


class NoTimeLeft:
    """A Lambda context with no time left past control's margin: one look, then hand on."""

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


class Deliveries:
    """Control invoked once for each request object written under `requests/`, as the
    control bucket's event notification does; the outcomes of each call."""

    def __init__(self, ctl: Control):
        self.control = ctl
        self.delivered: set[str] = set()

    def pending(self) -> list[str]:
        s3 = self.control.bucket.s3
        listed = s3.list_objects_v2(Bucket=self.control.config.bucket, Prefix="requests/")
        return [o["Key"] for o in listed.get("Contents", []) if o["Key"] not in self.delivered]

    def __call__(self, context: Any = None) -> list[dict[str, Any]]:
        keys = self.pending()
        self.delivered.update(keys)
        return self.control.handle(s3_event(*keys, bucket=self.control.config.bucket),
                                   context)["outcomes"] if keys else []  # fmt: skip


def make_control(router_env, client: Any = None, **kwargs: Any) -> Control:
    config = ControlConfig(
        PROJECT, router_env["TL_CONTROL_BUCKET"], None, node_instance_id=pinned_node()
    )
    return Control(config, client=client, **{"sleep": lambda s: None, **kwargs})


@pytest.fixture
def ctl(router_env) -> Control:
    return make_control(router_env)


@pytest.fixture
def deliver(ctl) -> Deliveries:
    return Deliveries(ctl)


def launched(ctl: Control, node: str) -> str:
    """`node`, made control's as deploy.yml does: control configured with its id."""
    ctl.config = dataclasses.replace(ctl.config, node_instance_id=node)
    return node


@pytest.fixture
def running_node(ctl) -> str:
    """The node, running, as control last recorded it (the router reads only that)."""
    node = launched(ctl, tagged_instance(stopped=False))
    ctl.handle(ec2_event(node, "running"))
    return node


@pytest.fixture
def stopped_node(ctl) -> str:
    node = launched(ctl, tagged_instance())
    ctl.handle(ec2_event(node, "stopped"))
    return node


def post_resize(router: Router, token: str, payload: Any, **kwargs: Any) -> dict[str, Any]:
    raw = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    return router.handle(http_event("POST", "/resize", body=raw, token=token, **kwargs))


def get_resize(router: Router, token: str, operation_id: str) -> dict[str, Any]:
    event = http_event("GET", "/resize/{operationId}", token=token)
    event["rawPath"] = f"/resize/{operation_id}"
    event["pathParameters"] = {"operationId": operation_id}
    return router.handle(event)


def described(instance_id: str) -> dict[str, Any]:
    found = aws.client("ec2").describe_instances(InstanceIds=[instance_id])
    return found["Reservations"][0]["Instances"][0]


def step_names(view: dict[str, Any]) -> list[str]:
    return [s["step"] for s in view["steps"]]


# --- who may, and what is asked ----------------------------------------------------------
def test_a_non_admin_is_forbidden_and_nothing_changes(
    router, running_node, keyset, redis_client, deliver
):
    result = post_resize(router, keyset.token(), {"action": "stop"})
    assert result["statusCode"] == 403
    assert body(result) == {"error": "forbidden", "message": "this route is for the admins group"}
    assert deliver.pending() == []
    assert described(running_node)["State"]["Name"] == "running"
    assert redis_client.get(contract.RESIZE_LOCK_KEY) is None
    progress = get_resize(router, keyset.token(), contract.new_job_id())
    assert progress["statusCode"] == 403


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"action": "grow"}, "action", 'must be one of start, stop, resize, got "grow"'),
        ({}, "action", "got nothing"),
        ({"action": "resize", "target": "p5.48xlarge"}, "target", '"p5.48xlarge"'),
        ({"action": "resize"}, "target", "resize needs a target"),
        ({"action": "stop", "target": 3}, "target", "must be one of t3.small, g4dn.xlarge"),
        ({"action": "stop", "size": "big"}, "size", "unknown field"),
        ([], "body", "must be a JSON object"),
        ("{", "body", "must be valid JSON"),
    ],
)
def test_bad_input_is_400_naming_the_field(router, stopped_node, keyset, payload, field, words):
    result = post_resize(router, admin_token(keyset), payload)
    assert result["statusCode"] == 400
    answer = body(result)
    assert (answer["error"], answer["field"]) == ("invalid_request", field)
    assert words in answer["message"]


def test_only_json_bodies(router, stopped_node, keyset):
    result = post_resize(
        router, admin_token(keyset), {"action": "stop"}, headers={"content-type": "text/plain"}
    )
    assert result["statusCode"] == 415


def test_without_a_node_it_is_503(router, ctl, keyset, deliver):
    before_any_record = post_resize(router, admin_token(keyset), {"action": "start"})
    assert before_any_record["statusCode"] == 503
    assert body(before_any_record)["error"] == "instance_unavailable"
    ctl.handle({"action": "observe"})  # control looked: no node is deployed
    recorded = post_resize(router, admin_token(keyset), {"action": "start"})
    assert (recorded["statusCode"], body(recorded)["error"]) == (503, "instance_unavailable")
    assert deliver.pending() == []


def test_without_redis_nothing_is_asked(router, stopped_node, keyset, redis_server, deliver):
    redis_server.stop()
    result = post_resize(router, admin_token(keyset), {"action": "start"})
    assert (result["statusCode"], body(result)["error"]) == (503, "queue_unavailable")
    assert deliver.pending() == []
    assert described(stopped_node)["State"]["Name"] == "stopped"


# --- end to end on the stand-in --------------------------------------------------------
def test_resize_a_running_node_stops_it_changes_the_type_and_starts_it(
    router, running_node, keyset, capsys, deliver
):
    token = admin_token(keyset)
    capsys.readouterr()
    accepted = post_resize(router, token, {"action": "resize", "target": "t3.small"})
    assert accepted["statusCode"] == 202
    answer = body(accepted)
    operation = answer["operationId"]
    assert answer["status"] == "accepted" and contract.is_job_id(operation)
    [metric] = emf(stdout_records(capsys), "ResizeRequests")
    assert metric["Action"] == "resize" and metric["ResizeRequests"] == 1
    assert metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Action"]]

    # what the router asked control: the goal, for the node it began with
    [key] = deliver.pending()
    assert key == f"requests/resize/{operation}-0.json"
    asked = json.loads(aws.client("s3").get_object(Bucket="control-test", Key=key)["Body"].read())
    assert asked == {"action": "resize", "by": "router", "at_ms": asked["at_ms"],
                     "operation": operation, "goal_state": "running", "goal_type": "t3.small",
                     "instance": running_node}  # fmt: skip
    before = body(get_resize(router, token, operation))
    assert (before["status"], before["steps"]) == ("accepted", [])  # control has not run yet

    assert deliver() == [{"action": "resize", "outcome": "done", "operation": operation}]
    progress = get_resize(router, token, operation)
    assert progress["statusCode"] == 200
    view = body(progress)
    assert (view["status"], view["phase"]) == ("done", "done")
    assert view["goal"] == {"state": "running", "instanceType": "t3.small"}
    assert view["fromType"] == "g4dn.xlarge"
    assert view["node"] == {"state": "running", "instanceType": "t3.small"}
    names = step_names(view)
    assert len(names) == 3
    assert names[0].startswith(STOP) and names[1] == CHANGE and names[2].startswith(START)
    times = [s["at"] for s in view["steps"]]
    assert times == sorted(times) and all(t >= view["created"] for t in times)
    instance = described(running_node)
    assert (instance["InstanceType"], instance["State"]["Name"]) == ("t3.small", "running")


def test_resize_a_stopped_node_leaves_it_stopped(router, stopped_node, keyset, deliver):
    token = admin_token(keyset)
    answer = body(post_resize(router, token, {"action": "resize", "target": "t3.small"}))
    deliver()
    view = body(get_resize(router, token, answer["operationId"]))
    assert view["status"] == "done" and view["goal"]["state"] == "stopped"
    assert step_names(view) == [CHANGE]
    instance = described(stopped_node)
    assert (instance["InstanceType"], instance["State"]["Name"]) == ("t3.small", "stopped")


def test_stop_leaves_nothing_billing(router, running_node, keyset, deliver):
    token = admin_token(keyset)
    answer = body(post_resize(router, token, {"action": "stop"}))
    deliver()
    assert body(get_resize(router, token, answer["operationId"]))["status"] == "done"
    instance = described(running_node)
    assert instance["State"]["Name"] == "stopped"
    assert instance["InstanceType"] == "g4dn.xlarge"  # stop alone keeps the type
    assert aws.client("ec2").describe_addresses()["Addresses"] == []  # no Elastic IP anywhere


def test_start_with_a_target_on_a_running_node(router, running_node, keyset, deliver):
    token = admin_token(keyset)
    answer = body(post_resize(router, token, {"action": "start", "target": "t3.small"}))
    deliver()
    assert body(get_resize(router, token, answer["operationId"]))["status"] == "done"
    assert described(running_node)["InstanceType"] == "t3.small"


def test_a_concurrent_resize_is_409_until_the_first_is_done(
    router, running_node, keyset, redis_client, deliver
):
    token = admin_token(keyset)
    first = body(post_resize(router, token, {"action": "resize", "target": "t3.small"}))
    assert redis_client.get(contract.RESIZE_LOCK_KEY) == first["operationId"]
    second = post_resize(router, token, {"action": "stop"})
    assert second["statusCode"] == 409
    assert body(second)["error"] == "resize_in_progress"
    assert body(second)["operationId"] == first["operationId"]
    assert len(deliver.pending()) == 1  # the refused one asked nothing
    assert body(get_resize(router, token, first["operationId"]))["status"] == "accepted"

    deliver()
    assert body(get_resize(router, token, first["operationId"]))["status"] == "done"
    assert redis_client.get(contract.RESIZE_LOCK_KEY) is None  # released by that read
    assert post_resize(router, token, {"action": "stop"})["statusCode"] == 202


def test_a_lock_whose_operation_ended_does_not_block(router, stopped_node, keyset, redis_client):
    ended = contract.new_job_id()
    redis_client.hset(spec.operation_key(ended), mapping={"status": "failed"})
    redis_client.set(contract.RESIZE_LOCK_KEY, ended)
    assert post_resize(router, admin_token(keyset), {"action": "start"})["statusCode"] == 202


def test_progress_of_an_unknown_or_malformed_operation(router, aws_stand_in, keyset):
    token = admin_token(keyset)
    unknown = get_resize(router, token, contract.new_job_id())
    assert (unknown["statusCode"], body(unknown)["error"]) == (404, "not_found")
    bad = get_resize(router, token, "not-an-id")
    assert bad["statusCode"] == 400 and body(bad)["field"] == "operationId"


def test_a_stale_progress_is_asked_again_and_the_steps_add_up(
    router, router_env, running_node, keyset, deliver
):
    """Control's invocation ended before EC2 finished (Lambda's time limit): its progress
    stops moving, and a read a minute later asks it to go on, under a new name."""
    token = admin_token(keyset)
    operation = body(post_resize(router, token, {"action": "resize", "target": "t3.small"}))[
        "operationId"
    ]
    # control's first invocation, run 61 s ago with no time to wait: it asks EC2 to stop
    deliver.control = make_control(router_env, clock=lambda: time.time() - 61)
    [first] = deliver(NoTimeLeft())
    assert first == {"action": "resize", "outcome": "in_progress", "operation": operation}
    view = body(get_resize(router, token, operation))
    assert (view["status"], view["phase"]) == ("in_progress", "stopping")
    assert view["node"] == {"state": "stopping", "instanceType": "g4dn.xlarge"}
    [stop] = step_names(view)
    assert stop.startswith(STOP)
    assert deliver.pending() == []

    # a minute on, still unmoved (the record's last change and control's both older): re-ask,
    # once per minute window
    redis = redis_py.Redis.from_url(router_env["TL_REDIS_URL"], decode_responses=True)
    minute_ago = str(int(time.time() * 1000) - 61_000)
    redis.hset(resize_spec.operation_key(operation), "updated", minute_ago)
    again = body(get_resize(router, token, operation))
    assert again["status"] == "in_progress"
    [key] = deliver.pending()
    window = int(time.time() * 1000) // 60_000
    assert key in {control.request_key(control.Action.RESIZE, f"{operation}-{w}")
                   for w in (window - 1, window)}  # fmt: skip
    assert body(get_resize(router, token, operation))["status"] == "in_progress"
    assert deliver.pending() == [key]  # read again at once: not asked again

    deliver.control = make_control(router_env)
    assert deliver()[0]["outcome"] == "done"
    view = body(get_resize(router, token, operation))
    assert view["status"] == "done"
    names = step_names(view)
    assert names[0].startswith(STOP) and names[1:2] == [CHANGE] and names[2].startswith(START)
    assert len(names) == 3


# --- what the stand-in allows and AWS does not ----------------------------------------------
def test_the_type_of_a_running_node_is_never_changed(router_env, running_node):
    client = actions._client("ec2")
    node = find(client, PROJECT)
    assert node.state == "running"
    with pytest.raises(steps_of.StepRefused, match="changes only while stopped"):
        steps_of.modify_type(client, node, "t3.small")
    assert described(running_node)["InstanceType"] == "g4dn.xlarge"
    # the stand-in itself would have done it: the check must be ours
    aws.client("ec2").modify_instance_attribute(
        InstanceId=running_node, InstanceType={"Value": "t3.small"}
    )
    assert described(running_node)["InstanceType"] == "t3.small"


def _state(state: str) -> dict[str, Any]:
    codes = {"pending": 0, "running": 16, "stopping": 64, "stopped": 80}
    return {"Code": codes[state], "Name": state}


def stub_client() -> boto3.client:
    return boto3.client("ec2", region_name="eu-west-1", aws_access_key_id="x",
                        aws_secret_access_key="x")  # fmt: skip


def test_on_aws_each_look_takes_the_steps_ec2_allows():
    """A stop takes minutes on AWS: the first look stops, a later one changes the type and
    starts, the last one finds the node running with its new type."""
    client = stub_client()
    stubber = Stubber(client)
    node = Node("i-0123456789abcdef0", "running", "g4dn.xlarge")
    goal = spec.Goal("running", "t3.small")
    with stubber:
        stubber.add_response(
            "stop_instances",
            {"StoppingInstances": [{"InstanceId": node.instance_id,
                                    "CurrentState": _state("stopping")}]},
        )  # fmt: skip
        after, steps, phase = steps_of.advance(client, node, goal)
        assert (after.state, phase, len(steps)) == ("stopping", "stopping", 1)
        # nothing to do while it stops
        assert steps_of.advance(client, after, goal) == (after, [], "stopping")
        stubber.add_response("modify_instance_attribute", {})
        stubber.add_response(
            "start_instances",
            {"StartingInstances": [{"InstanceId": node.instance_id,
                                    "CurrentState": _state("pending")}]},
        )  # fmt: skip
        stopped = after._replace(state="stopped")
        after, steps, phase = steps_of.advance(client, stopped, goal)
        assert (after.instance_type, after.state, phase) == ("t3.small", "pending", "starting")
        assert steps == [CHANGE, "start requested: pending"]
        stubber.assert_no_pending_responses()
    running = after._replace(state="running")
    assert steps_of.advance(client, running, goal) == (running, [], "done")


def test_a_refused_step_fails_the_operation_and_frees_the_lock(
    router, router_env, stopped_node, keyset, redis_client, deliver, capsys
):
    ec2 = stub_client()
    stubber = Stubber(ec2)
    described_node = {"Reservations": [{"Instances": [
        {"InstanceId": stopped_node, "State": _state("stopped"), "InstanceType": "g4dn.xlarge"}
    ]}]}  # fmt: skip
    stubber.add_response("describe_instances", described_node)  # the operation's look
    ec2_words = "The requested configuration is currently not supported in eu-west-1c"
    stubber.add_client_error("modify_instance_attribute", "Unsupported", ec2_words)
    stubber.add_response("describe_instances", described_node)  # what control records after
    stubber.activate()
    deliver.control = make_control(router_env, lambda s: ec2 if s == "ec2" else actions._client(s))

    token = admin_token(keyset)
    answer = body(post_resize(router, token, {"action": "resize", "target": "t3.small"}))
    capsys.readouterr()
    assert deliver()[0]["outcome"] == "failed"
    stubber.assert_no_pending_responses()
    view = body(get_resize(router, token, answer["operationId"]))
    assert (view["status"], view["phase"]) == ("failed", "failed")
    assert view["error"] == "EC2 refused to change the node to t3.small"
    assert view["steps"] == []
    assert "not supported" not in json.dumps(view)  # EC2's own words stay in the log
    [line] = [r for r in stdout_records(capsys) if r.get("message") == "resize step refused"]
    assert ec2_words in line["reason"] and line["operation"] == answer["operationId"]
    assert redis_client.get(contract.RESIZE_LOCK_KEY) is None
    assert described(stopped_node)["InstanceType"] == "g4dn.xlarge"


def test_the_operation_record_expires(router, stopped_node, keyset, redis_client):
    answer = body(post_resize(router, admin_token(keyset), {"action": "stop"}))
    ttl = redis_client.ttl(spec.operation_key(answer["operationId"]))
    assert spec.RECORD_TTL_SECONDS - 5 < ttl <= spec.RECORD_TTL_SECONDS


def test_the_router_reads_progress_only_from_controls_results(router, stopped_node, keyset):
    """The router calls no EC2 API: what GET answers is what control wrote."""
    token = admin_token(keyset)
    operation = body(post_resize(router, token, {"action": "resize", "target": "t3.small"}))[
        "operationId"
    ]
    written = {"status": "in_progress", "phase": "starting", "node_state": "pending",
               "node_type": "t3.small", "updated_ms": int(time.time() * 1000),
               "steps": [{"step": CHANGE, "at": 1}, {"step": "start requested: pending",
                                                     "at": 2}]}  # fmt: skip
    aws.client("s3").put_object(
        Bucket="control-test", Key=control.resize_result_key(operation),
        Body=json.dumps(written).encode(),
    )  # fmt: skip
    view = body(get_resize(router, token, operation))
    assert (view["status"], view["phase"]) == ("in_progress", "starting")
    assert view["node"] == {"state": "pending", "instanceType": "t3.small"}
    assert view["steps"] == written["steps"]
    assert described(stopped_node)["State"]["Name"] == "stopped"  # nothing the router did


# --- the local node follows a resize ------------------------------------------------------
@pytest.fixture
def node_agent_for(tmp_path):
    """The local stack's node agent, with a real supervisord of one stand-in program."""
    from tests.local.test_node_agent import supervisord_config
    from tlops.local import node_agent
    from tlops.local.imds import ImdsDouble

    config, pidfile = supervisord_config(tmp_path)
    metadata = ImdsDouble(instance_id_file=tmp_path / "node-instance-id").start()
    agent = node_agent.NodeAgent(
        PROJECT, node_agent.Supervisord(config, pidfile), metadata, tmp_path / "agent.json"
    )
    yield agent
    agent.supervisord.shutdown(timeout=10)
    metadata.stop()


def test_the_local_node_stops_and_starts_with_a_resize(
    router, router_env, running_node, keyset, node_agent_for, deliver
):
    agent = node_agent_for
    agent.step()
    first_pid = agent.supervisord.pid()
    assert first_pid, "the running node's services are up before the resize"
    seen = [agent.supervisord.running]

    def between_looks(seconds: float) -> None:  # as the stack's agent polls meanwhile
        agent.step()
        seen.append(agent.supervisord.running)

    deliver.control = make_control(router_env, sleep=between_looks)
    token = admin_token(keyset)
    operation = body(post_resize(router, token, {"action": "resize", "target": "t3.small"}))
    assert deliver()[0]["outcome"] == "done"
    agent.step()
    seen.append(agent.supervisord.running)
    view = body(get_resize(router, token, operation["operationId"]))
    assert view["status"] == "done", view
    assert False in seen, f"the node's services never stopped during the resize: {seen}"
    assert seen[-1] is True, "the node's services run again once the resize started it"
    assert agent.supervisord.pid() != first_pid  # a new boot, not the old processes
    assert described(running_node)["InstanceType"] == "t3.small"

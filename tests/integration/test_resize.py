"""`POST /resize` and `GET /resize/{operationId}`: the router against a real redis-server and
the stand-in's EC2, and against botocore's Stubber for the states the stand-in never shows
(`stopping`, `pending`) and the refusals only AWS makes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.stub import Stubber

import tlops.edge.resize
from tests.conftest import http_event
from tests.doubles.ec2 import tagged_instance
from tlops import contract
from tlops.contract import resize as spec
from tlops.edge import resize
from tlops.edge.gpu_node import Node, find
from tlops.edge.router import Router

from .router_fixtures import *  # noqa: F403 - the fixtures
from .router_fixtures import admin_token, router_ec2
from .test_router import body, ec2, emf, stdout_records

pytestmark = pytest.mark.integration

PROJECT = "tinyllama"


def post_resize(router: Router, token: str, payload: Any, **kwargs: Any) -> dict[str, Any]:
    raw = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    return router.handle(http_event("POST", "/resize", body=raw, token=token, **kwargs))


def get_resize(router: Router, token: str, operation_id: str) -> dict[str, Any]:
    event = http_event("GET", "/resize/{operationId}", token=token)
    event["rawPath"] = f"/resize/{operation_id}"
    event["pathParameters"] = {"operationId": operation_id}
    return router.handle(event)


def follow(router: Router, token: str, operation_id: str) -> dict[str, Any]:
    """Read the progress until the operation is final, as a client polls it (each read takes
    the next step; the stand-in answers `stopping` and `pending` before it reports the end
    state, so two or three reads finish an operation there)."""
    for _ in range(5):
        view = body(get_resize(router, token, operation_id))
        if view["status"] in ("done", "failed"):
            return view
    raise AssertionError(f"operation {operation_id} not final after 5 reads: {view}")


def described(instance_id: str) -> dict[str, Any]:
    return ec2().describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


@pytest.fixture
def running_node(aws_stand_in) -> str:
    return tagged_instance(stopped=False)


# --- who may, and what is asked ----------------------------------------------------------
def test_a_non_admin_is_forbidden_and_nothing_changes(router, running_node, keyset, redis_client):
    result = post_resize(router, keyset.token(), {"action": "stop"})
    assert result["statusCode"] == 403
    assert body(result) == {"error": "forbidden", "message": "this route is for the admins group"}
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
def test_bad_input_is_400_naming_the_field(router, gpu_node, keyset, payload, field, words):
    result = post_resize(router, admin_token(keyset), payload)
    assert result["statusCode"] == 400
    answer = body(result)
    assert (answer["error"], answer["field"]) == ("invalid_request", field)
    assert words in answer["message"]


def test_only_json_bodies(router, gpu_node, keyset):
    result = post_resize(
        router, admin_token(keyset), {"action": "stop"}, headers={"content-type": "text/plain"}
    )
    assert result["statusCode"] == 415


def test_without_a_node_it_is_503(router, aws_stand_in, keyset):
    result = post_resize(router, admin_token(keyset), {"action": "start"})
    assert result["statusCode"] == 503
    assert body(result)["error"] == "instance_unavailable"


def test_without_redis_nothing_is_started(router, gpu_node, keyset, redis_server):
    redis_server.stop()
    result = post_resize(router, admin_token(keyset), {"action": "start"})
    assert (result["statusCode"], body(result)["error"]) == (503, "queue_unavailable")
    assert described(gpu_node)["State"]["Name"] == "stopped"


# --- end to end on the stand-in --------------------------------------------------------
def test_resize_a_running_node_stops_it_changes_the_type_and_starts_it(
    router, running_node, keyset, capsys
):
    token = admin_token(keyset)
    capsys.readouterr()
    accepted = post_resize(router, token, {"action": "resize", "target": "t3.small"})
    assert accepted["statusCode"] == 202
    answer = body(accepted)
    assert answer["status"] == "accepted" and contract.is_job_id(answer["operationId"])
    [metric] = emf(stdout_records(capsys), "ResizeRequests")
    assert metric["Action"] == "resize" and metric["ResizeRequests"] == 1
    assert metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Action"]]

    progress = get_resize(router, token, answer["operationId"])
    assert progress["statusCode"] == 200
    assert body(progress)["status"] == "in_progress"  # stopped, changed, starting
    view = follow(router, token, answer["operationId"])
    assert (view["status"], view["phase"]) == ("done", "done")
    assert view["goal"] == {"state": "running", "instanceType": "t3.small"}
    assert view["fromType"] == "g4dn.xlarge"
    assert view["node"] == {"state": "running", "instanceType": "t3.small"}
    steps = [s["step"] for s in view["steps"]]
    assert steps[0].startswith("stop requested") and "from g4dn.xlarge to t3.small" in steps[1]
    assert steps[2].startswith("start requested")
    instance = described(running_node)
    assert (instance["InstanceType"], instance["State"]["Name"]) == ("t3.small", "running")


def test_resize_a_stopped_node_leaves_it_stopped(router, gpu_node, keyset):
    token = admin_token(keyset)
    answer = body(post_resize(router, token, {"action": "resize", "target": "t3.small"}))
    view = follow(router, token, answer["operationId"])
    assert view["status"] == "done" and view["goal"]["state"] == "stopped"
    instance = described(gpu_node)
    assert (instance["InstanceType"], instance["State"]["Name"]) == ("t3.small", "stopped")


def test_stop_leaves_nothing_billing(router, running_node, keyset):
    token = admin_token(keyset)
    answer = body(post_resize(router, token, {"action": "stop"}))
    assert follow(router, token, answer["operationId"])["status"] == "done"
    instance = described(running_node)
    assert instance["State"]["Name"] == "stopped"
    assert instance["InstanceType"] == "g4dn.xlarge"  # stop alone keeps the type
    assert ec2().describe_addresses()["Addresses"] == []  # no Elastic IP anywhere


def test_start_with_a_target_on_a_running_node(router, running_node, keyset):
    token = admin_token(keyset)
    answer = body(post_resize(router, token, {"action": "start", "target": "t3.small"}))
    view = follow(router, token, answer["operationId"])
    assert view["status"] == "done"
    assert described(running_node)["InstanceType"] == "t3.small"


def test_a_concurrent_resize_is_409_until_the_first_is_done(
    router, running_node, keyset, monkeypatch, redis_client
):
    token = admin_token(keyset)
    monkeypatch.setattr(tlops.edge.resize, "STEP_BUDGET_S", 0.0)  # each request: no step
    first = body(post_resize(router, token, {"action": "resize", "target": "t3.small"}))
    assert redis_client.get(contract.RESIZE_LOCK_KEY) == first["operationId"]
    second = post_resize(router, token, {"action": "stop"})
    assert second["statusCode"] == 409
    assert body(second)["error"] == "resize_in_progress"
    assert body(second)["operationId"] == first["operationId"]
    assert body(get_resize(router, token, first["operationId"]))["status"] == "in_progress"

    monkeypatch.setattr(tlops.edge.resize, "STEP_BUDGET_S", 4.0)
    assert follow(router, token, first["operationId"])["status"] == "done"
    assert redis_client.get(contract.RESIZE_LOCK_KEY) is None
    assert post_resize(router, token, {"action": "stop"})["statusCode"] == 202


def test_a_lock_whose_operation_ended_does_not_block(router, gpu_node, keyset, redis_client):
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


# --- what the stand-in allows and AWS does not ----------------------------------------------
def test_the_type_of_a_running_node_is_never_changed(router_env, running_node):
    client = router_ec2()
    node = find(client, PROJECT)
    assert node.state == "running"
    with pytest.raises(resize.StepRefused, match="changes only while stopped"):
        resize.modify_type(client, node, "t3.small")
    assert described(running_node)["InstanceType"] == "g4dn.xlarge"
    # the stand-in itself would have done it: the check must be ours
    ec2().modify_instance_attribute(InstanceId=running_node, InstanceType={"Value": "t3.small"})
    assert described(running_node)["InstanceType"] == "t3.small"


def _state(state: str) -> dict[str, Any]:
    codes = {"pending": 0, "running": 16, "stopping": 64, "stopped": 80}
    return {"Code": codes[state], "Name": state}


def test_on_aws_each_request_takes_the_steps_ec2_allows(router_env):
    """A stop takes minutes on AWS: the first request stops, a later one changes the type
    and starts, the last one finds the node running with its new type."""
    client = router_ec2()
    stubber = Stubber(client)
    node = Node("i-0123456789abcdef0", "running", "g4dn.xlarge")
    goal = resize.Goal("running", "t3.small")
    far = float("inf")
    with stubber:
        stubber.add_response(
            "stop_instances",
            {"StoppingInstances": [{"InstanceId": node.instance_id,
                                    "CurrentState": _state("stopping")}]},
        )  # fmt: skip
        after, steps, phase = resize.advance(client, node, goal, deadline=far)
        assert (after.state, phase, len(steps)) == ("stopping", "stopping", 1)
        # nothing to do while it stops
        assert resize.advance(client, after, goal, deadline=far)[2] == "stopping"
        stubber.add_response("modify_instance_attribute", {})
        stubber.add_response(
            "start_instances",
            {"StartingInstances": [{"InstanceId": node.instance_id,
                                    "CurrentState": _state("pending")}]},
        )  # fmt: skip
        stopped = after._replace(state="stopped")
        after, steps, phase = resize.advance(client, stopped, goal, deadline=far)
        assert (after.instance_type, after.state, phase) == ("t3.small", "pending", "starting")
        assert len(steps) == 2
        stubber.assert_no_pending_responses()
    running = after._replace(state="running")
    assert resize.advance(client, running, goal, deadline=far) == (running, [], "done")


def test_a_refused_step_fails_the_operation_and_frees_the_lock(
    router, gpu_node, keyset, redis_client, monkeypatch
):
    def refuse(ec2_client, node, instance_type):
        raise resize.StepRefused("Unsupported: not in this zone", "EC2 refused to change it")

    monkeypatch.setattr(tlops.edge.resize, "modify_type", refuse)
    token = admin_token(keyset)
    answer = body(post_resize(router, token, {"action": "resize", "target": "t3.small"}))
    view = follow(router, token, answer["operationId"])
    assert (view["status"], view["error"]) == ("failed", "EC2 refused to change it")
    assert "zone" not in json.dumps(view)  # EC2's own words stay in the log
    assert redis_client.get(contract.RESIZE_LOCK_KEY) is None


def test_the_operation_record_expires(router, gpu_node, keyset, redis_client):
    answer = body(post_resize(router, admin_token(keyset), {"action": "stop"}))
    ttl = redis_client.ttl(spec.operation_key(answer["operationId"]))
    assert spec.RECORD_TTL_SECONDS - 5 < ttl <= spec.RECORD_TTL_SECONDS


# --- the local node follows a resize ------------------------------------------------------
@pytest.fixture
def node_agent_for(tmp_path):
    """The local stack's node agent, with a real supervisord of one stand-in program."""
    from tlops.local import node_agent
    from tlops.local.imds import ImdsDouble

    from .test_node_agent import supervisord_config

    config, pidfile = supervisord_config(tmp_path)
    metadata = ImdsDouble(instance_id_file=tmp_path / "node-instance-id").start()
    agent = node_agent.NodeAgent(
        PROJECT, node_agent.Supervisord(config, pidfile), metadata, tmp_path / "agent.json"
    )
    yield agent
    agent.supervisord.shutdown(timeout=10)
    metadata.stop()


def test_the_local_node_stops_and_starts_with_a_resize(
    router, running_node, keyset, node_agent_for
):
    agent = node_agent_for
    agent.step()
    first_pid = agent.supervisord.pid()
    assert first_pid, "the running node's services are up before the resize"
    token = admin_token(keyset)
    operation = body(post_resize(router, token, {"action": "resize", "target": "t3.small"}))
    agent.step()  # the agent sees what the POST's first step left
    seen = [agent.supervisord.running]
    view: dict[str, Any] = {}
    for _ in range(5):
        view = body(get_resize(router, token, operation["operationId"]))
        agent.step()  # as the stack's agent polls between a client's reads
        seen.append(agent.supervisord.running)
        if view["status"] in ("done", "failed"):
            break
    assert view["status"] == "done", view
    assert False in seen, f"the node's services never stopped during the resize: {seen}"
    assert seen[-1] is True, "the node's services run again once the resize started it"
    assert agent.supervisord.pid() != first_pid  # a new boot, not the old processes
    assert described(running_node)["InstanceType"] == "t3.small"

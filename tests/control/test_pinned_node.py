"""Tags are not the node's identity (issue 20, item 7): another instance tagged like the
node, in the same account, is never started, stopped or resized by control; only the
instance whose id deploy.yml pinned (TL_NODE_INSTANCE_ID) is, and each refusal is logged.

Against the moto server, with two instances tagged alike (tests.doubles.ec2.tagged_instance,
as the gpu_node role tags the node). The look-alike is given the lower id, so that a choice
by tags alone (the lowest id) would take it for the node.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.control.test_control import (
    BUCKET,
    NOW_MS,
    PROJECT,
    Clock,
    ask,
    bucket,  # noqa: F401 - the control bucket fixture
    logged,
    node_state,
    s3_event,
    wake,
)
from tests.doubles.ec2 import tagged_instance
from tlops.common import aws
from tlops.contract import control
from tlops.contract.control import Action
from tlops.control.actions import Control
from tlops.control.config import ControlConfig

pytestmark = pytest.mark.integration

REFUSED = "instance refused: tagged like the node, but not the deployment's node"


def two_alike(*, stopped: bool) -> tuple[str, str]:
    """(the deployment's node, a look-alike with a lower id), both tagged as the node."""
    first, second = tagged_instance(stopped=stopped), tagged_instance(stopped=stopped)
    look_alike, ours = sorted((first, second))
    return ours, look_alike


def control_pinned(node: str) -> Control:
    """Control as deploy.yml configures it: the node it launched pinned by id."""
    clock = Clock()
    config = ControlConfig(PROJECT, BUCKET, None, node_instance_id=node)
    return Control(config, clock=clock.time, sleep=clock.sleep)


def instance_type(instance_id: str) -> str:
    found = aws.client("ec2").describe_instances(InstanceIds=[instance_id])
    return found["Reservations"][0]["Instances"][0]["InstanceType"]


def refusals(lines: list[dict[str, Any]]) -> set[str]:
    return {line["instance"] for line in lines if line.get("message") == REFUSED}


def test_a_wake_starts_the_pinned_node_and_never_its_look_alike(bucket, capsys):  # noqa: F811
    ours, look_alike = two_alike(stopped=True)
    outcome = wake(bucket, control_pinned(ours), at_ms=NOW_MS)
    assert outcome["outcome"] == "awake" and outcome["started"] is True
    assert node_state(ours) == "running"
    assert node_state(look_alike) == "stopped"
    assert bucket.state()["node"]["instance"] == ours
    assert look_alike in refusals(logged(capsys))


def test_a_stop_stops_the_pinned_node_and_never_its_look_alike(bucket, capsys):  # noqa: F811
    ours, look_alike = two_alike(stopped=False)
    key = ask(bucket, Action.STOP, "req-1", sub="admin-1")
    [outcome] = control_pinned(ours).handle(s3_event(key))["outcomes"]
    assert outcome["instance"] == ours
    assert node_state(ours) == "stopped"
    assert node_state(look_alike) == "running"
    assert look_alike in refusals(logged(capsys))


def test_a_resize_changes_the_pinned_node_and_never_its_look_alike(bucket, capsys):  # noqa: F811
    ours, look_alike = two_alike(stopped=True)
    ctl = control_pinned(ours)
    operation = str(uuid.uuid4())
    key = ask(bucket, Action.RESIZE, f"{operation}-0", operation=operation,
              goal_state="stopped", goal_type="t3.small", instance=ours)  # fmt: skip
    [outcome] = ctl.handle(s3_event(key))["outcomes"]
    assert outcome["outcome"] == "done"
    assert (instance_type(ours), instance_type(look_alike)) == ("t3.small", "g4dn.xlarge")
    assert look_alike in refusals(logged(capsys))


def test_a_resize_that_names_the_look_alike_is_refused_and_logged(bucket, capsys):  # noqa: F811
    """The router names the instance control last recorded: a record naming another one (a
    stale or tampered state.json) is refused before any EC2 call."""
    ours, look_alike = two_alike(stopped=True)
    operation = str(uuid.uuid4())
    key = ask(bucket, Action.RESIZE, f"{operation}-0", operation=operation,
              goal_state="running", goal_type="t3.small", instance=look_alike)  # fmt: skip
    [outcome] = control_pinned(ours).handle(s3_event(key))["outcomes"]
    assert outcome["outcome"] == "failed"
    assert (node_state(look_alike), instance_type(look_alike)) == ("stopped", "g4dn.xlarge")
    assert (node_state(ours), instance_type(ours)) == ("stopped", "g4dn.xlarge")
    progress = bucket.get_json(control.resize_result_key(operation))
    assert progress["error"] == "the operation names an instance that is not the GPU node"
    [line] = [entry for entry in logged(capsys) if entry.get("message") == "resize step refused"]
    assert look_alike in line["reason"] and ours in line["reason"]


def test_without_a_pinned_id_control_acts_on_no_instance(bucket, capsys):  # noqa: F811
    ours, look_alike = two_alike(stopped=True)
    outcome = wake(bucket, control_pinned(""), at_ms=NOW_MS)
    assert outcome == {"action": "wake", "outcome": "failed", "reason": "no GPU node is deployed"}
    assert node_state(ours) == node_state(look_alike) == "stopped"
    assert refusals(logged(capsys)) == {ours, look_alike}


def test_a_pinned_id_that_is_no_instance_id_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("TL_PROJECT", PROJECT)
    monkeypatch.setenv("TL_CONTROL_BUCKET", BUCKET)
    monkeypatch.setenv("TL_NODE_INSTANCE_ID", "tinyllama-gpu")
    with pytest.raises(RuntimeError, match="TL_NODE_INSTANCE_ID is not an EC2 instance id"):
        ControlConfig.from_env()

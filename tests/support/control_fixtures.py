"""The control bucket on the stand-in, and `control` run on what is asked of it there.

The router and the queue probe call no EC2 or ElastiCache API: they write request
objects under `requests/` in the control bucket, and S3's event notification hands
each one to `control`, which makes the calls and records what it saw in `state.json`
(docs/decisions.md, "Sleep and wake"). moto stores objects but notifies nobody, so a
test delivers them itself: `ControlRelay.deliver` hands every request not yet
delivered, as the ObjectCreated record S3 sends (tests/events/control_request.json),
to control's own handler against the same stand-in, and `observe` has control look
and record, as the EC2 state-change rule makes it do.

Test modules take the `relay` fixture through router_fixtures or gateway_fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from tests.doubles.ec2 import pinned_node
from tlops.common import aws
from tlops.common.control_bucket import ControlBucket
from tlops.contract import control as layout
from tlops.contract.control import Action
from tlops.contract.states import NODE_LIVE_STATES, stack_state
from tlops.control import queue, state
from tlops.control.actions import Control
from tlops.control.config import ControlConfig

__all__ = ["relay"]  # the fixture

EVENTS = Path(__file__).resolve().parents[1] / "events"
PROJECT = "tinyllama"
BUCKET = "control-test"  # conftest.router_env's TL_CONTROL_BUCKET
QUEUE_SPEC = queue.QueueSpec(id_prefix=f"{PROJECT}-queue", tags=queue.tags_for(PROJECT))
NODE_TYPE = "g4dn.xlarge"  # what tests.doubles.ec2.tagged_instance runs
RECORDED_NODE = "i-0123456789abcdef0"  # the node `record` names, and a Stubber's EC2 answers


def request_event(key: str) -> dict[str, Any]:
    """S3's ObjectCreated record for the object at `key` of the control bucket."""
    event = json.loads((EVENTS / "control_request.json").read_text())
    record = event["Records"][0]["s3"]
    record["bucket"] = {**record["bucket"], "name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"}
    record["object"] = {**record["object"], "key": quote_plus(key, safe="/")}
    return event


class ControlRelay:
    """What S3's notification and EventBridge's EC2 rule do for control, done on demand."""

    def __init__(self) -> None:
        self.delivered: list[str] = []

    @property
    def bucket(self) -> ControlBucket:
        return ControlBucket(aws.client("s3"), BUCKET)

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under `prefix` in the control bucket, in S3's order."""
        listed = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix, MaxKeys=1000)
        return [item["Key"] for item in listed.get("Contents", [])]

    def requests(self, action: Action) -> list[str]:
        return self.keys(f"{layout.REQUESTS_PREFIX}{action.value}/")

    def held(self, sub: str = "") -> list[str]:
        return self.keys(layout.held_prefix(sub) if sub else layout.HELD_PREFIX)

    def state(self) -> dict[str, Any]:
        return self.bucket.state()

    def read(self, key: str) -> dict[str, Any] | None:
        return self.bucket.get_json(key)

    # --- control ---------------------------------------------------------------------
    def control(
        self, *, queue_url: str = "", makes_queue: bool = False, ec2: Any = None
    ) -> Control:
        """Control as deployed for this stack: `makes_queue`, with the queue spec deploy.yml
        writes (a wake creates the queue when there is none); without it, a deployment whose
        queue is its own Redis (a wake only starts the node). `ec2` replaces its EC2 client
        (a Stubber's, for the states moto never shows). The node deploy.yml pins is the
        stand-in's tagged instance, or with a Stubber's EC2 the one `record` names."""
        config = ControlConfig(
            project=PROJECT, bucket=BUCKET, queue=QUEUE_SPEC if makes_queue else None,
            queue_url=queue_url,
            node_instance_id=RECORDED_NODE if ec2 is not None else pinned_node(),
        )  # fmt: skip

        def client(service: str) -> Any:
            if service == "ec2" and ec2 is not None:
                return ec2
            return aws.client(service)

        return Control(config, client=client)

    def deliver(
        self, control: Control | None = None, *, only: Action | None = None, **config: Any
    ) -> list[dict[str, Any]]:
        """Every request object not delivered yet (`only` those of one action), in the order
        of their names, handed to control as S3 would hand it; control's outcomes."""
        ran = control or self.control(**config)
        outcomes = []
        prefix = layout.REQUESTS_PREFIX + (f"{only.value}/" if only else "")
        for key in self.keys(prefix):
            if key in self.delivered:
                continue
            self.delivered.append(key)
            outcomes += ran.handle(request_event(key))["outcomes"]
        return outcomes

    def observe(self, **config: Any) -> dict[str, Any]:
        """Control, invoked by the EC2 state-change rule (tests/events/ec2_state_change.json),
        looks at EC2 and ElastiCache and records what it saw; the state document written."""
        event = json.loads((EVENTS / "ec2_state_change.json").read_text())
        [done] = self.control(**config).handle(event)["outcomes"]
        assert done["outcome"] == "recorded", done
        return self.state()

    def record(
        self,
        node_state: str | None,
        *,
        instance: str = RECORDED_NODE,
        queue_status: str | None = None,
        queue_url: str = "",
        **changes: Any,
    ) -> dict[str, Any]:
        """Record a state as control records what it observed, without looking: for what moto
        cannot show (a node pending or stopping, a node that is not there) and for measured
        wakes and boots (`changes`); the state document written."""
        seen: dict[str, Any] = {
            "node": None
            if node_state is None
            else {"instance": instance, "state": node_state, "type": NODE_TYPE},
            "queue": None
            if queue_status is None
            else {"id": f"{QUEUE_SPEC.id_prefix}-1", "status": queue_status, "url": queue_url},
        }
        found = stack_state(node_state, queue_status)
        seen["state"] = found.value if found else ""
        return state.record(self.bucket, seen, project=PROJECT, **changes)

    # --- the queue's replication group, as the queue role leaves it -------------------
    def make_queue(self, number: int = 1) -> str:
        """The queue's group in the stand-in's ElastiCache (moto makes it available at once)."""
        group_id = f"{QUEUE_SPEC.id_prefix}-{number}"
        aws.client("elasticache").create_replication_group(
            **queue.create_kwargs(QUEUE_SPEC, group_id)
        )
        return group_id


def only_node(instance_id: str) -> str:
    """`instance_id`, made the only live GPU node of the project. botocore retries a
    RunInstances whose answer took longer than its read timeout, and a fresh moto on a busy
    machine can take that long for its first EC2 call: it then runs both, and control (which
    picks one node, the lowest id) would look at the other one."""
    ec2 = aws.client("ec2")
    found = ec2.describe_instances(
        Filters=[
            {"Name": "tag:Project", "Values": [PROJECT]},
            {"Name": "tag:Role", "Values": ["gpu"]},
            {"Name": "instance-state-name", "Values": list(NODE_LIVE_STATES)},
        ]
    )
    others = [
        instance["InstanceId"]
        for reservation in found["Reservations"]
        for instance in reservation["Instances"]
        if instance["InstanceId"] != instance_id
    ]
    if others:
        ec2.terminate_instances(InstanceIds=others)
    return instance_id


@pytest.fixture
def relay(router_env) -> ControlRelay:
    """The control bucket (made by router_env, empty) and control run on its requests."""
    return ControlRelay()


def outcome(outcomes: list[dict[str, Any]], action: Action) -> dict[str, Any]:
    """The one outcome of `action` among control's answers."""
    [found] = [o for o in outcomes if o["action"] == action.value]
    return found

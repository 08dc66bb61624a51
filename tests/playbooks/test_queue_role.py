"""The queue role (enable_redis) through deploy.yml and teardown.yml on a real moto server.

A module of its own beside the life cycle's two halves (test_deploy_plan.py,
test_deploy_teardown.py), so that the slow tier's workers run them side by side.
"""

from __future__ import annotations

import json

import boto3
import pytest

from tlops.local.services import MotoProcess

from .stand_in import REGION, Account, changed, changed_tasks, idle_cost, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=4)]


@pytest.mark.slow
def test_the_queue_role_on_the_stand_in(moto_server: str) -> None:
    """enable_redis as on a real account (no stand-in address for the queue): the
    replication group `tinyllama-queue-1` (encrypted at rest and in transit), found by its
    tags, no interface endpoint anywhere, the router pointed at the queue over TLS, a second
    deploy changes nothing; teardown idle deletes the group and keeps its subnet group (the
    stack is asleep), and the next deploy makes the queue again under a fresh id, since the
    old one stays taken while it is deleted (for ever on the stand-in, hence
    queue_delete_wait: false; its parameter groups are missing: the role's warnings say so)."""
    MotoProcess.reset_url(moto_server)
    account = Account(moto_server)
    settings = {"queue_delete_wait": False, "queue_url_override": "", "control_queue_url": "",
                "queue_transit_encryption": True}  # fmt: skip
    extra = ("-e", json.dumps(settings))
    assert changed(run_playbook("deploy.yml", moto_server, *extra)) > 0
    cache = boto3.Session(
        aws_access_key_id="standin-key-id", aws_secret_access_key="standin-secret",
        region_name=REGION,
    ).client("elasticache", endpoint_url=moto_server)  # fmt: skip
    (group,) = cache.describe_replication_groups()["ReplicationGroups"]
    assert (group["ReplicationGroupId"], group["Status"]) == ("tinyllama-queue-1", "available")
    assert group["AtRestEncryptionEnabled"] and group["TransitEncryptionEnabled"]
    tags = cache.list_tags_for_resource(ResourceName=group["ARN"])["TagList"]
    assert {"Key": "Role", "Value": "queue"} in tags
    assert {e["VpcEndpointType"] for e in account.tagged("vpc_endpoints")} == {"Gateway"}
    router_env = account.lam.get_function_configuration(
        FunctionName="tinyllama-router", Qualifier="prod"
    )["Environment"]["Variables"]
    assert router_env["TL_REDIS_URL"].startswith("rediss://")  # TLS to ElastiCache
    control_env = account.lam.get_function_configuration(
        FunctionName="tinyllama-control", Qualifier="prod"
    )["Environment"]["Variables"]
    spec = json.loads(control_env["TL_QUEUE_SPEC"])  # what a wake makes the queue from
    assert (spec["id_prefix"], spec["node_type"], spec["transit_encryption"]) == (
        "tinyllama-queue", "cache.t4g.micro", True)  # fmt: skip
    assert changed(run_playbook("deploy.yml", moto_server, *extra)) == 0

    confirm = ("-e", json.dumps({**settings, "teardown_confirmation": "yes"}))
    idle = run_playbook("teardown.yml", moto_server, *confirm)
    assert [task.split(" : ")[-1] for task in changed_tasks(idle)] == [
        "Delete every group of the queue (only if tagged)",
    ]
    (group,) = cache.describe_replication_groups()["ReplicationGroups"]
    assert group["Status"] == "deleting"
    assert cache.describe_cache_subnet_groups(CacheSubnetGroupName="tinyllama-queue")
    report = idle_cost(idle)  # a group being deleted is no queue: no row, and the stack sleeps
    assert report["state"] == "asleep"
    assert not [row for row in report["rows"] if row["item"].startswith("queue")]
    assert {e["ServiceName"] for e in account.tagged("vpc_endpoints")} == {
        f"com.amazonaws.{REGION}.s3"  # the free one stays
    }
    assert changed(run_playbook("teardown.yml", moto_server, *confirm)) == 0

    assert changed(run_playbook("deploy.yml", moto_server, *extra)) > 0  # the queue back
    ids = {g["ReplicationGroupId"]: g["Status"]
           for g in cache.describe_replication_groups()["ReplicationGroups"]}  # fmt: skip
    assert ids == {"tinyllama-queue-1": "deleting", "tinyllama-queue-2": "available"}

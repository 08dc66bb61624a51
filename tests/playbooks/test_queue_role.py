"""The queue role (enable_redis) through deploy.yml and teardown.yml on a real moto server.

A module of its own beside the life cycle's two halves (test_deploy_plan.py,
test_deploy_teardown.py), so that the slow tier's workers run them side by side.
"""

from __future__ import annotations

import json

import boto3
import pytest

from tlops.local.services import MotoProcess

from .stand_in import REGION, Account, changed, changed_tasks, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=4)]


@pytest.mark.slow
def test_the_queue_role_on_the_stand_in(moto_server: str) -> None:
    """enable_redis as on a real account: the replication group (encrypted at rest and in
    transit) and the router's EC2 endpoint are made, the router is pointed at the queue, a
    second deploy changes nothing, and teardown idle takes both away again. The stand-in never
    finishes a delete, hence queue_delete_wait: false (and its parameter groups are missing:
    the role's warnings say so)."""
    MotoProcess.reset_url(moto_server)
    account = Account(moto_server)
    settings = {"enable_redis": True, "queue_delete_wait": False,
                "router_redis_url": "{{ queue_redis_url | default('') }}"}  # fmt: skip
    extra = ("-e", json.dumps(settings))
    assert changed(run_playbook("deploy.yml", moto_server, *extra)) > 0
    cache = boto3.Session(
        aws_access_key_id="standin-key-id", aws_secret_access_key="standin-secret",
        region_name=REGION,
    ).client("elasticache", endpoint_url=moto_server)  # fmt: skip
    (group,) = cache.describe_replication_groups()["ReplicationGroups"]
    assert (group["ReplicationGroupId"], group["Status"]) == ("tinyllama-queue", "available")
    assert group["AtRestEncryptionEnabled"] and group["TransitEncryptionEnabled"]
    endpoints = {e["ServiceName"]: e for e in account.tagged("vpc_endpoints")}
    assert endpoints[f"com.amazonaws.{REGION}.ec2"]["VpcEndpointType"] == "Interface"
    router_env = account.lam.get_function_configuration(
        FunctionName="tinyllama-router", Qualifier="prod"
    )["Environment"]["Variables"]
    assert router_env["TL_REDIS_URL"].startswith("rediss://")  # TLS to ElastiCache
    assert changed(run_playbook("deploy.yml", moto_server, *extra)) == 0

    confirm = ("-e", json.dumps({**settings, "teardown_confirmation": "yes"}))
    idle = run_playbook("teardown.yml", moto_server, *confirm)
    assert [task.split(" : ")[-1] for task in changed_tasks(idle)] == [
        "Pause the queue probe",  # it would alarm on a queue that is gone on purpose
        "Delete the queue with its subnet and parameter groups (only if tagged)",
        "Delete the router's EC2 endpoint (billed by the hour)",
    ]
    (group,) = cache.describe_replication_groups()["ReplicationGroups"]
    assert group["Status"] == "deleting"
    assert {e["ServiceName"] for e in account.tagged("vpc_endpoints")} == {
        f"com.amazonaws.{REGION}.s3"  # the free one stays
    }
    assert changed(run_playbook("teardown.yml", moto_server, *confirm)) == 0

"""tl_elasticache: the queue's single-node replication group, its subnet and parameter groups.

Against the stand-in (moto 5.2.5) for the life cycle and what it lacks; botocore's Stubber for
what only AWS shows (parameter groups, member clusters, waits that take time, deletes that end).
"""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.common import warnings as ansible_warnings

from .conftest import ACCOUNT_ID, REGION, STUB_ARGS
from .harness import ModuleFailed, code, run_module

NAME = "tl-queue"
TAGS = {"Project": "tinyllama", "Role": "queue"}
ARN = f"arn:aws:elasticache:{REGION}:{ACCOUNT_ID}:replicationgroup:{NAME}"
SNG_ARN = f"arn:aws:elasticache:{REGION}:{ACCOUNT_ID}:subnetgroup:{NAME}"
PG_ARN = f"arn:aws:elasticache:{REGION}:{ACCOUNT_ID}:parametergroup:{NAME}"
HOST = f"master.{NAME}.abc123.euw1.cache.amazonaws.com"
DESCRIPTION = "Managed by tl_elasticache"


def run(args, *, check=False):
    """run_module with ansible's process-wide warning store emptied first (in-process runs
    would otherwise carry one run's warnings into the next)."""
    ansible_warnings._global_warnings.clear()
    ansible_warnings._global_deprecations.clear()
    return run_module("tl_elasticache", args, check=check)


def warned(result):
    texts = []
    for warning in result.get("warnings", []):
        texts.append(warning["event"]["msg"] if isinstance(warning, dict) else str(warning))
    return "\n".join(texts)


@pytest.fixture(autouse=True)
def fake_time(monkeypatch):
    """The module's polls sleep on a fake clock: no test ever really waits."""
    module = code("tl_elasticache.apply")
    clock = {"now": 0.0, "sleeps": []}

    def sleep(seconds):
        clock["sleeps"].append(seconds)
        clock["now"] += seconds

    monkeypatch.setattr(module, "_SLEEP", sleep)
    monkeypatch.setattr(module, "_CLOCK", lambda: clock["now"])
    return clock


# --- the stand-in ---------------------------------------------------------------------------
@pytest.fixture
def network(aws):
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in ((1, "a"), (2, "b"))
    ]
    groups = [
        ec2.create_security_group(GroupName=f"queue-{i}", Description="queue", VpcId=vpc)["GroupId"]
        for i in (1, 2)
    ]
    return {"vpc": vpc, "subnets": subnets, "security_groups": groups}


@pytest.fixture
def queue(aws_args, network):
    return {
        **aws_args,
        "replication_group_id": NAME,
        "description": "tinyllama job queue",
        "subnet_group": {"name": NAME, "subnet_ids": network["subnets"]},
        "parameter_group": {"name": NAME, "parameters": {"maxmemory-policy": "noeviction"}},
        "security_group_ids": network["security_groups"][:1],
        "tags": TAGS,
    }


def groups_named(ec, name=NAME):
    return [
        g
        for g in ec.describe_replication_groups()["ReplicationGroups"]
        if g["ReplicationGroupId"] == name
    ]


def subnet_groups_named(ec, name=NAME):
    return [
        g
        for g in ec.describe_cache_subnet_groups()["CacheSubnetGroups"]
        if g["CacheSubnetGroupName"] == name
    ]


def test_life_cycle_on_the_stand_in(queue, aws, network):
    ec = aws("elasticache")

    planned = run(queue, check=True)
    assert planned["changed"] is True
    assert groups_named(ec) == [] and subnet_groups_named(ec) == []
    assert planned["diff"]["before"] == {}
    assert planned["diff"]["after"]["node_type"] == "cache.t4g.micro"
    assert "DescribeCacheParameterGroups" in warned(planned)

    made = run(queue)
    assert made["changed"] is True
    (group,) = groups_named(ec)
    assert group["Status"] == "available"
    assert group["AtRestEncryptionEnabled"] is True and group["TransitEncryptionEnabled"] is False
    assert group["CacheNodeType"] == "cache.t4g.micro"
    assert group["MemberClusters"] == [f"{NAME}-001"]
    assert group["AutomaticFailover"] == "disabled"
    assert group["Description"] == "tinyllama job queue"
    tags = ec.list_tags_for_resource(ResourceName=group["ARN"])["TagList"]
    assert {t["Key"]: t["Value"] for t in tags} == TAGS
    (subnet_group,) = subnet_groups_named(ec)
    assert sorted(s["SubnetIdentifier"] for s in subnet_group["Subnets"]) == sorted(
        network["subnets"]
    )
    assert made["arn"] == group["ARN"] and made["status"] == "available"
    address = group["NodeGroups"][0]["PrimaryEndpoint"]["Address"]
    assert made["primary_endpoint"] == {"address": address, "port": 6379}
    assert made["redis_url"] == f"redis://{address}:6379/0"
    assert made["subnet_group"] == NAME
    assert made["parameter_group"] is None  # the stand-in has no parameter groups
    assert made["at_rest_encryption"] is True and made["transit_encryption"] is False
    text = warned(made)
    assert "DescribeCacheParameterGroups" in text
    assert "maxmemory-policy=noeviction" in text and "default parameter group" in text

    again = run(queue)
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"]
    assert "DescribeCacheClusters" in warned(again)  # no member cluster to compare SGs with

    bigger = run({**queue, "node_type": "cache.t4g.small", "snapshot_retention_limit": 3})
    assert bigger["changed"] is True
    assert bigger["diff"]["before"]["node_type"] == "cache.t4g.micro"
    assert bigger["diff"]["after"]["node_type"] == "cache.t4g.small"
    assert bigger["diff"]["after"]["snapshot_retention_limit"] == 3
    (group,) = groups_named(ec)
    assert group["CacheNodeType"] == "cache.t4g.small" and group["SnapshotRetentionLimit"] == 3
    queue = {**queue, "node_type": "cache.t4g.small", "snapshot_retention_limit": 3}
    assert run(queue)["changed"] is False

    def tags_now():
        listed = ec.list_tags_for_resource(ResourceName=group["ARN"])["TagList"]
        return {t["Key"]: t["Value"] for t in listed}

    more = run({**queue, "tags": {**TAGS, "Owner": "ops"}})
    assert more["changed"] is True and tags_now() == {**TAGS, "Owner": "ops"}
    kept = run({**queue, "tags": {"Project": "tinyllama"}, "purge_tags": False})
    assert kept["changed"] is False and tags_now() == {**TAGS, "Owner": "ops"}
    purged = run({**queue, "tags": {"Project": "tinyllama"}})
    assert purged["changed"] is True and tags_now() == {"Project": "tinyllama"}
    assert purged["diff"]["before"]["tags"] == {**TAGS, "Owner": "ops"}
    assert purged["diff"]["after"]["tags"] == {"Project": "tinyllama"}

    gone_args = {**queue, "state": "absent", "wait": False, "tags": {"Project": "tinyllama"}}
    gone = run(gone_args)
    assert gone["changed"] is True
    assert gone["diff"]["after"] == {}
    assert groups_named(ec)[0]["Status"] == "deleting"
    assert "were left" in warned(gone) and f"subnet group {NAME}" in warned(gone)
    assert subnet_groups_named(ec)  # left on purpose: still in use while deleting

    again = run(gone_args)
    assert again["changed"] is False
    assert again["diff"] == {"before": {}, "after": {}}


def test_check_mode_absent_deletes_nothing(queue, aws):
    run(queue)
    ec = aws("elasticache")
    planned = run({**queue, "state": "absent", "wait": False}, check=True)
    assert planned["changed"] is True
    assert groups_named(ec)[0]["Status"] == "available"


def test_a_deleting_group_that_outlives_wait_timeout_fails(queue, aws):
    run(queue)
    with pytest.raises(ModuleFailed) as failed:
        run({**queue, "state": "absent", "wait_timeout": 1})
    message = failed.value.result["msg"]
    assert f"replication group {NAME} is still deleting after wait_timeout=1 s" in message
    assert "wait: false" in message and "subnet group" in message
    assert groups_named(aws("elasticache"))[0]["Status"] == "deleting"  # it was deleted


def test_an_untagged_look_alike_survives_absent(queue, aws):
    ec = aws("elasticache")
    ec.create_replication_group(
        ReplicationGroupId=NAME,
        ReplicationGroupDescription="someone else's",
        Engine="redis",
        NumCacheClusters=1,
    )
    result = run({**queue, "state": "absent", "wait": False})
    assert result["changed"] is False
    assert "was not deleted: it is not tagged" in warned(result)
    assert groups_named(ec)[0]["Status"] == "available"


def test_what_the_stand_in_lacks_for_the_subnet_group_is_warned(queue, aws, network):
    run(queue)
    fewer = run({**queue, "subnet_group": {"name": NAME, "subnet_ids": network["subnets"][:1]}})
    assert fewer["changed"] is False  # nothing was changed, and the warning says so
    assert "ModifyCacheSubnetGroup" in warned(fewer)
    (subnet_group,) = subnet_groups_named(aws("elasticache"))
    assert len(subnet_group["Subnets"]) == 2


def test_leftover_groups_of_a_gone_queue_on_the_stand_in(queue, aws, network):
    ec = aws("elasticache")
    ec.create_cache_subnet_group(
        CacheSubnetGroupName=NAME,
        CacheSubnetGroupDescription=DESCRIPTION,
        SubnetIds=network["subnets"],
        Tags=[{"Key": "Project", "Value": "tinyllama"}],
    )
    result = run({**queue, "state": "absent", "tags": {"Project": "tinyllama"}})
    assert result["changed"] is False  # the stand-in could not delete either
    text = warned(result)
    assert "DeleteCacheSubnetGroup" in text and f"subnet group {NAME} was left" in text
    assert "DescribeCacheParameterGroups" in text
    assert subnet_groups_named(ec)


def test_transit_encryption_gives_a_rediss_url(queue):
    made = run({**queue, "transit_encryption": True})
    assert made["transit_encryption"] is True
    assert made["redis_url"].startswith("rediss://master.") and made["redis_url"].endswith(
        ":6379/0"
    )


# --- id_prefix: a queue that comes and goes, known by its tags -------------------------------
PREFIX = "tl-q"


@pytest.fixture
def by_prefix(queue):
    args = {k: v for k, v in queue.items() if k != "replication_group_id"}
    return {**args, "id_prefix": PREFIX}


def listed(ec):
    return {
        g["ReplicationGroupId"]: g["Status"]
        for g in ec.describe_replication_groups()["ReplicationGroups"]
    }


def test_id_prefix_creates_one_tagged_group_and_then_changes_nothing(by_prefix, aws, network):
    ec = aws("elasticache")
    made = run(by_prefix)
    assert made["changed"] is True
    assert made["replication_group_id"] == f"{PREFIX}-1"
    (group,) = groups_named(ec, f"{PREFIX}-1")
    tags = ec.list_tags_for_resource(ResourceName=group["ARN"])["TagList"]
    assert {t["Key"]: t["Value"] for t in tags} == TAGS
    assert group["Description"] == "tinyllama job queue"

    again = run(by_prefix)
    assert again["changed"] is False
    assert again["replication_group_id"] == f"{PREFIX}-1"
    assert listed(ec) == {f"{PREFIX}-1": "available"}


def test_id_prefix_returns_the_settings_it_applied_as_the_queue_spec(by_prefix, aws, network):
    made = run({**by_prefix, "node_type": "cache.t4g.small", "snapshot_retention_limit": 2})
    # What control creates the next queue from: the options given, the prefix not an id; the
    # stand-in has no parameter groups, so the engine's default one ("").
    assert made["queue_spec"] == {
        "id_prefix": PREFIX,
        "description": "tinyllama job queue",
        "engine_version": "7.1",
        "node_type": "cache.t4g.small",
        "port": 6379,
        "at_rest_encryption": True,
        "transit_encryption": False,
        "subnet_group": NAME,
        "parameter_group": "",
        "security_group_ids": network["security_groups"][:1],
        "snapshot_retention_limit": 2,
        "tags": TAGS,
    }
    (group,) = groups_named(aws("elasticache"), f"{PREFIX}-1")
    assert group["CacheNodeType"] == "cache.t4g.small" and group["SnapshotRetentionLimit"] == 2
    assert group["AtRestEncryptionEnabled"] is True and group["TransitEncryptionEnabled"] is False
    # control reads it as its QueueSpec, unchanged
    from tlops.control.queue import QueueSpec

    spec = QueueSpec.from_json(json.dumps(made["queue_spec"]))
    assert spec.id_prefix == PREFIX and spec.node_type == "cache.t4g.small"
    assert spec.security_group_ids == tuple(network["security_groups"][:1])


def test_a_fixed_id_returns_no_queue_spec(queue):
    assert "queue_spec" not in run(queue)


def test_after_a_delete_id_prefix_creates_the_next_id(by_prefix, aws):
    ec = aws("elasticache")
    run(by_prefix)
    ec.delete_replication_group(ReplicationGroupId=f"{PREFIX}-1")
    assert listed(ec) == {f"{PREFIX}-1": "deleting"}  # the stand-in never finishes a delete

    made = run(by_prefix)
    assert made["changed"] is True and made["replication_group_id"] == f"{PREFIX}-2"
    assert listed(ec) == {f"{PREFIX}-1": "deleting", f"{PREFIX}-2": "available"}
    assert run(by_prefix)["changed"] is False


def test_id_prefix_absent_deletes_every_tagged_group_of_the_prefix_only(by_prefix, aws):
    ec = aws("elasticache")
    run(by_prefix)
    ec.delete_replication_group(ReplicationGroupId=f"{PREFIX}-1")
    run(by_prefix)  # tl-q-2
    # tl-q-3 like ours but untagged; another prefix's group carrying our tags
    for group_id, tags in ((f"{PREFIX}-3", []), ("tl-other-1", TAGS)):
        ec.create_replication_group(
            ReplicationGroupId=group_id, ReplicationGroupDescription="not ours to delete",
            Engine="redis", NumCacheClusters=1,
            Tags=[{"Key": k, "Value": v} for k, v in dict(tags).items()],
        )  # fmt: skip
    gone_args = {**by_prefix, "state": "absent", "wait": False}

    gone = run(gone_args)
    assert gone["changed"] is True
    assert gone["deleted"] == [f"{PREFIX}-2"]
    assert listed(ec) == {
        f"{PREFIX}-1": "deleting",
        f"{PREFIX}-2": "deleting",
        f"{PREFIX}-3": "available",
        "tl-other-1": "available",
    }
    assert run(gone_args)["changed"] is False


def test_id_prefix_absent_in_check_mode_deletes_nothing(by_prefix, aws):
    run(by_prefix)
    planned = run({**by_prefix, "state": "absent", "wait": False}, check=True)
    assert planned["changed"] is True
    assert listed(aws("elasticache")) == {f"{PREFIX}-1": "available"}


@pytest.mark.parametrize("bad", ["q" * 38, "tl-queue-", "tl--queue", "1queue"])
def test_a_bad_id_prefix_fails_naming_it(by_prefix, aws, bad):
    with pytest.raises(ModuleFailed) as failed:
        run({**by_prefix, "id_prefix": bad})
    assert "id_prefix" in failed.value.result["msg"]
    assert aws("elasticache").describe_replication_groups()["ReplicationGroups"] == []


def test_the_longest_id_prefix_leaves_room_for_the_number(by_prefix, aws):
    made = run({**by_prefix, "id_prefix": "q" * 37})
    assert made["replication_group_id"] == "q" * 37 + "-1"  # 39 of the 40 an id may have


@pytest.mark.parametrize("tags", [None, {"Role": "queue"}])
def test_id_prefix_without_a_project_tag_fails(by_prefix, aws, tags):
    with pytest.raises(ModuleFailed) as failed:
        run({**by_prefix, "tags": tags})
    message = failed.value.result["msg"]
    assert "id_prefix" in message and "Project" in message
    assert aws("elasticache").describe_replication_groups()["ReplicationGroups"] == []


def test_id_prefix_and_a_fixed_id_together_are_refused(by_prefix, aws):
    with pytest.raises(ModuleFailed) as failed:
        run({**by_prefix, "replication_group_id": NAME})
    message = failed.value.result["msg"]
    assert "mutually exclusive" in message
    assert "id_prefix" in message and "replication_group_id" in message
    assert aws("elasticache").describe_replication_groups()["ReplicationGroups"] == []


def test_neither_id_prefix_nor_a_fixed_id_is_refused(by_prefix):
    with pytest.raises(ModuleFailed) as failed:
        run({k: v for k, v in by_prefix.items() if k != "id_prefix"})
    message = failed.value.result["msg"]
    assert "one of the following is required" in message and "id_prefix" in message


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad", ["1queue", "tl--queue", "tl-queue-", "q" * 41, "tl_queue", "", "tl-queue\n"]
)
def test_a_bad_replication_group_id_fails(queue, aws, bad):
    with pytest.raises(ModuleFailed) as failed:
        run({**queue, "replication_group_id": bad})
    assert "replication_group_id" in failed.value.result["msg"]
    assert aws("elasticache").describe_replication_groups()["ReplicationGroups"] == []


def test_changing_at_rest_encryption_of_an_existing_group_fails(queue, aws):
    run(queue)
    with pytest.raises(ModuleFailed) as failed:
        run({**queue, "at_rest_encryption": False, "node_type": "cache.t4g.small"})
    message = failed.value.result["msg"]
    assert "at_rest_encryption is True, not False" in message
    assert "cannot be changed after creation" in message
    (group,) = groups_named(aws("elasticache"))
    assert group["AtRestEncryptionEnabled"] is True and group["CacheNodeType"] == "cache.t4g.micro"


def test_empty_subnet_ids_fail(queue, aws):
    with pytest.raises(ModuleFailed) as failed:
        run({**queue, "subnet_group": {"name": NAME, "subnet_ids": []}})
    assert "subnet_group.subnet_ids" in failed.value.result["msg"]
    assert subnet_groups_named(aws("elasticache")) == []


def test_absent_without_tags_fails(queue):
    with pytest.raises(ModuleFailed) as failed:
        run({**queue, "state": "absent", "tags": None})
    assert "tags" in failed.value.result["msg"]


# --- AWS-only paths (Stubber) ---------------------------------------------------------------
def replication_group(status="available", node_type="cache.t4g.micro", *, transit=False):
    group = {
        "ReplicationGroupId": NAME,
        "Description": DESCRIPTION,
        "Status": status,
        "MemberClusters": [f"{NAME}-001"],
        "AutomaticFailover": "disabled",
        "SnapshotRetentionLimit": 0,
        "CacheNodeType": node_type,
        "AtRestEncryptionEnabled": True,
        "TransitEncryptionEnabled": transit,
        "ARN": ARN,
        "NodeGroups": [{"NodeGroupId": "0001", "Status": status}],
    }
    if status != "creating":
        group["NodeGroups"][0]["PrimaryEndpoint"] = {"Address": HOST, "Port": 6379}
    return group


def member(security_groups=("sg-1",), parameter_group="default.redis7"):
    return {
        "CacheClusterId": f"{NAME}-001",
        "CacheNodeType": "cache.t4g.micro",
        "Engine": "redis",
        "EngineVersion": "7.1.0",
        "CacheClusterStatus": "available",
        "SecurityGroups": [{"SecurityGroupId": sg, "Status": "active"} for sg in security_groups],
        "CacheSubnetGroupName": NAME,
        "CacheParameterGroup": {
            "CacheParameterGroupName": parameter_group,
            "ParameterApplyStatus": "in-sync",
        },
        "ReplicationGroupId": NAME,
    }


SUBNET_GROUP = {
    "CacheSubnetGroupName": NAME,
    "CacheSubnetGroupDescription": DESCRIPTION,
    "VpcId": "vpc-1",
    "Subnets": [{"SubnetIdentifier": "subnet-a"}, {"SubnetIdentifier": "subnet-b"}],
    "ARN": SNG_ARN,
}
PARAMETER_GROUP = {
    "CacheParameterGroupName": NAME,
    "CacheParameterGroupFamily": "redis7",
    "Description": DESCRIPTION,
    "ARN": PG_ARN,
}
STUBBED = {
    **STUB_ARGS,
    "replication_group_id": NAME,
    "subnet_group": {"name": NAME, "subnet_ids": ["subnet-b", "subnet-a"]},
    "tags": TAGS,
    "wait": False,
}
TAG_LIST = [{"Key": k, "Value": v} for k, v in TAGS.items()]


def describe_group(stub, *groups):
    """Queue DescribeReplicationGroups answers: a status dict each, or None for not found."""
    for group in groups:
        if group is None:
            stub.add_client_error(
                "describe_replication_groups",
                service_error_code="ReplicationGroupNotFoundFault",
                http_status_code=404,
                expected_params={"ReplicationGroupId": NAME},
            )
        else:
            stub.add_response(
                "describe_replication_groups",
                {"ReplicationGroups": [group]},
                {"ReplicationGroupId": NAME},
            )


def existing_group(stub, group, cluster, tags=TAG_LIST):
    describe_group(stub, group)
    stub.add_response(
        "describe_cache_clusters", {"CacheClusters": [cluster]}, {"CacheClusterId": f"{NAME}-001"}
    )
    stub.add_response("list_tags_for_resource", {"TagList": tags}, {"ResourceName": ARN})


def subnet_group_found(stub, found=True):
    if found:
        stub.add_response(
            "describe_cache_subnet_groups",
            {"CacheSubnetGroups": [SUBNET_GROUP]},
            {"CacheSubnetGroupName": NAME},
        )
    else:
        stub.add_client_error(
            "describe_cache_subnet_groups",
            service_error_code="CacheSubnetGroupNotFoundFault",
            expected_params={"CacheSubnetGroupName": NAME},
        )


def create_params(**extra):
    return {
        "ReplicationGroupId": NAME,
        "ReplicationGroupDescription": DESCRIPTION,
        "Engine": "redis",
        "EngineVersion": "7.1",
        "CacheNodeType": "cache.t4g.micro",
        "NumCacheClusters": 1,
        "AutomaticFailoverEnabled": False,
        "AtRestEncryptionEnabled": True,
        "TransitEncryptionEnabled": False,
        "CacheSubnetGroupName": NAME,
        "Port": 6379,
        "SnapshotRetentionLimit": 0,
        "Tags": TAG_LIST,
        **extra,
    }


def test_parameter_group_created_and_a_parameter_set(stubbed):
    stub = stubbed("elasticache")
    describe_group(stub, None)
    subnet_group_found(stub, found=False)
    stub.add_response(
        "create_cache_subnet_group",
        {"CacheSubnetGroup": SUBNET_GROUP},
        {
            "CacheSubnetGroupName": NAME,
            "CacheSubnetGroupDescription": DESCRIPTION,
            "SubnetIds": ["subnet-a", "subnet-b"],
            "Tags": TAG_LIST,
        },
    )
    stub.add_client_error(
        "describe_cache_parameter_groups",
        service_error_code="CacheParameterGroupNotFound",
        http_status_code=404,
        expected_params={"CacheParameterGroupName": NAME},
    )
    stub.add_response(
        "create_cache_parameter_group",
        {"CacheParameterGroup": PARAMETER_GROUP},
        {
            "CacheParameterGroupName": NAME,
            "CacheParameterGroupFamily": "redis7",
            "Description": DESCRIPTION,
            "Tags": TAG_LIST,
        },
    )
    stub.add_response(
        "describe_cache_parameters",
        {
            "Parameters": [
                {"ParameterName": "maxmemory-policy", "ParameterValue": "volatile-lru"},
                {"ParameterName": "timeout", "ParameterValue": "0"},
            ]
        },
        {"CacheParameterGroupName": NAME},
    )
    stub.add_response(
        "modify_cache_parameter_group",
        {"CacheParameterGroupName": NAME},
        {
            "CacheParameterGroupName": NAME,
            "ParameterNameValues": [
                {"ParameterName": "maxmemory-policy", "ParameterValue": "noeviction"}
            ],
        },
    )
    stub.add_response(
        "create_replication_group",
        {"ReplicationGroup": replication_group("creating")},
        create_params(CacheParameterGroupName=NAME),
    )
    result = run(
        {
            **STUBBED,
            "parameter_group": {
                "name": NAME,
                "parameters": {"maxmemory-policy": "noeviction", "timeout": 0},
            },
        }
    )
    assert result["changed"] is True
    assert result["parameter_group"] == NAME
    assert result["status"] == "creating" and result["redis_url"] is None
    assert result["diff"]["after"]["parameter_group"] == {
        "name": NAME,
        "family": "redis7",
        "parameters": {"maxmemory-policy": "noeviction", "timeout": "0"},
    }
    assert result["diff"]["after"]["parameter_group_name"] == NAME
    assert not warned(result)


def test_only_the_parameter_that_differs_is_modified(stubbed):
    stub = stubbed("elasticache")
    existing_group(stub, replication_group(), member(parameter_group=NAME))
    subnet_group_found(stub)
    stub.add_response(
        "describe_cache_parameter_groups",
        {"CacheParameterGroups": [PARAMETER_GROUP]},
        {"CacheParameterGroupName": NAME},
    )
    stub.add_response(
        "describe_cache_parameters",
        {
            "Parameters": [
                {"ParameterName": "maxmemory-policy", "ParameterValue": "volatile-lru"},
                {"ParameterName": "timeout", "ParameterValue": "0"},
            ],
            "Marker": "page-2",
        },
        {"CacheParameterGroupName": NAME},
    )
    stub.add_response(
        "describe_cache_parameters",
        {"Parameters": [{"ParameterName": "activedefrag", "ParameterValue": "no"}]},
        {"CacheParameterGroupName": NAME, "Marker": "page-2"},
    )
    stub.add_response(
        "modify_cache_parameter_group",
        {"CacheParameterGroupName": NAME},
        {
            "CacheParameterGroupName": NAME,
            "ParameterNameValues": [
                {"ParameterName": "maxmemory-policy", "ParameterValue": "noeviction"}
            ],
        },
    )
    parameters = {"maxmemory-policy": "noeviction", "timeout": 0, "activedefrag": False}
    result = run({**STUBBED, "parameter_group": {"name": NAME, "parameters": parameters}})
    assert result["changed"] is True
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert before["parameter_group"]["parameters"]["maxmemory-policy"] == "volatile-lru"
    assert after["parameter_group"]["parameters"] == {
        "maxmemory-policy": "noeviction",
        "timeout": "0",
        "activedefrag": "no",
    }
    assert before["engine_version"] == after["engine_version"] == "7.1.0"  # 7.1 matches


def test_node_type_and_security_groups_are_modified(stubbed):
    stub = stubbed("elasticache")
    existing_group(stub, replication_group(), member(security_groups=["sg-1"]))
    subnet_group_found(stub)
    stub.add_response(
        "modify_replication_group",
        {"ReplicationGroup": replication_group("modifying")},
        {
            "ReplicationGroupId": NAME,
            "ApplyImmediately": True,
            "CacheNodeType": "cache.t4g.small",
            "SecurityGroupIds": ["sg-2"],
        },
    )
    result = run({**STUBBED, "node_type": "cache.t4g.small", "security_group_ids": ["sg-2"]})
    assert result["changed"] is True
    assert result["status"] == "modifying"
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert (before["node_type"], after["node_type"]) == ("cache.t4g.micro", "cache.t4g.small")
    assert (before["security_group_ids"], after["security_group_ids"]) == (["sg-1"], ["sg-2"])
    assert not warned(result)


def test_check_mode_plans_a_modification_without_making_it(stubbed):
    stub = stubbed("elasticache")
    existing_group(stub, replication_group(), member())
    subnet_group_found(stub)
    result = run({**STUBBED, "engine_version": "7.2"}, check=True)  # no modify queued
    assert result["changed"] is True
    assert result["diff"]["after"]["engine_version"] == "7.2"


def test_a_wait_sees_creating_then_available(stubbed, fake_time):
    stub = stubbed("elasticache")
    describe_group(stub, None)
    subnet_group_found(stub)
    stub.add_response(
        "create_replication_group",
        {"ReplicationGroup": replication_group("creating", transit=True)},
        create_params(TransitEncryptionEnabled=True),
    )
    describe_group(
        stub,
        replication_group("creating", transit=True),
        replication_group("available", transit=True),
    )
    result = run({**STUBBED, "wait": True, "transit_encryption": True})
    assert result["changed"] is True
    assert result["status"] == "available"
    assert result["primary_endpoint"] == {"address": HOST, "port": 6379}
    assert result["redis_url"] == f"rediss://{HOST}:6379/0"
    assert fake_time["sleeps"] == [15.0]  # one poll interval, on the fake clock


def test_a_wait_that_never_finishes_fails_after_wait_timeout(stubbed, fake_time):
    stub = stubbed("elasticache")
    describe_group(stub, None)
    subnet_group_found(stub)
    stub.add_response(
        "create_replication_group",
        {"ReplicationGroup": replication_group("creating")},
        create_params(),
    )
    # wait_timeout 30 polls every 3 s: at 0, 3, ..., 30 s — then gives up
    describe_group(stub, *[replication_group("creating")] * 11)
    with pytest.raises(ModuleFailed) as failed:
        run({**STUBBED, "wait": True, "wait_timeout": 30})
    message = failed.value.result["msg"]
    assert f"timed out after 30 s waiting for replication group {NAME} to be available" in message
    assert "wait_timeout" in message
    assert sum(fake_time["sleeps"]) == 30


def test_delete_with_wait_removes_the_subnet_and_parameter_groups(stubbed, fake_time):
    stub = stubbed("elasticache")
    describe_group(stub, replication_group())
    stub.add_response("list_tags_for_resource", {"TagList": TAG_LIST}, {"ResourceName": ARN})
    stub.add_response(
        "delete_replication_group",
        {"ReplicationGroup": replication_group("deleting")},
        {"ReplicationGroupId": NAME},
    )
    describe_group(stub, replication_group("deleting"), None)
    subnet_group_found(stub)
    stub.add_response("list_tags_for_resource", {"TagList": TAG_LIST}, {"ResourceName": SNG_ARN})
    stub.add_response("delete_cache_subnet_group", {}, {"CacheSubnetGroupName": NAME})
    stub.add_response(
        "describe_cache_parameter_groups",
        {"CacheParameterGroups": [PARAMETER_GROUP]},
        {"CacheParameterGroupName": NAME},
    )
    stub.add_response("list_tags_for_resource", {"TagList": TAG_LIST[:1]}, {"ResourceName": PG_ARN})
    stub.add_response("delete_cache_parameter_group", {}, {"CacheParameterGroupName": NAME})
    result = run(
        {
            **STUBBED,
            "state": "absent",
            "wait": True,
            "tags": {"Project": "tinyllama"},
            "parameter_group": {"name": NAME},
        }
    )
    assert result["changed"] is True
    assert result["status"] is None and result["redis_url"] is None
    assert result["diff"]["after"] == {}
    assert result["diff"]["before"]["subnet_group"]["name"] == NAME
    assert result["diff"]["before"]["parameter_group"]["name"] == NAME
    assert len(fake_time["sleeps"]) == 1
    assert not warned(result)


def test_an_untagged_subnet_group_is_not_deleted(stubbed):
    stub = stubbed("elasticache")
    describe_group(stub, None)
    subnet_group_found(stub)
    stub.add_response("list_tags_for_resource", {"TagList": []}, {"ResourceName": SNG_ARN})
    result = run({**STUBBED, "state": "absent", "wait": True})
    assert result["changed"] is False
    assert f"subnet group {NAME} was not deleted: it is not tagged" in warned(result)
    assert result["diff"]["after"]["subnet_group"]["name"] == NAME

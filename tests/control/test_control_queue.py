"""The queue's replication groups as control names and creates them (tlops.control.queue):
`<prefix>-<n>` ids, one past every id still listed; which group is the queue; what a new
group is created with (docs/decisions.md, "Sleep and wake": "A fresh id per queue")."""

from __future__ import annotations

import json

import pytest

from tlops.control import queue
from tlops.control.queue import QueueSpec

PREFIX = "tinyllama-queue"


@pytest.mark.parametrize(
    ("group_id", "number"),
    [
        ("tinyllama-queue-1", 1),
        ("tinyllama-queue-12", 12),
        ("tinyllama-queue-999", 999),
        ("TinyLlama-Queue-7", 7),  # AWS stores ids lower-cased
        ("tinyllama-queue-1000", None),  # ids are at most 40 characters: three digits
        ("tinyllama-queue", None),
        ("tinyllama-queue-", None),
        ("tinyllama-queue-x", None),
        ("tinyllama-queue-1-2", None),
        ("other-queue-1", None),
        ("xtinyllama-queue-1", None),
    ],
)
def test_the_number_of_a_group_id(group_id, number):
    assert queue.number_of(group_id, PREFIX) == number


def test_the_first_id_is_one():
    assert queue.next_id([], PREFIX) == "tinyllama-queue-1"
    assert queue.next_id(["other-queue-5", "tinyllama-queue-x"], PREFIX) == "tinyllama-queue-1"


def test_the_next_id_is_past_every_listed_one_whatever_its_status():
    # the caller lists every group of the prefix, the deleting ones too: their ids are taken
    listed = ["tinyllama-queue-2", "tinyllama-queue-9", "tinyllama-queue-4", "other-queue-30"]
    assert queue.next_id(listed, PREFIX) == "tinyllama-queue-10"
    assert queue.next_id(listed, "TinyLlama-Queue") == "tinyllama-queue-10"


def group(number: int, status: str) -> dict[str, str]:
    return {"ReplicationGroupId": f"{PREFIX}-{number}", "Status": status}


@pytest.mark.parametrize(
    ("groups", "current"),
    [
        ([group(3, "deleting"), group(2, "create-failed"), group(1, "available")], 1),
        ([group(2, "creating"), group(1, "available")], 2),
        ([group(2, "modifying")], 2),
        ([group(2, "snapshotting")], 2),
        ([group(2, "deleting"), group(1, "create-failed")], None),
        ([], None),
    ],
)
def test_the_current_group_is_the_newest_one_up_or_coming(groups, current):
    found = queue.current(groups)
    assert (found["ReplicationGroupId"] if found else None) == (
        f"{PREFIX}-{current}" if current else None
    )


def test_a_groups_address():
    endpoint = {"Address": "q.cache", "Port": 6380}
    tls = {"TransitEncryptionEnabled": True, "NodeGroups": [{"PrimaryEndpoint": endpoint}]}
    assert queue.url_of(tls) == "rediss://q.cache:6380/0"
    assert queue.url_of({**tls, "TransitEncryptionEnabled": False}) == "redis://q.cache:6380/0"
    assert queue.url_of({"NodeGroups": [{}]}) == ""
    assert queue.url_of({}) == ""


def test_the_tags_a_queue_is_known_by():
    assert queue.tags_for("tinyllama") == {"Project": "tinyllama", "Role": "queue"}


# --- what a group is created with --------------------------------------------------------
SPEC = QueueSpec(
    id_prefix=PREFIX,
    subnet_group="tinyllama-queue",
    parameter_group="tinyllama-queue-redis7",
    security_group_ids=("sg-0b", "sg-0a"),
    tags={"Role": "queue", "Project": "tinyllama"},
)


def test_a_new_group_is_one_encrypted_node_with_the_specs_tags():
    kwargs = queue.create_kwargs(SPEC, "tinyllama-queue-3")
    assert kwargs == {
        "ReplicationGroupId": "tinyllama-queue-3",
        "ReplicationGroupDescription": "Managed by tl_elasticache",
        "Engine": "redis",
        "EngineVersion": "7.1",
        "CacheNodeType": "cache.t4g.micro",
        "NumCacheClusters": 1,
        "AutomaticFailoverEnabled": False,
        "AtRestEncryptionEnabled": True,
        "TransitEncryptionEnabled": True,
        "CacheSubnetGroupName": "tinyllama-queue",
        "Port": 6379,
        "SnapshotRetentionLimit": 0,
        "SecurityGroupIds": ["sg-0b", "sg-0a"],
        "CacheParameterGroupName": "tinyllama-queue-redis7",
        "Tags": [{"Key": "Project", "Value": "tinyllama"}, {"Key": "Role", "Value": "queue"}],
    }


def test_optional_settings_are_left_out_when_unset():
    kwargs = queue.create_kwargs(QueueSpec(PREFIX, description="q"), "tinyllama-queue-1")
    assert "SecurityGroupIds" not in kwargs and "CacheParameterGroupName" not in kwargs
    assert "Tags" not in kwargs
    assert kwargs["ReplicationGroupDescription"] == "q"


def test_the_spec_round_trips_through_json():
    text = SPEC.to_json()
    assert json.loads(text)["security_group_ids"] == ["sg-0b", "sg-0a"]
    assert QueueSpec.from_json(text) == SPEC


def test_the_spec_as_deploy_writes_it():
    settings = {"id_prefix": PREFIX, "node_type": "cache.t4g.small", "port": 6380,
                "security_group_ids": ["sg-1"], "tags": {"Project": "tinyllama"}}  # fmt: skip
    text = json.dumps(settings)
    spec = QueueSpec.from_json(text)
    assert (spec.node_type, spec.port, spec.security_group_ids) == ("cache.t4g.small", 6380,
                                                                    ("sg-1",))  # fmt: skip
    assert spec.at_rest_encryption and spec.transit_encryption  # encrypted unless told


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "the queue spec is not JSON"),
        ("[]", "must be a JSON object with an id_prefix"),
        ("{}", "must be a JSON object with an id_prefix"),
        ('{"id_prefix": ""}', "must be a JSON object with an id_prefix"),
        ('{"id_prefix": "q", "nodes": 2, "auth_token": "x"}',
         "the queue spec has unknown keys: auth_token, nodes"),
    ],
)  # fmt: skip
def test_a_spec_control_cannot_use_is_refused(text, words):
    with pytest.raises(ValueError, match=words):
        QueueSpec.from_json(text)


@pytest.mark.parametrize("prefix", ["tinyllama-queue", "q1", "A-b"])
def test_a_usable_prefix(prefix):
    assert queue.check_prefix(prefix) == prefix.lower()


@pytest.mark.parametrize("prefix", ["1queue", "queue-", "que--ue", "q_ue", "x" * 38])
def test_a_prefix_no_id_can_follow_is_refused(prefix):
    with pytest.raises(ValueError, match="queue id prefix"):
        queue.check_prefix(prefix)

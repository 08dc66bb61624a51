# Part of tl_elasticache (plugins/modules/tl_elasticache.py). Apache-2.0.
"""The replication group's calls: create, modify, tag, and the bounded waits between them."""

from __future__ import annotations

import json
import time

from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    ansible_dict_to_boto3_tag_list,
)
from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    Failure,
    apply_tags,
    tag_changes,
    tags_after,
    wait_until,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_elasticache.read import (
    find_group,
    find_member,
    group_settings,
    resource_tags,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_elasticache.validate import (
    DEFAULT_DESCRIPTION,
    check_immutable,
    same_version,
)

# The bounded polls read the clock and sleep through these (tests replace them).
_SLEEP = time.sleep
_CLOCK = time.monotonic


def _delay(timeout):
    return max(1.0, min(15.0, timeout / 10))


def _ready(value):
    status = (value or {}).get("Status")
    if status in ("create-failed", "deleting"):
        raise Failure(
            f"replication group {value['ReplicationGroupId']} is {status}: look at its events in "
            "the console, delete it (state: absent) and run again"
        )
    return status == "available"


def wait_available(client, group_id, timeout):
    return wait_until(
        lambda: find_group(client, group_id),
        _ready,
        what=f"replication group {group_id} to be available",
        timeout=timeout,
        delay=_delay(timeout),
        sleep=_SLEEP,
        clock=_CLOCK,
    )


def wait_gone(client, group_id, timeout):
    """Wait until the group is gone; one still there after `timeout` is a Failure."""
    seen = {}

    def fetch():
        seen["group"] = find_group(client, group_id)
        return seen["group"]

    try:
        wait_until(
            fetch,
            lambda value: value is None,
            what=f"replication group {group_id} to be deleted",
            timeout=timeout,
            delay=_delay(timeout),
            sleep=_SLEEP,
            clock=_CLOCK,
        )
    except Failure as exc:
        status = (seen.get("group") or {}).get("Status")
        raise Failure(
            f"replication group {group_id} is still {status} after wait_timeout={timeout} s "
            "(AWS usually needs 5 to 15 minutes; "
            + gaps.text("elasticache-deletes-never-finish", then="use wait: false there")
            + "). Its subnet group and parameter group were not deleted: run again with a larger "
            "wait_timeout to remove them"
        ) from exc


def queue_spec(params, parameter_group_name):
    """The settings a group is created with, as the control function takes them (its
    QueueSpec): one description of the queue for the deploy and for every wake."""
    return {
        "id_prefix": (params.get("id_prefix") or params["replication_group_id"]).lower(),
        "description": params["description"] or DEFAULT_DESCRIPTION,
        "engine_version": params["engine_version"],
        "node_type": params["node_type"],
        "port": params["port"],
        "at_rest_encryption": params["at_rest_encryption"],
        "transit_encryption": params["transit_encryption"],
        "subnet_group": params["subnet_group"]["name"],
        "parameter_group": parameter_group_name or "",
        "security_group_ids": sorted(params["security_group_ids"] or []),
        "snapshot_retention_limit": params["snapshot_retention_limit"],
        "tags": dict(params["tags"] or {}),
    }


def create_group(client, params, group_id, parameter_group_name):
    from tlops.control.queue import QueueSpec, create_kwargs

    spec = QueueSpec.from_json(json.dumps(queue_spec(params, parameter_group_name)))
    kwargs = create_kwargs(spec, group_id)
    return client.create_replication_group(aws_retry=True, **kwargs)["ReplicationGroup"]


def modifications(before, params, parameter_group_name):
    """ModifyReplicationGroup arguments for what differs (settings the endpoint reported)."""
    changes = {}
    if params["description"] is not None and before["description"] != params["description"]:
        changes["ReplicationGroupDescription"] = params["description"]
    if before["node_type"] != params["node_type"]:
        changes["CacheNodeType"] = params["node_type"]
    if before["snapshot_retention_limit"] != params["snapshot_retention_limit"]:
        changes["SnapshotRetentionLimit"] = params["snapshot_retention_limit"]
    if "engine_version" in before and not same_version(
        before["engine_version"], params["engine_version"]
    ):
        changes["EngineVersion"] = params["engine_version"]
    wanted_sgs = sorted(params["security_group_ids"] or [])
    if wanted_sgs and "security_group_ids" in before and before["security_group_ids"] != wanted_sgs:
        changes["SecurityGroupIds"] = wanted_sgs
    if (
        parameter_group_name
        and "parameter_group_name" in before
        and before["parameter_group_name"] != parameter_group_name
    ):
        changes["CacheParameterGroupName"] = parameter_group_name
    return changes


_SETTING_OF = {
    "ReplicationGroupDescription": "description",
    "CacheNodeType": "node_type",
    "SnapshotRetentionLimit": "snapshot_retention_limit",
    "EngineVersion": "engine_version",
    "SecurityGroupIds": "security_group_ids",
    "CacheParameterGroupName": "parameter_group_name",
}


def read_existing(client, group_id, params, warn):
    """The existing group and its settings (None, {} when there is none)."""
    group = find_group(client, group_id)
    if group is None:
        return None, {}
    if group.get("Status") == "deleting":
        raise Failure(
            f"replication group {group_id} is being deleted: run again once it is gone ("
            + gaps.text("elasticache-deletes-never-finish", then="reset it")
            + ")"
        )
    member = find_member(client, group)
    if member is None:
        gaps.warn(warn, "elasticache-no-member-clusters", group=group_id)
    before = group_settings(group, member, resource_tags(client, group.get("ARN")))
    check_immutable(before, params)
    return group, before


def update_group(client, group, before, params, pg_name, check_mode):
    """Modify what differs and set the tags; returns (changed, after, group)."""
    group_id, wait, timeout = before["replication_group_id"], params["wait"], params["wait_timeout"]
    changes = modifications(before, params, pg_name)
    to_set, to_remove = tag_changes(before["tags"], params["tags"], params["purge_tags"])
    after = dict(before)
    after.update({_SETTING_OF[key]: value for key, value in changes.items()})
    after["tags"] = tags_after(before["tags"], to_set, to_remove)
    if check_mode:
        return bool(changes or to_set or to_remove), after, group
    if changes:
        if group.get("Status") != "available":
            if not wait:
                raise Failure(
                    f"replication group {group_id} is {group.get('Status')}, and AWS modifies "
                    "only available groups: run again later, or with wait: true"
                )
            group = wait_available(client, group_id, timeout)
        group = client.modify_replication_group(
            ReplicationGroupId=group_id, ApplyImmediately=True, aws_retry=True, **changes
        )["ReplicationGroup"]
    apply_tags(
        lambda tags: client.add_tags_to_resource(
            ResourceName=group["ARN"], Tags=ansible_dict_to_boto3_tag_list(tags), aws_retry=True
        ),
        lambda keys: client.remove_tags_from_resource(
            ResourceName=group["ARN"], TagKeys=keys, aws_retry=True
        ),
        to_set,
        to_remove,
    )
    if wait and (changes or group.get("Status") != "available"):
        group = wait_available(client, group_id, timeout)
    return bool(changes or to_set or to_remove), after, group

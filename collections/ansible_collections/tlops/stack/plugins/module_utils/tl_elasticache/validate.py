# Part of tl_elasticache (plugins/modules/tl_elasticache.py). Apache-2.0.
"""The input of tl_elasticache, checked, and the settings it asks for."""

from __future__ import annotations

import re

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure

_ID = re.compile(r"^[a-z](?:[a-z0-9]|-(?!-)){0,39}$")
DEFAULT_DESCRIPTION = "Managed by tl_elasticache"


def validate(params):
    """Raise Failure for input AWS would refuse (or the stand-in would wrongly accept)."""
    if params.get("id_prefix"):
        prefix = params["id_prefix"]
        if not _ID.fullmatch(prefix.lower()) or prefix.endswith("-") or len(prefix) > 37:
            raise Failure(
                f"id_prefix {prefix!r} is not valid: use 1 to 37 letters, digits or hyphens, "
                "starting with a letter, without two hyphens in a row or a trailing hyphen "
                "(-<n> is added to make each id)"
            )
        if not (params["tags"] or {}).get("Project"):
            raise Failure(
                "id_prefix needs tags with at least Project: the groups are found by them"
            )
    else:
        group_id = params["replication_group_id"]
        if not _ID.fullmatch(group_id.lower()) or group_id.endswith("-"):
            raise Failure(
                f"replication_group_id {group_id!r} is not valid: use 1 to 40 letters, digits or "
                "hyphens, starting with a letter, without two hyphens in a row or a trailing "
                "hyphen"
            )
    if params["wait_timeout"] <= 0:
        raise Failure("wait_timeout must be a positive number of seconds")
    if params["state"] == "absent":
        if not params["tags"]:
            raise Failure(
                "state=absent needs tags (at least Project: tinyllama): only a replication group "
                "carrying every tag given is deleted"
            )
        return
    subnet_group = params["subnet_group"]
    if not subnet_group:
        raise Failure("subnet_group (name and subnet_ids) is required with state=present")
    if not subnet_group.get("subnet_ids"):
        raise Failure(
            "subnet_group.subnet_ids must list at least one VPC subnet (two in different "
            "availability zones are usual)"
        )
    if not 0 <= params["snapshot_retention_limit"] <= 35:
        raise Failure("snapshot_retention_limit must be between 0 and 35 days")
    if not 1 <= params["port"] <= 65535:
        raise Failure("port must be between 1 and 65535")


def check_immutable(before, params):
    """Fail when an existing group differs in what cannot be changed after creation."""
    fixed = (
        ("at_rest_encryption", "at_rest_encryption", params["at_rest_encryption"]),
        ("transit_encryption", "transit_encryption", params["transit_encryption"]),
        ("port", "port", params["port"]),
        ("subnet_group_name", "subnet_group.name", params["subnet_group"]["name"]),
    )
    wrong = [
        (option, before[key], wanted)
        for key, option, wanted in fixed
        if before.get(key) is not None and before[key] != wanted
    ]
    if wrong:
        found = "; ".join(f"{option} is {was!r}, not {wanted!r}" for option, was, wanted in wrong)
        raise Failure(
            f"replication group {before['replication_group_id']} exists and its {found}: "
            "these cannot be changed after creation. Set "
            f"{', '.join(option for option, _, _ in wrong)} to match the existing group, or "
            "delete it (state: absent) and create it again"
        )


def same_version(actual, desired):
    if actual is None or actual == desired:
        return True
    prefix = desired[:-2] if desired.endswith(".x") else desired
    return actual.startswith(prefix + ".")


def desired_settings(params, group_id, parameter_group_name):
    settings = {
        "replication_group_id": group_id,
        "description": params["description"] or DEFAULT_DESCRIPTION,
        "node_type": params["node_type"],
        "port": params["port"],
        "at_rest_encryption": params["at_rest_encryption"],
        "transit_encryption": params["transit_encryption"],
        "snapshot_retention_limit": params["snapshot_retention_limit"],
        "tags": params["tags"] or {},
        "engine_version": params["engine_version"],
        "subnet_group_name": params["subnet_group"]["name"],
    }
    if params["security_group_ids"]:
        settings["security_group_ids"] = sorted(params["security_group_ids"])
    if parameter_group_name:
        settings["parameter_group_name"] = parameter_group_name
    return settings

# Part of tl_elasticache (plugins/modules/tl_elasticache.py). Apache-2.0.
"""The queue's subnet group and parameter group: made, changed and deleted beside it."""

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    ansible_dict_to_boto3_tag_list,
)
from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    Failure,
    carries,
    is_boto3_error_code,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_elasticache.read import (
    find_parameter_group,
    find_subnet_group,
    parameter_group_view,
    parameter_text,
    parameter_values,
    resource_tags,
    subnet_group_view,
)


def tag_kwargs(tags):
    return {"Tags": ansible_dict_to_boto3_tag_list(tags)} if tags else {}


def ensure_subnet_group(client, spec, tags, check_mode, warn):
    """Create the subnet group or update it; returns (changed, before, after)."""
    before = subnet_group_view(find_subnet_group(client, spec["name"]))
    wanted = {
        "name": spec["name"],
        "description": spec["description"],
        "subnet_ids": sorted(set(spec["subnet_ids"])),
    }
    if before == wanted:
        return False, before, before
    if before is None:
        if not check_mode:
            client.create_cache_subnet_group(
                CacheSubnetGroupName=spec["name"],
                CacheSubnetGroupDescription=spec["description"],
                SubnetIds=wanted["subnet_ids"],
                aws_retry=True,
                **tag_kwargs(tags),
            )
        return True, None, wanted
    if check_mode:
        return True, before, wanted
    done = gaps.optional(
        client.modify_cache_subnet_group,
        "elasticache-no-subnet-group-changes",
        CacheSubnetGroupName=spec["name"],
        CacheSubnetGroupDescription=spec["description"],
        SubnetIds=wanted["subnet_ids"],
        aws_retry=True,
    )
    if done is gaps.LACKING:
        gaps.warn(
            warn,
            "elasticache-no-subnet-group-changes",
            call="ModifyCacheSubnetGroup",
            then=f"subnet group {spec['name']} was not changed and keeps description "
            f"{before['description']!r} and subnets {before['subnet_ids']} (wanted "
            f"{wanted['description']!r}, {wanted['subnet_ids']})",
        )
        return False, before, before
    return True, before, wanted


def _warn_not_made(warn, spec, call, what):
    """Warn that the endpoint's lack of parameter groups left `spec` unmade, and what follows."""
    settings = ", ".join(f"{k}={parameter_text(v)}" for k, v in sorted(spec["parameters"].items()))
    gaps.warn(
        warn,
        "elasticache-no-parameter-groups",
        call=call,
        then=f"parameter group {spec['name']} was not created or changed"
        f"{f' and its parameters ({settings}) were not set' if settings else ''}; {what}",
    )


def ensure_parameter_group(client, spec, tags, check_mode, warn, group_exists):
    """Create the parameter group and set the parameters that differ.

    Returns (changed, before, after, name in effect — None where the endpoint lacks them).
    """
    found = find_parameter_group(client, spec["name"])
    if found is gaps.LACKING:
        what = (
            "the replication group's parameter group was neither compared nor changed"
            if group_exists
            else "the replication group is created with the engine's default parameter group"
        )
        _warn_not_made(warn, spec, "DescribeCacheParameterGroups", what)
        return False, None, None, None
    wanted = {k: parameter_text(v) for k, v in spec["parameters"].items()}
    after = parameter_group_view(spec, spec["family"], wanted)
    if found is None:
        if check_mode:
            return True, None, after, spec["name"]
        created = gaps.optional(
            client.create_cache_parameter_group,
            "elasticache-no-parameter-groups",
            CacheParameterGroupName=spec["name"],
            CacheParameterGroupFamily=spec["family"],
            Description=spec["description"],
            aws_retry=True,
            **tag_kwargs(tags),
        )
        if created is gaps.LACKING:
            what = "the replication group uses the engine's default parameter group"
            _warn_not_made(warn, spec, "CreateCacheParameterGroup", what)
            return False, None, None, None
    elif found.get("CacheParameterGroupFamily") != spec["family"]:
        raise Failure(
            f"parameter group {spec['name']} exists with family "
            f"{found.get('CacheParameterGroupFamily')}, not {spec['family']}: a family cannot be "
            "changed; set parameter_group.family to match or use another parameter_group.name"
        )
    current = parameter_values(client, spec["name"]) if wanted else {}
    unknown = sorted(set(wanted) - set(current))
    if unknown:
        raise Failure(
            f"parameter group {spec['name']} (family {spec['family']}) has no parameter "
            f"{', '.join(unknown)}: check parameter_group.parameters"
        )
    before = None
    if found is not None:
        before = parameter_group_view(spec, spec["family"], {k: current.get(k) for k in wanted})
    differing = [
        {"ParameterName": k, "ParameterValue": v}
        for k, v in sorted(wanted.items())
        if current.get(k) != v
    ]
    if differing and not check_mode:
        for start in range(0, len(differing), 20):  # AWS takes 20 at a time
            client.modify_cache_parameter_group(
                CacheParameterGroupName=spec["name"],
                ParameterNameValues=differing[start : start + 20],
                aws_retry=True,
            )
    return found is None or bool(differing), before, after, spec["name"]


# --- absent ---------------------------------------------------------------------------------
def delete_subnet_group(client, name, wanted_tags, check_mode, warn):
    found = find_subnet_group(client, name)
    if found is None:
        return False, None
    view = subnet_group_view(found)
    if not carries(resource_tags(client, found.get("ARN")), wanted_tags):
        warn(f"subnet group {name} was not deleted: it is not tagged {wanted_tags}")
        return False, view
    if check_mode:
        return True, view
    try:
        done = gaps.optional(
            client.delete_cache_subnet_group,
            "elasticache-no-subnet-group-changes",
            CacheSubnetGroupName=name,
            aws_retry=True,
        )
    except is_boto3_error_code("CacheSubnetGroupNotFoundFault"):
        return False, view
    if done is gaps.LACKING:
        gaps.warn(
            warn,
            "elasticache-no-subnet-group-changes",
            call="DeleteCacheSubnetGroup",
            then=f"subnet group {name} was left in place",
        )
        return False, view
    return True, view


def delete_parameter_group(client, name, wanted_tags, check_mode, warn):
    found = find_parameter_group(client, name)
    if found is gaps.LACKING:
        gaps.warn(
            warn,
            "elasticache-no-parameter-groups",
            call="DescribeCacheParameterGroups",
            then=f"parameter group {name} was neither looked for nor deleted",
        )
        return False, None
    if found is None:
        return False, None
    view = {"name": name, "family": found.get("CacheParameterGroupFamily")}
    if not carries(resource_tags(client, found.get("ARN")), wanted_tags):
        warn(f"parameter group {name} was not deleted: it is not tagged {wanted_tags}")
        return False, view
    if check_mode:
        return True, view
    try:
        done = gaps.optional(
            client.delete_cache_parameter_group,
            "elasticache-no-parameter-groups",
            CacheParameterGroupName=name,
            aws_retry=True,
        )
    except is_boto3_error_code("CacheParameterGroupNotFound"):
        return False, view
    if done is gaps.LACKING:
        gaps.warn(
            warn,
            "elasticache-no-parameter-groups",
            call="DeleteCacheParameterGroup",
            then=f"parameter group {name} was left in place",
        )
        return False, view
    return True, view


def delete_parts(client, params, check_mode, warn, before, after):
    """Delete the subnet group and parameter group (once the replication group is gone)."""
    changed = False
    for key, delete in (
        ("subnet_group", delete_subnet_group),
        ("parameter_group", delete_parameter_group),
    ):
        if not params[key]:
            continue
        deleted, view = delete(client, params[key]["name"], params["tags"], check_mode, warn)
        changed = changed or deleted
        if view is not None:
            before[key] = view
            if not deleted:
                after[key] = view
    return changed


def warn_parts_left(params, group_id, warn):
    kinds = (("subnet group", "subnet_group"), ("parameter group", "parameter_group"))
    left = [f"{kind} {params[key]['name']}" for kind, key in kinds if params[key]]
    if left:
        warn(
            f"replication group {group_id} is deleting and wait is false, so "
            f"{' and '.join(left)} were left (AWS refuses to delete a subnet group still in use): "
            "run again with wait: true to remove them once the group is gone"
        )

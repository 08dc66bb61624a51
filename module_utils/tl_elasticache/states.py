# Part of tl_elasticache (library/tl_elasticache.py). Apache-2.0.
"""state=present and state=absent of the queue: the replication group and its parts."""

from __future__ import annotations

from ansible.module_utils.tl_aws import carries
from ansible.module_utils.tl_elasticache.apply import (
    create_group,
    read_existing,
    update_group,
    wait_available,
    wait_gone,
)
from ansible.module_utils.tl_elasticache.parts import (
    delete_parts,
    ensure_parameter_group,
    ensure_subnet_group,
    warn_parts_left,
)
from ansible.module_utils.tl_elasticache.read import (
    find_group,
    group_settings,
    outcome_view,
    resource_tags,
)
from ansible.module_utils.tl_elasticache.validate import desired_settings


def ensure_present(client, params, check_mode, warn):
    group_id = params["replication_group_id"].lower()
    group, before = read_existing(client, group_id, params, warn)
    sng_changed, sng_before, sng_after = ensure_subnet_group(
        client, params["subnet_group"], params["tags"], check_mode, warn
    )
    pg_changed, pg_before, pg_after, pg_name = False, None, None, None
    if params["parameter_group"]:
        pg_changed, pg_before, pg_after, pg_name = ensure_parameter_group(
            client, params["parameter_group"], params["tags"], check_mode, warn, group is not None
        )
    if group is None:
        changed, after = True, desired_settings(params, group_id, pg_name)
        if not check_mode:
            group = create_group(client, params, group_id, pg_name)
            if params["wait"]:
                group = wait_available(client, group_id, params["wait_timeout"])
    else:
        changed, after, group = update_group(client, group, before, params, pg_name, check_mode)
    before = _with_parts(before, sng_before, pg_before)
    after = _with_parts(after, sng_after, pg_after)
    changed = changed or sng_changed or pg_changed
    view = outcome_view(group_id, group, params, pg_name)
    return dict(changed=changed, before=before, after=after, **view)


def _with_parts(settings, subnet_group, parameter_group):
    out = dict(settings)
    if subnet_group is not None:
        out["subnet_group"] = subnet_group
    if parameter_group is not None:
        out["parameter_group"] = parameter_group
    return out


def ensure_absent(client, params, check_mode, warn):
    group_id = params["replication_group_id"].lower()
    wanted = params["tags"]
    group = find_group(client, group_id)
    changed, before, after = False, {}, {}
    if group is not None and group.get("Status") != "deleting":
        tags = resource_tags(client, group.get("ARN"))
        before = group_settings(group, None, tags)
        if not carries(tags, wanted):
            warn(
                f"replication group {group_id} was not deleted: it is not tagged {wanted} "
                f"(its tags: {tags}); its subnet group and parameter group were left too"
            )
            view = outcome_view(group_id, group, params, None)
            return dict(changed=False, before=before, after=before, **view)
        changed = True
        if not check_mode:
            group = client.delete_replication_group(ReplicationGroupId=group_id, aws_retry=True)
            group = group["ReplicationGroup"]
    # A group already deleting counts as absent; its subnet and parameter groups go once it is gone.
    if group is not None and not params["wait"]:
        warn_parts_left(params, group_id, warn)
    else:
        if group is not None and not check_mode:
            wait_gone(client, group_id, params["wait_timeout"])
            group = None
        # in check mode a group that would be deleted and waited for takes the rest with it
        changed = delete_parts(client, params, check_mode, warn, before, after) or changed
    view = outcome_view(group_id, group, params, None)
    if check_mode and changed and group is not None:
        view["status"] = "deleting"
    return dict(changed=changed, before=before, after=after, **view)

# Part of tl_elasticache (plugins/modules/tl_elasticache.py). Apache-2.0.
"""state=present and state=absent of the queue: the replication group and its parts."""

from __future__ import annotations

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure, carries
from ansible_collections.tlops.stack.plugins.module_utils.tl_elasticache.apply import (
    create_group,
    queue_spec,
    read_existing,
    update_group,
    wait_available,
    wait_gone,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_elasticache.parts import (
    delete_parts,
    ensure_parameter_group,
    ensure_subnet_group,
    warn_parts_left,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_elasticache.read import (
    find_group,
    group_settings,
    outcome_view,
    resource_tags,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_elasticache.validate import (
    desired_settings,
)


def _queue_lib():
    """tlops.control.queue: the id arithmetic the module shares with the control function."""
    try:
        from tlops.control import queue
    except ImportError:
        raise Failure(
            "id_prefix needs the tlops package, which this Python lacks: run the module with "
            "the project's .venv (ansible_python_interpreter=.venv/bin/python; `make setup`)"
        ) from None
    return queue


def _prefix_groups(client, params):
    queue = _queue_lib()
    try:
        return queue, queue.ours(client, params["id_prefix"], params["tags"] or {})
    except queue.QueueError as exc:
        raise Failure(str(exc)) from None


def resolve_id(client, params):
    """The group's id: the one given, or the prefix's current group (by its tags), or the
    next id of the prefix when there is none."""
    if not params.get("id_prefix"):
        return params["replication_group_id"].lower()
    queue, groups = _prefix_groups(client, params)
    found = queue.current(groups)
    if found is not None:
        return found["ReplicationGroupId"]
    return queue.next_id([g["ReplicationGroupId"] for g in groups], params["id_prefix"])


def ensure_present(client, params, check_mode, warn):
    group_id = resolve_id(client, params)
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
    if params.get("id_prefix"):
        view["queue_spec"] = queue_spec(params, pg_name)
    return dict(changed=changed, before=before, after=after, **view)


def _with_parts(settings, subnet_group, parameter_group):
    out = dict(settings)
    if subnet_group is not None:
        out["subnet_group"] = subnet_group
    if parameter_group is not None:
        out["parameter_group"] = parameter_group
    return out


def ensure_absent(client, params, check_mode, warn):
    if not params.get("id_prefix"):
        return _ensure_one_absent(client, params, params["replication_group_id"].lower(),
                                  check_mode, warn)  # fmt: skip
    # Every group of the prefix that carries the tags, newest first; the subnet and parameter
    # groups go with the last one (when waiting), as they do for a fixed id.
    _, groups = _prefix_groups(client, params)
    live = [g["ReplicationGroupId"] for g in groups if g.get("Status") != "deleting"]
    ids = live or [g["ReplicationGroupId"] for g in groups][:1]
    if not ids:
        ids = [f"{params['id_prefix'].lower()}-0"]  # none listed: only the parts are left
    outcomes = [_ensure_one_absent(client, params, group_id, check_mode, warn) for group_id in ids]
    last = dict(outcomes[-1])
    last["changed"] = any(o["changed"] for o in outcomes)
    last["before"] = {o["replication_group_id"]: o["before"] for o in outcomes if o["before"]}
    last["after"] = {}
    last["deleted"] = [o["replication_group_id"] for o in outcomes if o["changed"]]
    return last


def _ensure_one_absent(client, params, group_id, check_mode, warn):
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

# Part of tl_schedule (plugins/modules/tl_schedule.py). Apache-2.0.
"""state=present and state=absent of one schedule: read, compare, write, or say why not.

Nothing here waits: a schedule has no state in between (GetSchedule answers ENABLED or
DISABLED), and each call's answer is final.
"""

from __future__ import annotations

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure
from ansible_collections.tlops.stack.plugins.module_utils.tl_schedule.apply import (
    create,
    delete,
    update,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_schedule.read import (
    group_exists,
    read,
    view,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_schedule.validate import desired


def _outcome(params, changed, before, after, arn):
    return dict(changed=changed, before=before, after=after, name=params["name"],
                group_name=params["group_name"], schedule_arn=arn)  # fmt: skip


def ensure_present(client, params, check_mode, _warn):
    request = desired(params)
    name, group = params["name"], params["group_name"]
    current = read(client, name, group)
    after = view(request)
    if current is None:
        if not group_exists(client, group):
            raise Failure(
                f"group_name {group!r}: no such schedule group in this region; create it first "
                f"(aws scheduler create-schedule-group --name {group} --tags Key=Project,"
                "Value=<project>) or leave group_name out to use the group 'default'"
            )
        arn = None if check_mode else create(client, request)
        return _outcome(params, True, None, after, arn)
    before = view(current)
    changed = before != after
    arn = current.get("Arn")
    if changed and not check_mode:
        arn = update(client, request, current)
    return _outcome(params, changed, before, after, arn)


def ensure_absent(client, params, check_mode, warn):
    """Deletes the schedule of that name (check() made sure it is named after the project),
    and, with require_target_arn, only while it still calls that target."""
    name, group = params["name"], params["group_name"]
    current = read(client, name, group)
    if current is None:
        return _outcome(params, False, None, None, None)
    before, arn = view(current), current.get("Arn")
    required = params["require_target_arn"]
    target = before["target"]["arn"]
    if required and target != required:
        warn(
            f"schedule {group}/{name} was left alone: it calls {target}, not "
            f"require_target_arn {required} (someone else's, or its target changed)"
        )
        return _outcome(params, False, before, before, arn)
    if not check_mode:
        delete(client, name, group)
    return _outcome(params, True, before, None, arn)

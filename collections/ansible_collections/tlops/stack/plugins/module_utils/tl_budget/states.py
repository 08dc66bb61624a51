# Part of tl_budget (plugins/modules/tl_budget.py). Apache-2.0.
"""state=present and state=absent of a budget: read, compare, write, or say why not."""

from __future__ import annotations

from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    ClientError,
    Failure,
    is_not_found,
    tag_changes,
    tags_after,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_budget.apply import (
    apply_notifications,
    budget_differs,
    create,
    plan_notifications,
    planned,
    recreate,
    write_tags,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_budget.read import (
    api_budget,
    read_budget,
    read_current_notifications,
    read_tags,
    view,
)


def ensure_present(client, account, arn, desired, params, check_mode, warn):
    """(changed, before, after) for state=present."""
    tags = params["tags"]
    current = read_budget(client, account, desired["name"])
    if current is None:
        notifications = desired["notifications"] or []
        if not check_mode:
            create(client, account, api_budget(desired), notifications, tags)
        after = view(api_budget(desired), notifications, tags)
        return True, None, after

    if current.get("BudgetType") != desired["budget_type"]:
        raise Failure(
            f"budget {desired['name']!r} exists with budget type {current.get('BudgetType')!r}; "
            f"this module manages {desired['budget_type']} budgets: delete it or choose another "
            "name"
        )
    pairs = read_current_notifications(client, account, desired["name"])
    current_tags = read_tags(client, arn) if tags is not None else None
    before = view(current, [n for _, n in pairs], current_tags)

    wanted = desired["notifications"]
    plan, after_notifications, unread = plan_notifications(
        wanted if wanted is not None else before["notifications"], pairs
    )
    # What could not be compared; moot when the budget is re-created with everything given.
    uncompared = []
    if unread and wanted is not None:
        uncompared.append(gaps.text("budgets-no-subscriber-calls", count=unread))
    to_set, to_remove = {}, []
    after_tags = current_tags
    if tags is not None:
        if current_tags is None:
            then = "the budget's tags were not compared or changed"
            uncompared.append(gaps.text("budgets-no-tag-calls", then=then))
        else:
            to_set, to_remove = tag_changes(current_tags, tags, params["purge_tags"])
            after_tags = tags_after(current_tags, to_set, to_remove)
    change_budget = budget_differs(desired, before)
    after_budget = api_budget(desired, current)
    after = view(after_budget, after_notifications, after_tags)
    changed = change_budget or planned(plan) or bool(to_set or to_remove)

    if changed and not check_mode and change_budget:
        updated = gaps.optional(
            client.update_budget,
            "budgets-no-update-budget",
            AccountId=account,
            NewBudget=after_budget,
            aws_retry=True,
        )
        if updated is gaps.LACKING:
            notifications, final_tags = recreate(
                client, account, after_budget, desired, before, current_tags, params, warn, arn
            )
            return True, before, view(after_budget, notifications, final_tags)
    for note in uncompared:
        warn(note)
    if changed and not check_mode:
        apply_notifications(client, account, desired["name"], plan)
        write_tags(client, arn, to_set, to_remove)
    return changed, before, after


def ensure_absent(client, account, arn, params, check_mode, warn):
    """(changed, before) for state=absent; deletes only what carries the given tags."""
    name = params["name"]
    current = read_budget(client, account, name)
    if current is None:
        return False, None
    required = params["tags"] or {}
    before = view(current, [n for _, n in read_current_notifications(client, account, name)], None)
    if required:
        tags = read_tags(client, arn)
        if tags is None:
            project = required.get("Project")
            if project is None or not name.startswith(project):
                gaps.warn(
                    warn,
                    "budgets-no-tag-calls",
                    then=f"budget {name!r} was not deleted, as its name does not start with the "
                    f"Project tag value {project!r} given in `tags`",
                )
                return False, before
            gaps.warn(
                warn,
                "budgets-no-tag-calls",
                then="deletion was scoped by name instead - the budget name must start with the "
                f"Project tag value {project!r}",
            )
        else:
            before["tags"] = tags
            missing = {k: v for k, v in required.items() if tags.get(k) != v}
            if missing:
                warn(
                    f"budget {name!r} was not deleted: it is not tagged {missing} "
                    "(only budgets carrying every tag in `tags` are deleted)"
                )
                return False, before
    if not check_mode:
        try:
            client.delete_budget(AccountId=account, BudgetName=name, aws_retry=True)
        except ClientError as exc:
            if not is_not_found(exc):
                raise
    return True, before

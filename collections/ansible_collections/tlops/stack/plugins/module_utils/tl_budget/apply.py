# Part of tl_budget (plugins/modules/tl_budget.py). Apache-2.0.
"""The calls that bring a budget where it should be: planned first, then written."""

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    ansible_dict_to_boto3_tag_list,
)
from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure, apply_tags
from ansible_collections.tlops.stack.plugins.module_utils.tl_budget.read import (
    api_notification,
    api_subscriber,
    read_tags,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_budget.validate import (
    notification_key,
    subscriber_key,
)

ONLY_GIVEN_TAGS = "the re-created budget carries only the tags given in `tags`"


# --- planning --------------------------------------------------------------------
def budget_differs(desired, before):
    filters_differ = (
        desired["cost_filters"] is not None and desired["cost_filters"] != before["cost_filters"]
    )
    return (
        filters_differ
        or before["limit_amount"] is None
        or round(before["limit_amount"], 9) != round(desired["limit_amount"], 9)
        or before["limit_unit"] != desired["limit_unit"]
        or before["time_unit"] != desired["time_unit"]
    )


def plan_notifications(desired, current):
    """The notification and subscriber calls that turn `current` into `desired`.

    `current` pairs each described API notification with its view (subscribers None when
    unreadable). Returns (plan, after_notifications, unread_count).
    """
    plan = {"delete": [], "create": [], "replace": [], "subscribers": []}
    by_key = {notification_key(n_view): (api, n_view) for api, n_view in current}
    wanted = {notification_key(n): n for n in desired}
    after, unread = [], 0
    for key, (api, _) in by_key.items():
        if key not in wanted:
            plan["delete"].append(api)
    for key, notification in wanted.items():
        if key not in by_key:
            plan["create"].append(notification)
            after.append(notification)
            continue
        api, now = by_key[key]
        if now["subscribers"] is None:
            unread += 1
            after.append(now)
            continue
        have = {subscriber_key(s) for s in now["subscribers"]}
        want = {subscriber_key(s) for s in notification["subscribers"]}
        if have == want:
            after.append(notification)
        elif not have & want:
            # Deleting a notification's last subscriber deletes the notification itself.
            plan["replace"].append((api, notification))
            after.append(notification)
        else:
            plan["subscribers"].append((api, sorted(have - want), sorted(want - have)))
            after.append(notification)
    return plan, sorted(after, key=notification_key), unread


def planned(plan):
    """Whether the plan makes any call."""
    return any(plan[k] for k in ("delete", "create", "replace", "subscribers"))


# --- writing -----------------------------------------------------------------------
def create(client, account, budget, notifications, tags):
    kwargs = {
        "AccountId": account,
        "Budget": budget,
        "NotificationsWithSubscribers": [
            {
                "Notification": api_notification(n),
                "Subscribers": [api_subscriber(s) for s in n["subscribers"]],
            }
            for n in notifications
        ],
    }
    if tags:
        kwargs["ResourceTags"] = ansible_dict_to_boto3_tag_list(tags)
    client.create_budget(**kwargs, aws_retry=True)


def apply_notifications(client, account, name, plan):
    where = {"AccountId": account, "BudgetName": name}
    for api in plan["delete"]:
        client.delete_notification(**where, Notification=api, aws_retry=True)
    for api, notification in plan["replace"]:
        client.delete_notification(**where, Notification=api, aws_retry=True)
        plan["create"].append(notification)
    for notification in plan["create"]:
        client.create_notification(
            **where,
            Notification=api_notification(notification),
            Subscribers=[api_subscriber(s) for s in notification["subscribers"]],
            aws_retry=True,
        )
    for api, remove, add in plan["subscribers"]:
        # Removals first (one subscriber is kept throughout, and the SNS slot frees up).
        for kind, address in remove:
            client.delete_subscriber(
                **where,
                Notification=api,
                Subscriber={"SubscriptionType": kind, "Address": address},
                aws_retry=True,
            )
        for kind, address in add:
            client.create_subscriber(
                **where,
                Notification=api,
                Subscriber={"SubscriptionType": kind, "Address": address},
                aws_retry=True,
            )


def write_tags(client, arn, to_set, to_remove):
    apply_tags(
        lambda tags: client.tag_resource(
            ResourceARN=arn, ResourceTags=ansible_dict_to_boto3_tag_list(tags), aws_retry=True
        ),
        lambda keys: client.untag_resource(ResourceARN=arn, ResourceTagKeys=keys, aws_retry=True),
        to_set,
        to_remove,
    )


def recreate(client, account, budget, desired, before, current_tags, params, warn, arn):
    """A budget change where the endpoint lacks update_budget: delete, then create `budget`
    (the structure update_budget would have been given) with its notifications and tags."""
    notifications = desired["notifications"]
    if notifications is None:
        if any(n["subscribers"] is None for n in before["notifications"]):
            raise Failure(
                "the endpoint lacks update_budget and cannot list subscribers, so budget "
                f"{desired['name']!r} cannot be changed without losing its notifications; give "
                "`notifications` so that they can be re-created"
            )
        notifications = before["notifications"]
    tags = params["tags"]
    if tags is None:
        tags = current_tags if current_tags is not None else read_tags(client, arn)
        if tags is None:
            gaps.warn(warn, "budgets-no-tag-calls", then=ONLY_GIVEN_TAGS)
    elif not params["purge_tags"]:
        if current_tags is None:
            gaps.warn(warn, "budgets-no-tag-calls", then=ONLY_GIVEN_TAGS)
        tags = {**(current_tags or {}), **tags}
    client.delete_budget(AccountId=account, BudgetName=desired["name"], aws_retry=True)
    create(client, account, budget, notifications, tags)
    gaps.warn(warn, "budgets-no-update-budget")
    return notifications, tags

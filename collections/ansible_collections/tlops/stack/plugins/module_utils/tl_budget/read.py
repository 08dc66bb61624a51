# Part of tl_budget (plugins/modules/tl_budget.py). Apache-2.0.
"""What AWS Budgets holds: the request and answer shapes, the reads and the view."""

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    boto3_tag_list_to_ansible_dict,
)
from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    ClientError,
    is_not_found,
    pages,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_budget.validate import (
    amount_text,
    normalise_filters,
    notification_key,
    subscriber_key,
)


# --- API shapes ----------------------------------------------------------------
def api_notification(notification):
    return {
        "NotificationType": notification["notification_type"],
        "ComparisonOperator": notification["comparison_operator"],
        "Threshold": notification["threshold"],
        "ThresholdType": notification["threshold_type"],
    }


def api_subscriber(subscriber):
    return {"SubscriptionType": subscriber["subscription_type"], "Address": subscriber["address"]}


def from_api_notification(api, subscribers):
    """The snake_case view of a described notification; `subscribers` None when unreadable."""
    return {
        "notification_type": api["NotificationType"],
        "comparison_operator": api["ComparisonOperator"],
        "threshold": float(api["Threshold"]),
        "threshold_type": api.get("ThresholdType", "PERCENTAGE"),
        "subscribers": None
        if subscribers is None
        else sorted(
            (
                {"subscription_type": s["SubscriptionType"], "address": s["Address"]}
                for s in subscribers
            ),
            key=subscriber_key,
        ),
    }


def api_budget(desired, current=None):
    """The Budget structure for create_budget (current None) or update_budget.

    An update keeps what this module does not manage (cost types, the filters when
    `cost_filters` is not given, and the time period unless the time unit changes).
    """
    budget = {
        "BudgetName": desired["name"],
        "BudgetLimit": {
            "Amount": amount_text(desired["limit_amount"]),
            "Unit": desired["limit_unit"],
        },
        "TimeUnit": desired["time_unit"],
        "BudgetType": desired["budget_type"],
    }
    filters = desired["cost_filters"]
    if filters is None and current is not None:
        filters = current.get("CostFilters")
    if filters:
        budget["CostFilters"] = filters
    if current is not None:
        if current.get("CostTypes"):
            budget["CostTypes"] = current["CostTypes"]
        if current.get("TimePeriod") and current.get("TimeUnit") == desired["time_unit"]:
            budget["TimePeriod"] = current["TimePeriod"]
    return budget


def budget_arn(region, account, name):
    partition = "aws"
    if region and region.startswith("cn-"):
        partition = "aws-cn"
    elif region and region.startswith("us-gov-"):
        partition = "aws-us-gov"
    return f"arn:{partition}:budgets::{account}:budget/{name}"


# --- reading ---------------------------------------------------------------------
def read_budget(client, account, name):
    try:
        return client.describe_budget(AccountId=account, BudgetName=name, aws_retry=True)["Budget"]
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def read_notifications(client, account, name):
    """The budget's notifications as described (API shape, kept for delete calls)."""
    return pages(
        client.describe_notifications_for_budget,
        "Notifications",
        AccountId=account,
        BudgetName=name,
    )


def read_subscribers(client, account, name, notification):
    """The notification's subscribers (API shape), or None where they cannot be read."""
    listed = gaps.optional(
        pages,
        "budgets-no-subscriber-calls",
        client.describe_subscribers_for_notification,
        "Subscribers",
        AccountId=account,
        BudgetName=name,
        Notification=notification,
    )
    return None if listed is gaps.LACKING else listed


def read_current_notifications(client, account, name):
    """(described API notification, view) pairs; subscribers None where they cannot be read."""
    pairs, readable = [], True
    for api in read_notifications(client, account, name):
        subscribers = read_subscribers(client, account, name, api) if readable else None
        readable = subscribers is not None
        pairs.append((api, from_api_notification(api, subscribers)))
    return pairs


def read_tags(client, arn):
    """The budget's tags as a dict, or None where they cannot be read."""
    listed = gaps.optional(
        client.list_tags_for_resource, "budgets-no-tag-calls", ResourceARN=arn, aws_retry=True
    )
    if listed is gaps.LACKING:
        return None
    return boto3_tag_list_to_ansible_dict(listed.get("ResourceTags") or [])


def view(budget, notifications, tags):
    """What the diff and the return show of a budget."""
    if budget is None:
        return None
    limit = budget.get("BudgetLimit") or {}
    return {
        "name": budget["BudgetName"],
        "limit_amount": float(limit["Amount"]) if limit.get("Amount") else None,
        "limit_unit": limit.get("Unit"),
        "time_unit": budget.get("TimeUnit"),
        "budget_type": budget.get("BudgetType"),
        "cost_filters": normalise_filters(budget.get("CostFilters") or {}),
        "notifications": sorted(notifications, key=notification_key),
        "tags": tags,
    }

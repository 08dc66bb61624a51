#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# Budgets: neither amazon.aws nor community.aws ships a module for AWS Budgets.

DOCUMENTATION = r"""
---
module: tl_budget
short_description: Manage an AWS Budgets cost budget with its notifications, subscribers and tags
description:
  - Creates, updates in place and deletes an AWS Budgets C(COST) budget, its notifications
    (actual or forecasted spend against a threshold) and their e-mail and SNS subscribers.
  - This module exists because neither C(amazon.aws) nor C(community.aws) has a module for
    AWS Budgets; the tinyllama stack needs one for its monthly cost guard rail (a warning at
    75 % by e-mail and SNS, and a notification at 105 % to the SNS topic of the budget-killer
    Lambda).
  - On AWS, a change of the limit, the filters or the time unit is made with C(update_budget);
    notifications are added and removed with C(create_notification) and C(delete_notification);
    subscribers are read with C(describe_subscribers_for_notification) and changed with
    C(create_subscriber) and C(delete_subscriber); tags are read and changed on the budget ARN
    C(arn:aws:budgets::<account>:budget/<name>).
author: tinyllama-ops
notes:
  - AWS Budgets evaluates spend only a few times a day (about every 8 to 12 hours), so a
    notification can arrive hours after its threshold was crossed; do not rely on it to stop
    spending within minutes.
  - The amounts (O(limit_amount), and O(notifications[].threshold) when
    O(notifications[].threshold_type=ABSOLUTE_VALUE)) are in O(limit_unit), which must be the
    account's billing currency; that is usually USD even where the design speaks of euros.
  - A notification is identified by its O(notifications[].notification_type),
    O(notifications[].comparison_operator), O(notifications[].threshold) and
    O(notifications[].threshold_type); changing any of them removes the old notification and
    adds a new one.
  - AWS deletes a notification together with its last subscriber, so when none of a
    notification's current subscribers is kept the notification is deleted and re-created
    with the new subscribers instead.
  - The local stand-in (moto 5.2.5) implements only create, describe and delete of budgets and
    notifications. It does not implement C(update_budget), C(update_notification),
    C(describe_subscribers_for_notification), C(create_subscriber), C(delete_subscriber),
    C(update_subscriber), C(list_tags_for_resource), C(tag_resource) or C(untag_resource); it
    accepts C(ResourceTags) in C(create_budget) but does not keep them. It answers those calls
    with a bare HTTP 500 page. The module then warns and
    (a) deletes and re-creates the budget with its notifications when the limit, filters or time
    unit must change (this needs O(notifications) when the budget has notifications, since their
    subscribers cannot be read back); (b) leaves the subscribers of existing notifications
    uncompared and says so; (c) leaves tags uncompared and says so; (d) for O(state=absent),
    scopes the deletion by name instead of by tags, see O(state).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
options:
  name:
    description:
      - The name of the budget, unique within the account.
      - 1 to 100 characters; V(:) and V(\\) and the substring V(/action/) are not allowed.
    type: str
    required: true
  state:
    description:
      - V(present) creates the budget or brings it to the given settings.
      - V(absent) deletes it, but only if it carries every tag in O(tags) (callers pass at least
        V(Project=tinyllama)); a budget with that name but without those tags is left alone
        with a warning. Without O(tags) no tag is required. Where the tags cannot be read
        (the local stand-in), the budget is deleted only if its name starts with the value of
        the V(Project) tag in O(tags), and a warning says so.
    type: str
    default: present
    choices: [present, absent]
  limit_amount:
    description:
      - The budget limit per O(time_unit), in O(limit_unit). Must be greater than 0.
      - Required when O(state=present).
    type: float
  limit_unit:
    description:
      - The currency of O(limit_amount) and of absolute thresholds. AWS Budgets amounts are in
        the account's billing currency, usually V(USD).
    type: str
    default: USD
  time_unit:
    description:
      - The period after which the budget's actual and forecasted spend reset.
    type: str
    default: MONTHLY
    choices: [MONTHLY, QUARTERLY, ANNUALLY]
  budget_type:
    description:
      - What the budget tracks. Only cost budgets are supported for now.
    type: str
    default: COST
    choices: [COST]
  cost_filters:
    description:
      - 'The cost filters, a dictionary of filter name to a list of values, for example
        V({"TagKeyValue": ["user:Project$tinyllama"]}) (a cost allocation tag must be activated
        in the billing console before AWS filters on it).'
      - When not given, the budget's filters are left as they are (none on creation).
    type: dict
  notifications:
    description:
      - The budget's notifications, each with its subscribers. Up to 10 per budget.
      - When not given, the notifications are left as they are (none on creation); V([])
        removes them all.
    type: list
    elements: dict
    suboptions:
      notification_type:
        description: Whether the notification is about actual or forecasted spend.
        type: str
        default: ACTUAL
        choices: [ACTUAL, FORECASTED]
      comparison_operator:
        description: How the spend is compared with the threshold.
        type: str
        default: GREATER_THAN
        choices: [GREATER_THAN, LESS_THAN, EQUAL_TO]
      threshold:
        description:
          - The threshold, greater than 0; a percentage of O(limit_amount) (V(105) for 105 %)
            or an amount in O(limit_unit), see O(notifications[].threshold_type).
        type: float
        required: true
      threshold_type:
        description: Whether O(notifications[].threshold) is a percentage or an amount.
        type: str
        default: PERCENTAGE
        choices: [PERCENTAGE, ABSOLUTE_VALUE]
      subscribers:
        description:
          - Who is told, 1 to 10 per notification, at most one of them an SNS topic.
        type: list
        elements: dict
        required: true
        suboptions:
          subscription_type:
            description: V(EMAIL) or V(SNS).
            type: str
            required: true
            choices: [SNS, EMAIL]
          address:
            description:
              - An e-mail address (V(EMAIL)) or an SNS topic ARN (V(SNS)), for example
                V(arn:aws:sns:eu-west-1:123456789012:tinyllama-budget). The topic's policy must
                let V(budgets.amazonaws.com) publish to it.
            type: str
            required: true
  account_id:
    description:
      - The 12-digit account that owns the budget. Defaults to the caller's account
        (C(sts get_caller_identity)).
    type: str
  tags:
    description:
      - The budget's tags (AWS Budgets resource tags). If not set, tags are not modified.
      - With O(state=absent), the tags the budget must carry to be deleted.
    type: dict
    aliases: [resource_tags]
  purge_tags:
    description:
      - If V(true) and O(tags) is set, tags not in O(tags) are removed from the budget.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Monthly cost budget with a warning and the budget-killer trigger
  tl_budget:
    name: tinyllama-monthly
    limit_amount: 20
    limit_unit: USD
    cost_filters:
      TagKeyValue: ["user:Project$tinyllama"]
    notifications:
      - threshold: 75
        subscribers:
          - subscription_type: EMAIL
            address: ops@example.com
          - subscription_type: SNS
            address: arn:aws:sns:eu-west-1:123456789012:tinyllama-budget-warning
      - threshold: 105
        subscribers:
          - subscription_type: SNS
            address: arn:aws:sns:eu-west-1:123456789012:tinyllama-budget-killer
    tags:
      Project: tinyllama
      Role: guardrails

- name: Delete the budget (only if it is tagged Project=tinyllama)
  tl_budget:
    name: tinyllama-monthly
    state: absent
    tags:
      Project: tinyllama
"""

RETURN = r"""
name:
  description: The budget's name.
  returned: always
  type: str
  sample: tinyllama-monthly
arn:
  description: The budget's ARN.
  returned: always
  type: str
  sample: arn:aws:budgets::123456789012:budget/tinyllama-monthly
account_id:
  description: The account that owns the budget.
  returned: always
  type: str
  sample: "123456789012"
limit_amount:
  description: The budget limit.
  returned: when O(state=present)
  type: float
  sample: 20.0
limit_unit:
  description: The currency of the limit.
  returned: when O(state=present)
  type: str
  sample: USD
time_unit:
  description: The budget period.
  returned: when O(state=present)
  type: str
  sample: MONTHLY
cost_filters:
  description: The cost filters, each list sorted.
  returned: when O(state=present)
  type: dict
  sample: {"TagKeyValue": ["user:Project$tinyllama"]}
notifications:
  description:
    - The notifications as given, normalised (defaults filled in, sorted, subscribers sorted);
      when O(notifications) is not given, those the budget has (subscribers V(null) where they
      cannot be read).
  returned: when O(state=present)
  type: list
  elements: dict
  sample:
    - notification_type: ACTUAL
      comparison_operator: GREATER_THAN
      threshold: 75.0
      threshold_type: PERCENTAGE
      subscribers:
        - {subscription_type: EMAIL, address: ops@example.com}
tags:
  description: The budget's tags; V(null) where they cannot be read (the local stand-in).
  returned: when O(state=present)
  type: dict
  sample: {"Project": "tinyllama", "Role": "guardrails"}
diff:
  description:
    - Before and after (limit, unit, time unit, filters, notifications with subscribers, tags).
  returned: in diff mode
  type: dict
"""

import re

from ansible.module_utils.tl_aws import (
    AnsibleAWSModule,
    ClientError,
    Failure,
    is_not_found,
    pages,
    result,
    retrying_client,
    run,
    tag_changes,
    unsupported,
)
from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    ansible_dict_to_boto3_tag_list,
    boto3_tag_list_to_ansible_dict,
)

_MAX_NOTIFICATIONS = 10
_MAX_SUBSCRIBERS = 10
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_SNS_ARN = re.compile(
    r"^arn:aws(?:-cn|-us-gov|-iso|-iso-b)?:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"
)
_ACCOUNT = re.compile(r"^\d{12}$")

W_RECREATED = (
    "the stand-in lacks update_budget: the budget was deleted and re-created with its notifications"
)
W_SUBSCRIBERS = (
    "the stand-in cannot list subscribers (describe_subscribers_for_notification is not "
    "implemented): the subscribers of {count} existing notification(s) were not compared and may "
    "differ from `notifications`"
)
W_TAGS = (
    "the stand-in cannot list budget tags (list_tags_for_resource is not implemented): "
    "the budget's tags were not compared or changed"
)
W_TAGS_ON_RECREATE = (
    "the stand-in cannot list budget tags (list_tags_for_resource is not implemented): "
    "the re-created budget carries only the tags given in `tags`"
)
W_ABSENT_BY_NAME = (
    "the stand-in cannot list budget tags (list_tags_for_resource is not implemented): "
    "deletion was scoped by name instead - the budget name must start with the Project tag "
    "value {project!r}"
)


# --- input -------------------------------------------------------------------
def amount_text(value):
    """An amount as Budgets wants it (digits, optional decimals, no exponent)."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text or "0"


def notification_key(notification):
    """What identifies a notification: type, operator, threshold, threshold type."""
    return (
        notification["notification_type"],
        notification["comparison_operator"],
        round(float(notification["threshold"]), 9),
        notification["threshold_type"],
    )


def _subscriber_key(subscriber):
    return (subscriber["subscription_type"], subscriber["address"])


def check_name(name):
    if not 1 <= len(name) <= 100 or ":" in name or "\\" in name or "/action/" in name:
        raise Failure(
            f"name: {name!r} is not a valid budget name; use 1 to 100 characters without "
            "':' or '\\' and without '/action/'"
        )


def check_subscribers(where, subscribers):
    if not 1 <= len(subscribers) <= _MAX_SUBSCRIBERS:
        raise Failure(
            f"{where}.subscribers: {len(subscribers)} subscribers given; a notification takes "
            f"1 to {_MAX_SUBSCRIBERS}"
        )
    sns = [s for s in subscribers if s["subscription_type"] == "SNS"]
    if len(sns) > 1:
        raise Failure(
            f"{where}.subscribers: {len(sns)} SNS subscribers given; a notification takes at most "
            "one SNS topic (fan out from that topic, or add e-mail subscribers)"
        )
    seen = set()
    for index, subscriber in enumerate(subscribers):
        address = subscriber["address"]
        at = f"{where}.subscribers[{index}].address"
        if subscriber["subscription_type"] == "EMAIL" and not _EMAIL.match(address):
            raise Failure(f"{at}: {address!r} is not an e-mail address (name@example.com)")
        if subscriber["subscription_type"] == "SNS" and not _SNS_ARN.match(address):
            raise Failure(
                f"{at}: {address!r} is not an SNS topic ARN "
                "(arn:aws:sns:<region>:<12-digit account>:<topic name>)"
            )
        if _subscriber_key(subscriber) in seen:
            raise Failure(f"{at}: {address!r} is given twice in this notification; give it once")
        seen.add(_subscriber_key(subscriber))


def normalise_notifications(notifications):
    """The given notifications validated, sorted, with sorted subscribers (snake_case)."""
    if notifications is None:
        return None
    if len(notifications) > _MAX_NOTIFICATIONS:
        raise Failure(
            f"notifications: {len(notifications)} given; a budget takes at most "
            f"{_MAX_NOTIFICATIONS}"
        )
    out, seen = [], {}
    for index, given in enumerate(notifications):
        where = f"notifications[{index}]"
        threshold = given["threshold"]
        if threshold is None or threshold <= 0:
            raise Failure(f"{where}.threshold: {threshold!r} must be greater than 0")
        subscribers = [
            {"subscription_type": s["subscription_type"], "address": s["address"].strip()}
            for s in given["subscribers"] or []
        ]
        check_subscribers(where, subscribers)
        notification = {
            "notification_type": given["notification_type"],
            "comparison_operator": given["comparison_operator"],
            "threshold": float(threshold),
            "threshold_type": given["threshold_type"],
            "subscribers": sorted(subscribers, key=_subscriber_key),
        }
        key = notification_key(notification)
        if key in seen:
            raise Failure(
                f"{where}: the same notification (type, operator, threshold, threshold type) as "
                f"notifications[{seen[key]}]; merge their subscribers into one"
            )
        seen[key] = index
        out.append(notification)
    return sorted(out, key=notification_key)


def normalise_filters(filters):
    if filters is None:
        return None
    out = {}
    for key, values in filters.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise Failure(
                f"cost_filters.{key}: {values!r} must be a list of strings, "
                'e.g. TagKeyValue: ["user:Project$tinyllama"]'
            )
        out[str(key)] = sorted(values)
    return out


def desired_state(params):
    """The requested budget, validated (Failure names the option)."""
    check_name(params["name"])
    if params["account_id"] is not None and not _ACCOUNT.match(params["account_id"]):
        raise Failure(f"account_id: {params['account_id']!r} is not a 12-digit AWS account id")
    if params["state"] == "absent":
        return None
    if params["limit_amount"] is None or params["limit_amount"] <= 0:
        raise Failure(f"limit_amount: {params['limit_amount']!r} must be greater than 0")
    return {
        "name": params["name"],
        "limit_amount": float(params["limit_amount"]),
        "limit_unit": params["limit_unit"],
        "time_unit": params["time_unit"],
        "budget_type": params["budget_type"],
        "cost_filters": normalise_filters(params["cost_filters"]),
        "notifications": normalise_notifications(params["notifications"]),
    }


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
            key=_subscriber_key,
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
    try:
        return pages(
            client.describe_subscribers_for_notification,
            "Subscribers",
            AccountId=account,
            BudgetName=name,
            Notification=notification,
        )
    except ClientError as exc:
        if unsupported(exc):
            return None
        raise


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
    try:
        listed = client.list_tags_for_resource(ResourceARN=arn, aws_retry=True)
    except ClientError as exc:
        if unsupported(exc):
            return None
        raise
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
        have = {_subscriber_key(s) for s in now["subscribers"]}
        want = {_subscriber_key(s) for s in notification["subscribers"]}
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


def _planned(plan):
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


def apply_tags(client, arn, to_set, to_remove):
    if to_remove:
        client.untag_resource(ResourceARN=arn, ResourceTagKeys=to_remove, aws_retry=True)
    if to_set:
        client.tag_resource(
            ResourceARN=arn, ResourceTags=ansible_dict_to_boto3_tag_list(to_set), aws_retry=True
        )


def recreate(client, account, budget, desired, before, current_tags, params, warn, arn):
    """The stand-in path for a budget change: delete, then create `budget` (the structure
    update_budget would have been given) with its notifications and tags."""
    notifications = desired["notifications"]
    if notifications is None:
        if any(n["subscribers"] is None for n in before["notifications"]):
            raise Failure(
                "the stand-in lacks update_budget and cannot list subscribers, so budget "
                f"{desired['name']!r} cannot be changed without losing its notifications; give "
                "`notifications` so that they can be re-created"
            )
        notifications = before["notifications"]
    tags = params["tags"]
    if tags is None:
        tags = current_tags if current_tags is not None else read_tags(client, arn)
        if tags is None:
            warn(W_TAGS_ON_RECREATE)
    elif not params["purge_tags"]:
        if current_tags is None:
            warn(W_TAGS_ON_RECREATE)
        tags = {**(current_tags or {}), **tags}
    client.delete_budget(AccountId=account, BudgetName=desired["name"], aws_retry=True)
    create(client, account, budget, notifications, tags)
    warn(W_RECREATED)
    return notifications, tags


# --- states --------------------------------------------------------------------------
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
        uncompared.append(W_SUBSCRIBERS.format(count=unread))
    to_set, to_remove = {}, []
    after_tags = current_tags
    if tags is not None:
        if current_tags is None:
            uncompared.append(W_TAGS)
        else:
            to_set, to_remove = tag_changes(current_tags, tags, params["purge_tags"])
            after_tags = {k: v for k, v in {**current_tags, **to_set}.items() if k not in to_remove}
    change_budget = budget_differs(desired, before)
    after_budget = api_budget(desired, current)
    after = view(after_budget, after_notifications, after_tags)
    changed = change_budget or _planned(plan) or bool(to_set or to_remove)

    if changed and not check_mode and change_budget:
        try:
            client.update_budget(AccountId=account, NewBudget=after_budget, aws_retry=True)
        except ClientError as exc:
            if not unsupported(exc):
                raise
            notifications, final_tags = recreate(
                client, account, after_budget, desired, before, current_tags, params, warn, arn
            )
            return True, before, view(after_budget, notifications, final_tags)
    for note in uncompared:
        warn(note)
    if changed and not check_mode:
        apply_notifications(client, account, desired["name"], plan)
        apply_tags(client, arn, to_set, to_remove)
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
                warn(
                    f"budget {name!r} was not deleted: its tags cannot be read on the stand-in "
                    "and its name does not start with the Project tag value "
                    f"{project!r} given in `tags`"
                )
                return False, before
            warn(W_ABSENT_BY_NAME.format(project=project))
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


def caller_account(module):
    sts = retrying_client(module, "sts")
    return sts.get_caller_identity(aws_retry=True)["Account"]


def ensure(module):
    """Glue: clients and the account from the module, then the state's functions, then the exit."""
    params = module.params
    desired = desired_state(params)
    account = params["account_id"] or caller_account(module)
    arn = budget_arn(module.region, account, params["name"])
    client = retrying_client(module, "budgets")
    identity = {"name": params["name"], "arn": arn, "account_id": account}
    if desired is None:
        changed, before = ensure_absent(
            client, account, arn, params, module.check_mode, module.warn
        )
        return result(module, changed, before, None, **identity)
    changed, before, after = ensure_present(
        client, account, arn, desired, params, module.check_mode, module.warn
    )
    returned = {
        k: after[k] for k in ("limit_amount", "limit_unit", "time_unit", "cost_filters", "tags")
    }
    returned["notifications"] = (
        desired["notifications"] if desired["notifications"] is not None else after["notifications"]
    )
    return result(module, changed, before, after, **identity, **returned)


def main():
    subscriber = dict(
        subscription_type=dict(type="str", required=True, choices=["SNS", "EMAIL"]),
        address=dict(type="str", required=True),
    )
    notification = dict(
        notification_type=dict(type="str", default="ACTUAL", choices=["ACTUAL", "FORECASTED"]),
        comparison_operator=dict(
            type="str", default="GREATER_THAN", choices=["GREATER_THAN", "LESS_THAN", "EQUAL_TO"]
        ),
        threshold=dict(type="float", required=True),
        threshold_type=dict(
            type="str", default="PERCENTAGE", choices=["PERCENTAGE", "ABSOLUTE_VALUE"]
        ),
        subscribers=dict(type="list", elements="dict", required=True, options=subscriber),
    )
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        limit_amount=dict(type="float"),
        limit_unit=dict(type="str", default="USD"),
        time_unit=dict(type="str", default="MONTHLY", choices=["MONTHLY", "QUARTERLY", "ANNUALLY"]),
        budget_type=dict(type="str", default="COST", choices=["COST"]),
        cost_filters=dict(type="dict"),
        notifications=dict(type="list", elements="dict", options=notification),
        account_id=dict(type="str"),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ["limit_amount"])],
        supports_check_mode=True,
    )
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

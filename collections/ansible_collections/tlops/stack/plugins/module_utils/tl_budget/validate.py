# Part of tl_budget (plugins/modules/tl_budget.py). Apache-2.0.
"""The input of tl_budget, checked and normalised (a Failure names the option)."""

from __future__ import annotations

import re

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure

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


def subscriber_key(subscriber):
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
        if subscriber_key(subscriber) in seen:
            raise Failure(f"{at}: {address!r} is given twice in this notification; give it once")
        seen.add(subscriber_key(subscriber))


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
            "subscribers": sorted(subscribers, key=subscriber_key),
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

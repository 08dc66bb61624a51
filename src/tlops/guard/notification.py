"""The budget's notification as it reaches the budget killer: an SNS event whose message is
the alert AWS Budgets wrote, and the same message written here for a simulated breach.

AWS Budgets publishes plain text to an SNS topic: a few sentences, then one `Name: value`
line per fact (`Budget Name:`, `Alert Type:`, `Budgeted Amount:`, `Alert Threshold:`,
`ACTUAL Amount:`). The parser reads those lines, and the same facts from a JSON object (as
some relays re-encode it); anything else is not a budget notification. Amounts carry the
currency symbol or code of the account's billing currency; only the number is kept.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z ]{1,40}?)\s*:\s*(.+?)\s*$", re.MULTILINE)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")
ALERT_TYPES = ("ACTUAL", "FORECASTED")


class NotAnAlert(ValueError):
    """The event or message is not a budget notification; the message says why."""


class BudgetAlert(NamedTuple):
    budget_name: str
    alert_type: str  # ACTUAL or FORECASTED
    budgeted: float | None  # the budget's limit when the alert was sent
    threshold: float | None  # the amount the alert fires above
    amount: float | None  # the actual (or forecasted) spend it reports
    account: str | None


class Delivery(NamedTuple):
    """One SNS record: where and when it was published, and the alert it carries."""

    message_id: str
    topic_arn: str
    sent_at: datetime
    alert: BudgetAlert


def _amount(text: Any) -> float | None:
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    found = _NUMBER.search(str(text or ""))
    return float(found.group().replace(",", "")) if found else None


def _key(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def parse_alert(message: str) -> BudgetAlert:
    """The facts of a budget notification's message (text or JSON). Raises NotAnAlert."""
    if not isinstance(message, str) or not message.strip():
        raise NotAnAlert("the message is empty")
    fields: dict[str, Any] = {}
    try:
        decoded = json.loads(message)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        fields = {_key(k): v for k, v in decoded.items()}
    else:
        fields = {_key(name): value for name, value in _LINE.findall(message)}
        if "awsaccount" not in fields:
            found = re.search(r"AWS Account\s+(\d{12})", message)
            fields["awsaccount"] = found.group(1) if found else None
    name = str(fields.get("budgetname") or "").strip()
    if not name:
        raise NotAnAlert("the message names no budget (no 'Budget Name:')")
    alert_type = str(fields.get("alerttype") or fields.get("notificationtype") or "")
    alert_type = alert_type.strip().upper()
    if alert_type not in ALERT_TYPES:
        raise NotAnAlert(
            f"the message's alert type {alert_type!r} is neither ACTUAL nor FORECASTED"
        )
    amount = fields.get(f"{alert_type.lower()}amount", fields.get("amount"))
    account = fields.get("awsaccount") or fields.get("accountid")
    return BudgetAlert(
        budget_name=name,
        alert_type=alert_type,
        budgeted=_amount(fields.get("budgetedamount")),
        threshold=_amount(fields.get("alertthreshold") or fields.get("threshold")),
        amount=_amount(amount),
        account=str(account) if account else None,
    )


def _sent_at(text: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise NotAnAlert(f"the SNS record's Timestamp {text!r} is not a time") from None


def deliveries(event: Any) -> tuple[list[Delivery], list[str]]:
    """The budget alerts an SNS event carries, and why each other record was left out."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        return [], ["the event is not an SNS event (no Records list)"]
    found, problems = [], []
    for index, record in enumerate(event["Records"]):
        where = f"record {index}"
        sns = record.get("Sns") if isinstance(record, dict) else None
        if not isinstance(sns, dict) or record.get("EventSource") != "aws:sns":
            problems.append(f"{where} is not an SNS record")
            continue
        try:
            alert = parse_alert(sns.get("Message", ""))
            sent_at = _sent_at(sns.get("Timestamp"))
        except NotAnAlert as exc:
            problems.append(f"{where}: {exc}")
            continue
        found.append(
            Delivery(str(sns.get("MessageId", "")), str(sns.get("TopicArn", "")), sent_at, alert)
        )
    return found, problems


# --- the message a breach would send (the simulation) ----------------------------------------
def _money(amount: float, unit: str) -> str:
    return f"${amount:,.2f}" if unit == "USD" else f"{amount:,.2f} {unit}"


def budget_message(
    *,
    budget_name: str,
    account: str,
    limit: float,
    unit: str,
    threshold_percent: float,
    spend: float,
    when: datetime,
    alert_type: str = "ACTUAL",
) -> str:
    """The text AWS Budgets sends to an SNS topic when `spend` passes the threshold."""
    threshold = limit * threshold_percent / 100
    return (
        f"AWS Budget Notification {when:%B %d, %Y}\n"
        f"AWS Account {account}\n\n"
        "Dear AWS Customer,\n\n"
        f"You requested that we alert you when the {alert_type} Cost associated with your "
        f"{budget_name} budget is greater than {_money(threshold, unit)} for the current "
        f"month. The {alert_type} Cost associated with this budget is {_money(spend, unit)}. "
        "You can find additional details below and by accessing the AWS Budgets dashboard [1].\n\n"
        f"Budget Name: {budget_name}\n"
        "Budget Type: Cost\n"
        f"Budgeted Amount: {_money(limit, unit)}\n"
        f"Alert Type: {alert_type}\n"
        f"Alert Threshold: > {_money(threshold, unit)}\n"
        f"{alert_type} Amount: {_money(spend, unit)}\n\n"
        "[1] https://console.aws.amazon.com/billing/home#/budgets\n"
    )


def sns_event(*, topic_arn: str, message_id: str, message: str, when: datetime) -> dict:
    """The event SNS hands a subscribed Lambda function for one published message."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic_arn}:{message_id}",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": message_id,
                    "TopicArn": topic_arn,
                    "Subject": "AWS Budgets: budget threshold exceeded",
                    "Message": message,
                    "Timestamp": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    "SignatureVersion": "1",
                    "MessageAttributes": {},
                },
            }
        ]
    }

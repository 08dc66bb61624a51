"""The budget's SNS notification: the text AWS Budgets sends (and the simulation writes) read
back fact by fact, the same facts from JSON, and every malformed shape refused by name."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tlops.guard import notification
from tlops.guard.notification import NotAnAlert, parse_alert

WHEN = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
TOPIC = "arn:aws:sns:eu-west-1:123456789012:tinyllama-budget-kill"


def message(**overrides):
    args = dict(budget_name="tinyllama-monthly", account="123456789012", limit=20.0,
                unit="USD", threshold_percent=105, spend=21.2, when=WHEN)  # fmt: skip
    return notification.budget_message(**{**args, **overrides})


def test_the_simulated_message_reads_like_aws_budgets_and_parses_back():
    text = message()
    assert text.startswith("AWS Budget Notification November 23, 2026\nAWS Account 123456789012")
    assert "Budget Name: tinyllama-monthly\n" in text
    assert "Alert Threshold: > $21.00\n" in text and "ACTUAL Amount: $21.20\n" in text
    alert = parse_alert(text)
    assert alert == notification.BudgetAlert(
        "tinyllama-monthly", "ACTUAL", 20.0, 21.0, 21.2, "123456789012"
    )


def test_other_currencies_and_thousands_separators():
    alert = parse_alert(message(unit="EUR", limit=2000, spend=2150.5))
    assert (alert.budgeted, alert.threshold, alert.amount) == (2000.0, 2100.0, 2150.5)


def test_a_forecast_alert_names_its_own_amount():
    alert = parse_alert(message(alert_type="FORECASTED", threshold_percent=75, spend=16))
    assert (alert.alert_type, alert.amount, alert.threshold) == ("FORECASTED", 16.0, 15.0)


def test_the_same_facts_as_json():
    alert = parse_alert(json.dumps({"budgetName": "b", "notificationType": "actual",
                                    "budgetedAmount": "20", "actualAmount": 25.5}))  # fmt: skip
    assert (alert.budget_name, alert.alert_type, alert.budgeted, alert.amount) == (
        "b",
        "ACTUAL",
        20.0,
        25.5,
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("hello there", "names no budget"),
        ("Budget Name: b\nAlert Type: MAYBE\n", "neither ACTUAL nor FORECASTED"),
        ("[1, 2]", "names no budget"),
    ],
)
def test_what_is_not_a_budget_alert_is_refused_by_name(text, why):
    with pytest.raises(NotAnAlert, match=why):
        parse_alert(text)


def test_an_sns_event_round_trips():
    event = notification.sns_event(topic_arn=TOPIC, message_id="m-1", message=message(), when=WHEN)
    (delivery,), problems = notification.deliveries(event)
    assert problems == []
    assert (delivery.message_id, delivery.topic_arn, delivery.sent_at) == ("m-1", TOPIC, WHEN)
    assert delivery.alert.budget_name == "tinyllama-monthly"


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (None, "not an SNS event"),
        ({"Records": "x"}, "not an SNS event"),
        ({"Records": [{"EventSource": "aws:s3", "Sns": {}}]}, "record 0 is not an SNS record"),
        ({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "hi"}}]}, "names no budget"),
        ({"Records": [{"EventSource": "aws:sns", "Sns": {
            "Message": "Budget Name: b\nAlert Type: ACTUAL", "Timestamp": "yesterday"}}]},
         "Timestamp 'yesterday' is not a time"),
    ],
)  # fmt: skip
def test_malformed_events_yield_no_delivery_and_say_why(event, why):
    found, problems = notification.deliveries(event)
    assert found == [] and why in problems[0]

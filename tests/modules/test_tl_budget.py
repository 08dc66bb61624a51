"""tl_budget: the stand-in's life cycle, bad input, and the AWS-only paths through a Stubber."""

from __future__ import annotations

import datetime as dt

import pytest
from ansible_collections.amazon.aws.plugins.module_utils import cloud
from botocore.stub import ANY

from .conftest import ACCOUNT_ID, STUB_ARGS
from .harness import ModuleFailed, code, run_module, warned

NAME = "tinyllama-monthly"
ARN = f"arn:aws:budgets::{ACCOUNT_ID}:budget/{NAME}"
SNS_WARN = f"arn:aws:sns:eu-west-1:{ACCOUNT_ID}:tinyllama-budget-warning"
SNS_KILL = f"arn:aws:sns:eu-west-1:{ACCOUNT_ID}:tinyllama-budget-killer"
EMAIL = {"subscription_type": "EMAIL", "address": "ops@example.com"}
WARN_75 = {
    "threshold": 75,
    "subscribers": [EMAIL, {"subscription_type": "SNS", "address": SNS_WARN}],
}
KILL_105 = {"threshold": 105, "subscribers": [{"subscription_type": "SNS", "address": SNS_KILL}]}
FORECAST_100 = {"notification_type": "FORECASTED", "threshold": 100, "subscribers": [EMAIL]}
TAGS = {"Project": "tinyllama", "Role": "guardrails"}
FILTERS = {"TagKeyValue": ["user:Project$tinyllama"]}

AWS_ARGS = STUB_ARGS

validate = code("tl_budget.validate")
gaps = code("tl_standin")


def budget_args(base, **over):
    return {
        **base,
        "name": NAME,
        "limit_amount": 20,
        "cost_filters": FILTERS,
        "notifications": [WARN_75, KILL_105],
        "tags": TAGS,
        **over,
    }


def described(aws):
    budgets = aws("budgets")
    budget = budgets.describe_budget(AccountId=ACCOUNT_ID, BudgetName=NAME)["Budget"]
    notifications = budgets.describe_notifications_for_budget(
        AccountId=ACCOUNT_ID, BudgetName=NAME
    )["Notifications"]
    keys = sorted(
        (n["NotificationType"], n["ComparisonOperator"], n["Threshold"], n["ThresholdType"])
        for n in notifications
    )
    return budget, keys


def names(aws):
    return [
        b["BudgetName"] for b in aws("budgets").describe_budgets(AccountId=ACCOUNT_ID)["Budgets"]
    ]


# --- the stand-in ------------------------------------------------------------------
def test_life_cycle_on_the_stand_in(aws_args, aws):
    planned = run_module("tl_budget", budget_args(aws_args), check=True)
    assert planned["changed"] is True
    assert planned["diff"]["before"] == {}
    assert planned["diff"]["after"]["limit_amount"] == 20.0
    assert names(aws) == []

    made = run_module("tl_budget", budget_args(aws_args))
    assert made["changed"] is True
    assert made["arn"] == ARN and made["account_id"] == ACCOUNT_ID
    assert made["limit_amount"] == 20.0 and made["limit_unit"] == "USD"
    assert made["notifications"][0] == {
        "notification_type": "ACTUAL",
        "comparison_operator": "GREATER_THAN",
        "threshold": 75.0,
        "threshold_type": "PERCENTAGE",
        "subscribers": [
            {"subscription_type": "EMAIL", "address": "ops@example.com"},
            {"subscription_type": "SNS", "address": SNS_WARN},
        ],
    }
    budget, keys = described(aws)
    assert float(budget["BudgetLimit"]["Amount"]) == 20.0
    assert budget["BudgetLimit"]["Unit"] == "USD"
    assert budget["TimeUnit"] == "MONTHLY" and budget["BudgetType"] == "COST"
    assert budget["CostFilters"] == FILTERS
    assert keys == [
        ("ACTUAL", "GREATER_THAN", 75.0, "PERCENTAGE"),
        ("ACTUAL", "GREATER_THAN", 105.0, "PERCENTAGE"),
    ]

    again = run_module("tl_budget", budget_args(aws_args))
    assert again["changed"] is False
    # The stand-in cannot list subscribers or tags: said, never silently claimed to match.
    assert warned(again, "cannot list subscribers")
    assert warned(again, "the subscribers of 2 existing notification(s) were not compared")
    assert warned(again, "cannot list budget tags")
    assert again["diff"]["before"] == again["diff"]["after"]

    changed = run_module("tl_budget", budget_args(aws_args, limit_amount=25))
    assert changed["changed"] is True
    assert warned(changed, gaps.text("budgets-no-update-budget"))
    assert not warned(changed, "not compared")  # re-created with exactly what was given
    assert changed["diff"]["before"]["limit_amount"] == 20.0
    assert changed["diff"]["after"]["limit_amount"] == 25.0
    budget, keys = described(aws)
    assert float(budget["BudgetLimit"]["Amount"]) == 25.0
    assert budget["CostFilters"] == FILTERS
    assert len(keys) == 2  # re-created with its notifications
    assert run_module("tl_budget", budget_args(aws_args, limit_amount=25))["changed"] is False

    deleting = run_module(
        "tl_budget", {**aws_args, "name": NAME, "state": "absent", "tags": TAGS}, check=True
    )
    assert deleting["changed"] is True
    assert names(aws) == [NAME]

    gone = run_module("tl_budget", {**aws_args, "name": NAME, "state": "absent", "tags": TAGS})
    assert gone["changed"] is True
    assert warned(gone, "deletion was scoped by name instead")
    assert gone["diff"]["before"]["limit_amount"] == 25.0
    assert names(aws) == []

    again = run_module("tl_budget", {**aws_args, "name": NAME, "state": "absent", "tags": TAGS})
    assert again["changed"] is False


def test_notifications_are_added_and_removed(aws_args, aws):
    run_module("tl_budget", budget_args(aws_args))

    added = run_module(
        "tl_budget", budget_args(aws_args, notifications=[WARN_75, KILL_105, FORECAST_100])
    )
    assert added["changed"] is True
    assert len(added["diff"]["before"]["notifications"]) == 2
    assert len(added["diff"]["after"]["notifications"]) == 3
    assert described(aws)[1] == [
        ("ACTUAL", "GREATER_THAN", 75.0, "PERCENTAGE"),
        ("ACTUAL", "GREATER_THAN", 105.0, "PERCENTAGE"),
        ("FORECASTED", "GREATER_THAN", 100.0, "PERCENTAGE"),
    ]

    removed = run_module("tl_budget", budget_args(aws_args, notifications=[WARN_75, FORECAST_100]))
    assert removed["changed"] is True
    assert described(aws)[1] == [
        ("ACTUAL", "GREATER_THAN", 75.0, "PERCENTAGE"),
        ("FORECASTED", "GREATER_THAN", 100.0, "PERCENTAGE"),
    ]
    assert (
        run_module("tl_budget", budget_args(aws_args, notifications=[WARN_75, FORECAST_100]))[
            "changed"
        ]
        is False
    )

    none = run_module("tl_budget", budget_args(aws_args, notifications=[]))
    assert none["changed"] is True
    assert described(aws)[1] == []


def test_time_unit_and_filters_change_on_the_stand_in(aws_args, aws):
    run_module("tl_budget", budget_args(aws_args))
    out = run_module(
        "tl_budget",
        budget_args(aws_args, time_unit="QUARTERLY", cost_filters={"Service": ["Amazon EC2"]}),
    )
    assert out["changed"] is True
    assert out["diff"]["before"]["cost_filters"] == FILTERS
    assert out["diff"]["after"]["time_unit"] == "QUARTERLY"
    budget, keys = described(aws)
    assert budget["TimeUnit"] == "QUARTERLY"
    assert budget["CostFilters"] == {"Service": ["Amazon EC2"]}
    assert len(keys) == 2


def test_a_change_without_notifications_is_refused_where_subscribers_cannot_be_read(aws_args, aws):
    run_module("tl_budget", budget_args(aws_args))
    args = budget_args(aws_args, limit_amount=30)
    del args["notifications"]
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_budget", args)
    assert "give `notifications`" in failed.value.result["msg"]
    budget, keys = described(aws)
    assert float(budget["BudgetLimit"]["Amount"]) == 20.0 and len(keys) == 2


def test_a_tag_change_on_the_stand_in_is_reported_as_not_compared(aws_args):
    run_module("tl_budget", budget_args(aws_args))
    out = run_module("tl_budget", budget_args(aws_args, tags={"Project": "tinyllama", "Role": "x"}))
    assert out["changed"] is False
    assert warned(out, "tags were not compared or changed")
    assert out["tags"] is None


def test_an_untagged_look_alike_is_never_deleted(aws_args, aws):
    aws("budgets").create_budget(
        AccountId=ACCOUNT_ID,
        Budget={
            "BudgetName": "someone-elses",
            "BudgetLimit": {"Amount": "5", "Unit": "USD"},
            "TimeUnit": "MONTHLY",
            "BudgetType": "COST",
        },
    )
    out = run_module(
        "tl_budget", {**aws_args, "name": "someone-elses", "state": "absent", "tags": TAGS}
    )
    assert out["changed"] is False
    assert warned(out, "was not deleted")
    assert names(aws) == ["someone-elses"]


# --- bad input -------------------------------------------------------------------------
def _with_notification(**over):
    return [{**WARN_75, **over}]


BAD_INPUT = {
    "threshold 0": (
        {"notifications": _with_notification(threshold=0)},
        "notifications[0].threshold",
    ),
    "11 subscribers": (
        {
            "notifications": _with_notification(
                subscribers=[
                    {"subscription_type": "EMAIL", "address": f"u{i}@example.com"}
                    for i in range(11)
                ]
            )
        },
        "notifications[0].subscribers: 11 subscribers",
    ),
    "bad e-mail": (
        {
            "notifications": _with_notification(
                subscribers=[{"subscription_type": "EMAIL", "address": "ops.example.com"}]
            )
        },
        "notifications[0].subscribers[0].address",
    ),
    "bad SNS ARN": (
        {
            "notifications": _with_notification(
                subscribers=[
                    {"subscription_type": "SNS", "address": "arn:aws:sqs:eu-west-1:123456789012:q"}
                ]
            )
        },
        "notifications[0].subscribers[0].address",
    ),
    "two SNS": (
        {
            "notifications": _with_notification(
                subscribers=[
                    {"subscription_type": "SNS", "address": SNS_WARN},
                    {"subscription_type": "SNS", "address": SNS_KILL},
                ]
            )
        },
        "at most one SNS topic",
    ),
    "limit 0": ({"limit_amount": 0}, "limit_amount"),
    "limit negative": ({"limit_amount": -5}, "limit_amount"),
    "same notification twice": (
        {"notifications": [WARN_75, {**WARN_75, "threshold": 75.0}]},
        "notifications[1]",
    ),
    "bad name": ({"name": "tiny:llama"}, "name:"),
    "bad account": ({"account_id": "12345"}, "account_id"),
    "filters not lists": (
        {"cost_filters": {"TagKeyValue": "user:Project$tinyllama"}},
        "cost_filters.TagKeyValue",
    ),
}


@pytest.mark.parametrize("over,named", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_fails_naming_the_option(stubbed, over, named):
    stubbed("budgets")  # nothing queued: any call would fail the test
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_budget", budget_args(AWS_ARGS, **{"account_id": ACCOUNT_ID, **over}))
    assert named in failed.value.result["msg"]


def test_present_needs_a_limit(stubbed):
    stubbed("budgets")
    args = budget_args(AWS_ARGS, account_id=ACCOUNT_ID)
    del args["limit_amount"]
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_budget", args)
    assert "limit_amount" in failed.value.result["msg"]


# --- the AWS path (Stubber) -----------------------------------------------------------------
START = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
END = dt.datetime(2087, 6, 15, tzinfo=dt.UTC)
WHERE = {"AccountId": ACCOUNT_ID, "BudgetName": NAME}
N75 = {
    "NotificationType": "ACTUAL",
    "ComparisonOperator": "GREATER_THAN",
    "Threshold": 75.0,
    "ThresholdType": "PERCENTAGE",
    "NotificationState": "OK",
}
N105 = {**N75, "Threshold": 105.0}
SUBS_75 = [
    {"SubscriptionType": "EMAIL", "Address": "ops@example.com"},
    {"SubscriptionType": "SNS", "Address": SNS_WARN},
]
SUBS_105 = [{"SubscriptionType": "SNS", "Address": SNS_KILL}]


def aws_budget(amount="20.0"):
    return {
        "BudgetName": NAME,
        "BudgetLimit": {"Amount": amount, "Unit": "USD"},
        "CostFilters": FILTERS,
        "TimeUnit": "MONTHLY",
        "TimePeriod": {"Start": START, "End": END},
        "BudgetType": "COST",
    }


def queue_reads(stub, notifications, tags=TAGS, amount="20.0"):
    """describe_budget, its notifications, each one's subscribers, and its tags."""
    stub.add_response("describe_budget", {"Budget": aws_budget(amount)}, WHERE)
    stub.add_response(
        "describe_notifications_for_budget",
        {"Notifications": [n for n, _ in notifications]},
        WHERE,
    )
    for notification, subscribers in notifications:
        stub.add_response(
            "describe_subscribers_for_notification",
            {"Subscribers": subscribers},
            {**WHERE, "Notification": notification},
        )
    if tags is not None:
        stub.add_response(
            "list_tags_for_resource",
            {"ResourceTags": [{"Key": k, "Value": v} for k, v in tags.items()]},
            {"ResourceARN": ARN},
        )


def stub_args(**over):
    return budget_args(AWS_ARGS, account_id=ACCOUNT_ID, **over)


def test_aws_in_sync_is_no_change(stubbed):
    stub = stubbed("budgets")
    queue_reads(stub, [(N75, SUBS_75), (N105, SUBS_105)])
    out = run_module("tl_budget", stub_args())
    assert out["changed"] is False
    assert not out.get("warnings")
    assert out["tags"] == TAGS


def test_aws_limit_change_updates_in_place(stubbed):
    stub = stubbed("budgets")
    queue_reads(stub, [(N75, SUBS_75), (N105, SUBS_105)])
    new = {**aws_budget(), "BudgetLimit": {"Amount": "25", "Unit": "USD"}}
    stub.add_response("update_budget", {}, {"AccountId": ACCOUNT_ID, "NewBudget": new})
    out = run_module("tl_budget", stub_args(limit_amount=25))  # no delete_budget queued
    assert out["changed"] is True
    assert (out["diff"]["before"]["limit_amount"], out["diff"]["after"]["limit_amount"]) == (20, 25)
    assert not out.get("warnings")


def test_aws_check_mode_writes_nothing(stubbed):
    stub = stubbed("budgets")
    queue_reads(stub, [(N75, SUBS_75), (N105, SUBS_105)])
    out = run_module(
        "tl_budget", stub_args(limit_amount=25, tags={"Project": "tinyllama"}), check=True
    )
    assert out["changed"] is True
    assert out["diff"]["after"]["tags"] == {"Project": "tinyllama"}


def test_aws_added_notification_uses_create_notification(stubbed):
    stub = stubbed("budgets")
    queue_reads(stub, [(N75, SUBS_75), (N105, SUBS_105)])
    stub.add_response(
        "create_notification",
        {},
        {
            **WHERE,
            "Notification": {
                "NotificationType": "FORECASTED",
                "ComparisonOperator": "GREATER_THAN",
                "Threshold": 100.0,
                "ThresholdType": "PERCENTAGE",
            },
            "Subscribers": [{"SubscriptionType": "EMAIL", "Address": "ops@example.com"}],
        },
    )
    out = run_module("tl_budget", stub_args(notifications=[WARN_75, KILL_105, FORECAST_100]))
    assert out["changed"] is True
    assert len(out["notifications"]) == 3


def test_aws_removed_notification_uses_delete_notification(stubbed):
    stub = stubbed("budgets")
    queue_reads(stub, [(N75, SUBS_75), (N105, SUBS_105)])
    stub.add_response("delete_notification", {}, {**WHERE, "Notification": N105})
    out = run_module("tl_budget", stub_args(notifications=[WARN_75]))
    assert out["changed"] is True
    assert [n["threshold"] for n in out["diff"]["after"]["notifications"]] == [75.0]


def test_aws_changed_subscribers_use_create_and_delete_subscriber(stubbed):
    stub = stubbed("budgets")
    queue_reads(stub, [(N75, SUBS_75), (N105, SUBS_105)])
    stub.add_response(
        "delete_subscriber",
        {},
        {
            **WHERE,
            "Notification": N75,
            "Subscriber": {"SubscriptionType": "SNS", "Address": SNS_WARN},
        },
    )
    stub.add_response(
        "create_subscriber",
        {},
        {
            **WHERE,
            "Notification": N75,
            "Subscriber": {"SubscriptionType": "EMAIL", "Address": "dev@example.com"},
        },
    )
    warn = {
        "threshold": 75,
        "subscribers": [EMAIL, {"subscription_type": "EMAIL", "address": "dev@example.com"}],
    }
    out = run_module("tl_budget", stub_args(notifications=[warn, KILL_105]))
    assert out["changed"] is True
    before = out["diff"]["before"]["notifications"][0]["subscribers"]
    after = out["diff"]["after"]["notifications"][0]["subscribers"]
    assert {s["address"] for s in before} == {"ops@example.com", SNS_WARN}
    assert {s["address"] for s in after} == {"ops@example.com", "dev@example.com"}


def test_aws_subscribers_all_replaced_re_creates_the_notification(stubbed):
    # Deleting a notification's last subscriber deletes the notification itself.
    stub = stubbed("budgets")
    queue_reads(stub, [(N75, SUBS_75), (N105, SUBS_105)])
    other = f"arn:aws:sns:eu-west-1:{ACCOUNT_ID}:other-killer"
    stub.add_response("delete_notification", {}, {**WHERE, "Notification": N105})
    stub.add_response(
        "create_notification",
        {},
        {
            **WHERE,
            "Notification": {k: v for k, v in N105.items() if k != "NotificationState"},
            "Subscribers": [{"SubscriptionType": "SNS", "Address": other}],
        },
    )
    kill = {"threshold": 105, "subscribers": [{"subscription_type": "SNS", "address": other}]}
    assert run_module("tl_budget", stub_args(notifications=[WARN_75, kill]))["changed"] is True


def test_aws_tags_are_set_and_purged(stubbed):
    stub = stubbed("budgets")
    queue_reads(stub, [(N75, SUBS_75), (N105, SUBS_105)], tags={**TAGS, "Old": "yes"})
    stub.add_response("untag_resource", {}, {"ResourceARN": ARN, "ResourceTagKeys": ["Old"]})
    stub.add_response(
        "tag_resource",
        {},
        {"ResourceARN": ARN, "ResourceTags": [{"Key": "Role", "Value": "budget"}]},
    )
    out = run_module("tl_budget", stub_args(tags={"Project": "tinyllama", "Role": "budget"}))
    assert out["changed"] is True
    assert out["tags"] == {"Project": "tinyllama", "Role": "budget"}
    assert out["diff"]["before"]["tags"] == {**TAGS, "Old": "yes"}


def test_aws_tags_kept_without_purge(stubbed):
    stub = stubbed("budgets")
    queue_reads(stub, [(N75, SUBS_75), (N105, SUBS_105)], tags={**TAGS, "Old": "yes"})
    out = run_module("tl_budget", stub_args(purge_tags=False))
    assert out["changed"] is False


def test_aws_create_sends_notifications_subscribers_and_tags(stubbed):
    stub = stubbed("budgets")
    stub.add_client_error(
        "describe_budget", "NotFoundException", "no budget", 404, expected_params=WHERE
    )
    stub.add_response(
        "create_budget",
        {},
        {
            "AccountId": ACCOUNT_ID,
            "Budget": {
                "BudgetName": NAME,
                "BudgetLimit": {"Amount": "20", "Unit": "USD"},
                "TimeUnit": "MONTHLY",
                "BudgetType": "COST",
                "CostFilters": FILTERS,
            },
            "NotificationsWithSubscribers": [
                {
                    "Notification": {k: v for k, v in N75.items() if k != "NotificationState"},
                    "Subscribers": SUBS_75,
                },
                {
                    "Notification": {k: v for k, v in N105.items() if k != "NotificationState"},
                    "Subscribers": SUBS_105,
                },
            ],
            "ResourceTags": ANY,
        },
    )
    out = run_module("tl_budget", stub_args())
    assert out["changed"] is True and out["diff"]["before"] == {}


def test_aws_throttling_then_success(stubbed, monkeypatch):
    slept = []
    # The backoff sleeps through amazon.aws' cloud module; record the sleeps instead of waiting.
    monkeypatch.setattr(cloud.time, "sleep", slept.append)
    stub = stubbed("budgets")
    stub.add_client_error("describe_budget", "ThrottlingException", "Rate exceeded", 400)
    stub.add_client_error("describe_budget", "ThrottlingException", "Rate exceeded", 400)
    queue_reads(stub, [(N75, SUBS_75), (N105, SUBS_105)])
    out = run_module("tl_budget", stub_args())
    assert out["changed"] is False
    assert len(slept) == 2  # backed off twice, then read the budget


def test_aws_account_defaults_to_the_caller(stubbed):
    sts = stubbed("sts")
    sts.add_response(
        "get_caller_identity",
        {"Account": "210987654321", "Arn": "arn:aws:iam::210987654321:user/ops", "UserId": "X"},
    )
    stub = stubbed("budgets")
    stub.add_client_error(
        "describe_budget",
        "NotFoundException",
        "no budget",
        404,
        expected_params={"AccountId": "210987654321", "BudgetName": NAME},
    )
    out = run_module("tl_budget", {**AWS_ARGS, "name": NAME, "state": "absent", "tags": TAGS})
    assert out["changed"] is False
    assert out["account_id"] == "210987654321"
    assert out["arn"] == f"arn:aws:budgets::210987654321:budget/{NAME}"


def test_aws_absent_deletes_only_when_tagged(stubbed):
    stub = stubbed("budgets")
    stub.add_response("describe_budget", {"Budget": aws_budget()}, WHERE)
    stub.add_response("describe_notifications_for_budget", {"Notifications": []}, WHERE)
    stub.add_response(
        "list_tags_for_resource",
        {"ResourceTags": [{"Key": "Project", "Value": "other"}]},
        {"ResourceARN": ARN},
    )
    out = run_module(
        "tl_budget",
        {**AWS_ARGS, "name": NAME, "state": "absent", "tags": TAGS, "account_id": ACCOUNT_ID},
    )
    assert out["changed"] is False
    assert warned(out, "was not deleted")

    stub.add_response("describe_budget", {"Budget": aws_budget()}, WHERE)
    stub.add_response("describe_notifications_for_budget", {"Notifications": []}, WHERE)
    stub.add_response(
        "list_tags_for_resource",
        {"ResourceTags": [{"Key": k, "Value": v} for k, v in TAGS.items()]},
        {"ResourceARN": ARN},
    )
    stub.add_response("delete_budget", {}, WHERE)
    out = run_module(
        "tl_budget",
        {**AWS_ARGS, "name": NAME, "state": "absent", "tags": TAGS, "account_id": ACCOUNT_ID},
    )
    assert out["changed"] is True
    assert out["diff"]["before"]["tags"] == TAGS


def test_aws_refuses_a_budget_of_another_type(stubbed):
    stub = stubbed("budgets")
    stub.add_response("describe_budget", {"Budget": {**aws_budget(), "BudgetType": "USAGE"}}, WHERE)
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_budget", stub_args())
    assert "budget type 'USAGE'" in failed.value.result["msg"]


# --- pure helpers ------------------------------------------------------------------------
def test_amounts_are_written_without_exponent():
    assert validate.amount_text(20.0) == "20"
    assert validate.amount_text(20.5) == "20.5"
    assert validate.amount_text(1e-3) == "0.001"
    assert validate.amount_text(1e12) == "1000000000000"

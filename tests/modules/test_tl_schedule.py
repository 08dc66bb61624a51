"""tl_schedule: a wake schedule's life cycle on the stand-in, wake and sleep side by side, the
project's mark on deletion, what CreateSchedule would refuse (refused before any call, naming
the option), and through a Stubber the calls AWS gets (an update carrying what the module does
not manage, throttling).

Expected values come from AWS's documentation: the expression forms and cron examples from
"Schedule types" (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html)
and EventBridge's cron reference (https://docs.aws.amazon.com/eventbridge/latest/userguide/
eb-cron-expressions.html), the limits from the API reference
(https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html,
API_Target.html, API_RetryPolicy.html, API_FlexibleTimeWindow.html), the ARN format from the
Service Authorization Reference (https://docs.aws.amazon.com/service-authorization/latest/
reference/list_amazoneventbridgescheduler.html).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from ansible_collections.amazon.aws.plugins.module_utils import cloud
from botocore.exceptions import ClientError

from .conftest import ACCOUNT_ID, REGION, STUB_ARGS
from .harness import ModuleFailed, code, run_module, warned

expression = code("tl_schedule.expression")

NAME = "tinyllama-wake"
PROJECT = {"Project": "tinyllama"}
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:tinyllama-wake"
OTHER_FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:someone-elses"
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/tinyllama-scheduler"
# arn:${Partition}:scheduler:${Region}:${Account}:schedule/${GroupName}/${ScheduleName}
ARN = f"arn:aws:scheduler:{REGION}:{ACCOUNT_ID}:schedule/default/{NAME}"
# RetryPolicy's largest values (API_RetryPolicy), which the module sends unless told otherwise
MOST_RETRIES = {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}


def wake(base, **over):
    return {
        **base,
        "name": NAME,
        "description": "Start the GPU node before the working day",
        "schedule_expression": "cron(0 8 ? * MON-FRI *)",
        "schedule_expression_timezone": "Europe/Berlin",
        "target": {"arn": FUNCTION, "role_arn": ROLE, "input": {"action": "wake"}},
        "tags": PROJECT,
        **over,
    }


def gone(base, name=NAME, **over):
    return {**base, "name": name, "state": "absent", "tags": PROJECT, **over}


def stored(aws, name=NAME, group="default"):
    try:
        return aws("scheduler").get_schedule(Name=name, GroupName=group)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


def test_life_cycle_on_the_stand_in(aws_args, aws):
    planned = run_module("tl_schedule", wake(aws_args), check=True)
    assert planned["changed"] is True and planned["schedule_arn"] is None
    assert stored(aws) is None

    made = run_module("tl_schedule", wake(aws_args))
    assert made["changed"] is True
    assert (made["schedule_arn"], made["name"], made["group_name"]) == (ARN, NAME, "default")
    schedule = stored(aws)
    assert schedule["ScheduleExpression"] == "cron(0 8 ? * MON-FRI *)"
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert schedule["State"] == "ENABLED"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert (schedule["Target"]["Arn"], schedule["Target"]["RoleArn"]) == (FUNCTION, ROLE)
    assert json.loads(schedule["Target"]["Input"]) == {"action": "wake"}
    assert schedule["Target"]["RetryPolicy"] == MOST_RETRIES
    assert made["diff"]["before"] == {}
    assert made["diff"]["after"]["target"]["input"] == {"action": "wake"}
    assert made["diff"]["after"]["schedule_expression_timezone"] == "Europe/Berlin"

    again = run_module("tl_schedule", wake(aws_args))
    assert again["changed"] is False and again["schedule_arn"] == ARN

    later = wake(
        aws_args,
        schedule_expression="cron(30 7 ? * MON-FRI *)",
        enabled=False,
        target={"arn": FUNCTION, "role_arn": ROLE, "input": {"action": "wake", "idle": 30}},
    )
    assert run_module("tl_schedule", later, check=True)["changed"] is True
    assert stored(aws)["ScheduleExpression"] == "cron(0 8 ? * MON-FRI *)"
    moved = run_module("tl_schedule", later)
    assert moved["changed"] is True
    before, after = moved["diff"]["before"], moved["diff"]["after"]
    assert (before["schedule_expression"], after["schedule_expression"]) == (
        "cron(0 8 ? * MON-FRI *)",
        "cron(30 7 ? * MON-FRI *)",
    )
    assert (before["enabled"], after["enabled"]) == (True, False)
    assert after["target"]["input"] == {"action": "wake", "idle": 30}
    schedule = stored(aws)
    assert (schedule["ScheduleExpression"], schedule["State"]) == (
        "cron(30 7 ? * MON-FRI *)",
        "DISABLED",
    )
    assert json.loads(schedule["Target"]["Input"]) == {"action": "wake", "idle": 30}
    assert run_module("tl_schedule", later)["changed"] is False

    assert run_module("tl_schedule", gone(aws_args), check=True)["changed"] is True
    assert stored(aws) is not None
    deleted = run_module("tl_schedule", gone(aws_args))
    assert deleted["changed"] is True and deleted["diff"]["after"] == {}
    assert deleted["diff"]["before"]["schedule_expression"] == "cron(30 7 ? * MON-FRI *)"
    assert stored(aws) is None
    assert run_module("tl_schedule", gone(aws_args))["changed"] is False


def test_wake_and_sleep_side_by_side(aws_args, aws):
    sleep = wake(
        aws_args,
        name="tinyllama-sleep",
        description="Stop the GPU node after the working day",
        schedule_expression="cron(0 19 ? * MON-FRI *)",
        flexible_time_window={"mode": "FLEXIBLE", "maximum_window_in_minutes": 5},
        target={"arn": FUNCTION, "role_arn": ROLE, "input": '{"action": "sleep"}'},
    )
    assert run_module("tl_schedule", wake(aws_args))["changed"] is True
    assert run_module("tl_schedule", sleep)["changed"] is True
    asleep = stored(aws, "tinyllama-sleep")
    assert asleep["Target"]["Input"] == '{"action": "sleep"}'  # a string is sent as it is
    assert asleep["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 5}
    assert json.loads(stored(aws)["Target"]["Input"]) == {"action": "wake"}

    # The same input as a dict, or with other spacing: the same JSON, no change.
    as_dict = {**sleep, "target": {**sleep["target"], "input": {"action": "sleep"}}}
    assert run_module("tl_schedule", as_dict)["changed"] is False
    assert run_module("tl_schedule", wake(aws_args))["changed"] is False


def test_a_schedule_calling_another_target_is_left_alone(aws_args, aws):
    run_module("tl_schedule", wake(aws_args))
    kept = run_module("tl_schedule", gone(aws_args, require_target_arn=OTHER_FUNCTION))
    assert kept["changed"] is False and warned(kept, "was left alone")
    assert stored(aws) is not None
    deleted = run_module("tl_schedule", gone(aws_args, require_target_arn=FUNCTION))
    assert deleted["changed"] is True
    assert stored(aws) is None


def test_only_a_schedule_named_after_the_project_is_deleted(aws_args, aws):
    aws("scheduler").create_schedule(
        Name="wake", ScheduleExpression="rate(1 day)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": FUNCTION, "RoleArn": ROLE},
    )  # fmt: skip
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_schedule", gone(aws_args, name="wake"))
    assert "name 'wake' must start with 'tinyllama-'" in failed.value.result["msg"]
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_schedule", {**aws_args, "name": "wake", "state": "absent"})
    assert "state=absent needs tags with at least Project" in failed.value.result["msg"]
    assert stored(aws, "wake") is not None


def test_a_group_must_exist_and_is_used_when_it_does(aws_args, aws):
    for check in (True, False):
        with pytest.raises(ModuleFailed) as failed:
            run_module("tl_schedule", wake(aws_args, group_name="tinyllama"), check=check)
        assert "group_name 'tinyllama': no such schedule group" in failed.value.result["msg"]
    aws("scheduler").create_schedule_group(
        Name="tinyllama", Tags=[{"Key": "Project", "Value": "tinyllama"}]
    )
    made = run_module("tl_schedule", wake(aws_args, group_name="tinyllama"))
    assert made["schedule_arn"].endswith(f":schedule/tinyllama/{NAME}")
    assert stored(aws, group="tinyllama") is not None and stored(aws) is None
    gone_args = gone(aws_args, group_name="tinyllama")
    assert run_module("tl_schedule", gone_args)["changed"] is True
    assert stored(aws, group="tinyllama") is None


@pytest.mark.parametrize(
    ("over", "words"),
    [
        # Unix cron's five fields: EventBridge Scheduler's have a sixth, the year.
        ({"schedule_expression": "cron(0 8 * * MON-FRI)"}, "six fields"),
        ({"schedule_expression": "cron(0 8 * * MON-FRI *)"}, "exactly one of day-of-month"),
        ({"schedule_expression": "cron(0 8 ? * ? *)"}, "exactly one of day-of-month"),
        ({"schedule_expression": "cron(0 24 ? * MON-FRI *)"}, "hours field '24'"),
        ({"schedule_expression": "cron(0 8 ? * MON-FRY *)"}, "day-of-week field 'MON-FRY'"),
        ({"schedule_expression": "cron(0 8 ? * MON-FRI 2200)"}, "year field '2200'"),
        ({"schedule_expression": "rate(0 minutes)"}, "positive whole number"),
        ({"schedule_expression": "rate(1 week)"}, "minute(s), hour(s) or day(s)"),
        ({"schedule_expression": "at(2030-02-30T08:00:00)"}, "at(yyyy-mm-ddThh:mm:ss)"),
        ({"schedule_expression": "0 8 * * 1-5"}, "a cron(), rate() or at() expression"),
        ({"schedule_expression": None}, "schedule_expression is required"),
    ],
)
def test_a_bad_expression_is_refused_naming_the_option(aws_args, aws, over, words):
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_schedule", wake(aws_args, **over))
    message = failed.value.result["msg"]
    assert message.startswith("schedule_expression") and words in message
    if over["schedule_expression"]:
        assert "e.g. cron(0 8 ? * MON-FRI *)" in message  # and shows what would do
    assert stored(aws) is None


@pytest.mark.parametrize("zone", ["Berlin", "europe/berlin", "CEST", "Europe/Berlin ", ""])
def test_a_bad_time_zone_is_refused_naming_the_option(aws_args, aws, zone):
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_schedule", wake(aws_args, schedule_expression_timezone=zone))
    message = failed.value.result["msg"]
    assert message.startswith(f"schedule_expression_timezone {zone!r}")
    assert "Europe/Berlin" in message and "IANA" in message
    assert stored(aws) is None


def target(**over):
    return {"arn": FUNCTION, "role_arn": ROLE, "input": {"action": "wake"}, **over}


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"name": "tinyllama-" + "w" * 55}, "name 'tinyllama-www"),  # 65 characters, over 64
        ({"name": "tinyllama wake"}, "1 to 64 letters, digits"),
        ({"group_name": "tiny/llama"}, "group_name 'tiny/llama' must be 1 to 64"),
        ({"description": "x" * 513}, "description is 513 characters"),
        ({"target": None}, "target is required"),
        ({"target": target(role_arn="tinyllama-scheduler")}, "target.role_arn"),
        ({"target": target(input="wake")}, "target.input 'wake' is not well-formed JSON"),
        ({"target": target(input="")}, "target.input is empty"),
        (
            {"target": target(retry_policy={"maximum_retry_attempts": 186})},
            "target.retry_policy.maximum_retry_attempts must be 0 to 185, got 186",
        ),
        (
            {"target": target(retry_policy={"maximum_event_age_in_seconds": 59})},
            "target.retry_policy.maximum_event_age_in_seconds must be 60 to 86400, got 59",
        ),
        (
            {"target": target(dead_letter_arn=f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:dlq")},
            "target.dead_letter_arn",
        ),
        (
            {"flexible_time_window": {"mode": "FLEXIBLE"}},
            "flexible_time_window.maximum_window_in_minutes must be 1 to 1440",
        ),
        (
            {"flexible_time_window": {"mode": "FLEXIBLE", "maximum_window_in_minutes": 1441}},
            "flexible_time_window.maximum_window_in_minutes must be 1 to 1440",
        ),
        (
            {"flexible_time_window": {"mode": "OFF", "maximum_window_in_minutes": 5}},
            "applies only with mode FLEXIBLE",
        ),
    ],
)
def test_what_aws_would_refuse_is_refused_before_any_call(aws_args, aws, over, words):
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_schedule", wake(aws_args, **over))
    assert words in failed.value.result["msg"]
    assert stored(aws) is None


@pytest.mark.parametrize(
    "text",
    [
        # cron examples of AWS's documentation
        "cron(0 10 * * ? *)",
        "cron(15 12 * * ? *)",
        "cron(0 18 ? * MON-FRI *)",
        "cron(0 8 1 * ? *)",
        "cron(0/15 * * * ? *)",
        "cron(0/10 * ? * MON-FRI *)",
        "cron(0/5 8-17 ? * MON-FRI *)",
        "cron(0 9 ? * 2#1 *)",
        "cron(15 10 ? * 6L 2022-2023)",
        "cron(0 0 L * ? *)",
        "cron(0 0 3W * ? *)",
        "cron(0 8 ? JAN,FEB,MAR MON-FRI *)",
        # rate and one-time forms
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(12 hours)",
        "rate(1 day)",
        "at(2022-11-20T13:00:00)",
    ],
)
def test_the_documented_expressions_are_taken(text):
    expression.check_expression(text)


# --- AWS, through a Stubber ----------------------------------------------------------------
def aws_schedule(**over):
    """A GetSchedule answer for the wake schedule as the module would have written it."""
    return {
        "Arn": ARN,
        "Name": NAME,
        "GroupName": "default",
        "Description": "Start the GPU node before the working day",
        "ScheduleExpression": "cron(0 8 ? * MON-FRI *)",
        "ScheduleExpressionTimezone": "Europe/Berlin",
        "State": "ENABLED",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": FUNCTION,
            "RoleArn": ROLE,
            "Input": '{"action":"wake"}',
            "RetryPolicy": MOST_RETRIES,
        },
        **over,
    }


def test_aws_an_update_sends_again_what_the_module_does_not_manage(stubbed):
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:tinyllama-wake.fifo"
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    past = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    key = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    current = aws_schedule(
        KmsKeyArn=key,
        StartDate=past,
        EndDate=soon,
        ActionAfterCompletion="NONE",
        Target={
            "Arn": queue,
            "RoleArn": ROLE,
            "Input": "wake",
            "RetryPolicy": MOST_RETRIES,
            "SqsParameters": {"MessageGroupId": "node"},
        },
    )
    stub = stubbed("scheduler")
    stub.add_response("get_schedule", current, {"Name": NAME, "GroupName": "default"})
    stub.add_response(
        "update_schedule",
        {"ScheduleArn": ARN},
        {
            "Name": NAME,
            "GroupName": "default",
            "Description": "Start the GPU node before the working day",
            "ScheduleExpression": "cron(30 7 ? * MON-FRI *)",
            "ScheduleExpressionTimezone": "Europe/Berlin",
            "State": "ENABLED",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": queue,
                "RoleArn": ROLE,
                "Input": "wake",
                "RetryPolicy": MOST_RETRIES,
                "SqsParameters": {"MessageGroupId": "node"},
            },
            "KmsKeyArn": key,
            "EndDate": soon,
            "ActionAfterCompletion": "NONE",
        },  # no StartDate: it is past
    )
    args = wake(
        STUB_ARGS,
        schedule_expression="cron(30 7 ? * MON-FRI *)",
        target={"arn": queue, "role_arn": ROLE, "input": "wake"},
    )
    updated = run_module("tl_schedule", args)
    assert updated["changed"] is True and updated["schedule_arn"] == ARN


def test_aws_a_new_schedule_is_created_with_every_field(stubbed):
    stub = stubbed("scheduler")
    stub.add_client_error("get_schedule", "ResourceNotFoundException", "Schedule not found", 404)
    stub.add_response("get_schedule_group", {"Name": "default", "State": "ACTIVE"},
                      {"Name": "default"})  # fmt: skip
    stub.add_response(
        "create_schedule",
        {"ScheduleArn": ARN},
        {k: v for k, v in aws_schedule().items() if k != "Arn"},  # what GetSchedule returns
    )
    made = run_module("tl_schedule", wake(STUB_ARGS))
    assert made["changed"] is True and made["schedule_arn"] == ARN


def test_aws_throttling_then_success(stubbed, monkeypatch):
    slept = []
    # The backoff sleeps through amazon.aws' cloud module; record the sleeps instead of waiting.
    monkeypatch.setattr(cloud.time, "sleep", slept.append)
    stub = stubbed("scheduler")
    stub.add_client_error("get_schedule", "ThrottlingException", "Rate exceeded", 400)
    stub.add_client_error("get_schedule", "ThrottlingException", "Rate exceeded", 400)
    stub.add_response("get_schedule", aws_schedule())
    out = run_module("tl_schedule", wake(STUB_ARGS))
    assert out["changed"] is False
    assert len(slept) == 2  # backed off twice, then read the schedule


def test_aws_absent_deletes_the_named_schedule_in_its_group(stubbed):
    stub = stubbed("scheduler")
    stub.add_response("get_schedule", aws_schedule(), {"Name": NAME, "GroupName": "default"})
    stub.add_response("delete_schedule", {}, {"Name": NAME, "GroupName": "default"})
    deleted = run_module("tl_schedule", gone(STUB_ARGS, require_target_arn=FUNCTION))
    assert deleted["changed"] is True and deleted["schedule_arn"] == ARN

# Part of tl_schedule (plugins/modules/tl_schedule.py). Apache-2.0.
"""The input of tl_schedule checked as EventBridge Scheduler checks it (a Failure names the
option and shows a good value), and the CreateSchedule request it asks for.

The limits are those of the API reference; each is cited where it is encoded. The local
stand-in checks none of them.
"""

from __future__ import annotations

import json
import re

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure
from ansible_collections.tlops.stack.plugins.module_utils.tl_schedule.expression import (
    check_expression,
    check_timezone,
)

# Name and GroupName: 1 to 64 letters, digits, '.', '_' or '-'; Description: at most 512
# characters (https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html).
_NAME = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
MAX_DESCRIPTION = 512

# Target: an ARN of 1 to 1600 characters, a role ARN of the pattern below, an Input of at most
# 256 KB that must be well-formed JSON for a templated Lambda, Step Functions or EventBridge
# target (https://docs.aws.amazon.com/scheduler/latest/APIReference/API_Target.html).
MAX_ARN = 1600
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
MAX_INPUT_BYTES = 256 * 1024
_JSON_TARGET = re.compile(r"^arn:aws[a-z-]*:(lambda|states|events):")

# DeadLetterConfig: a standard SQS queue's ARN
# (https://docs.aws.amazon.com/scheduler/latest/APIReference/API_DeadLetterConfig.html).
_QUEUE_ARN = re.compile(r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$")

# RetryPolicy: 60 to 86400 seconds, 0 to 185 retries
# (https://docs.aws.amazon.com/scheduler/latest/APIReference/API_RetryPolicy.html). The module
# always sends a policy, by default the most of each, so nothing depends on what AWS would
# fill in for a policy left out.
EVENT_AGE = (60, 86400)
RETRY_ATTEMPTS = (0, 185)

# FlexibleTimeWindow: OFF, or FLEXIBLE within 1 to 1440 minutes
# (https://docs.aws.amazon.com/scheduler/latest/APIReference/API_FlexibleTimeWindow.html).
WINDOW_MINUTES = (1, 1440)

LAMBDA_EXAMPLE = "{arn: <the function's ARN>, role_arn: <a role EventBridge Scheduler assumes>}"


def check(params):
    """What both states need (the names, the project's mark), and for present the rest."""
    name, group = params["name"], params["group_name"]
    _check_name("name", name)
    _check_name("group_name", group)
    project = (params["tags"] or {}).get("Project")
    if project and not name.startswith(f"{project}-"):
        raise Failure(
            f"name {name!r} must start with '{project}-' (tags' Project and a dash): a schedule "
            "carries no tags (EventBridge Scheduler tags only schedule groups), so its name is "
            "how teardown knows it is the project's"
        )
    if params["state"] == "present":
        desired(params)


def desired(params):
    """The CreateSchedule request for state=present (UpdateSchedule takes the same fields)."""
    expression = params["schedule_expression"]
    if not expression:
        raise Failure(
            "schedule_expression is required when state=present, e.g. cron(0 8 ? * MON-FRI *)"
        )
    check_expression(expression)
    zone = params["schedule_expression_timezone"]
    check_timezone(zone)
    if not params["target"]:
        raise Failure(f"target is required when state=present: {LAMBDA_EXAMPLE}")
    description = params["description"] or ""
    if len(description) > MAX_DESCRIPTION:
        raise Failure(
            f"description is {len(description)} characters, over EventBridge Scheduler's "
            f"{MAX_DESCRIPTION}: shorten it"
        )
    request = {
        "Name": params["name"],
        "GroupName": params["group_name"],
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": zone,
        "State": "ENABLED" if params["enabled"] else "DISABLED",
        "FlexibleTimeWindow": _window(params["flexible_time_window"]),
        "Target": _target(params["target"]),
    }
    if description:
        request["Description"] = description
    return request


def input_text(value, target_arn):
    """The Target's Input: a string as given, anything else as compact JSON; None for none."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value:
            raise Failure(
                "target.input is empty: leave it out (the target then gets EventBridge "
                "Scheduler's own notification) or give a dict, e.g. input: {action: wake}"
            )
        text = value
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    size = len(text.encode("utf-8"))
    if size > MAX_INPUT_BYTES:
        raise Failure(f"target.input is {size} bytes, over the {MAX_INPUT_BYTES} (256 KB) allowed")
    if _JSON_TARGET.match(target_arn):
        try:
            json.loads(text)
        except ValueError:
            raise Failure(
                f"target.input {text[:80]!r} is not well-formed JSON, which a Lambda, Step "
                "Functions or EventBridge target requires: give it as a dict, e.g. "
                "input: {action: wake}"
            ) from None
    return text


def _check_name(option, value):
    if not _NAME.match(value or ""):
        raise Failure(
            f"{option} {value!r} must be 1 to 64 letters, digits, '.', '_' or '-' "
            "(e.g. tinyllama-wake)"
        )


def _window(window):
    window = window or {}
    mode = window.get("mode") or "OFF"
    minutes = window.get("maximum_window_in_minutes")
    if mode == "OFF":
        if minutes is not None:
            raise Failure(
                "flexible_time_window.maximum_window_in_minutes applies only with mode FLEXIBLE: "
                "drop it, or set mode: FLEXIBLE"
            )
        return {"Mode": "OFF"}
    low, high = WINDOW_MINUTES
    if minutes is None or not low <= minutes <= high:
        raise Failure(
            f"flexible_time_window.maximum_window_in_minutes must be {low} to {high} with mode "
            f"FLEXIBLE, got {minutes}"
        )
    return {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": minutes}


def _target(target):
    arn, role = target["arn"] or "", target["role_arn"] or ""
    if not 1 <= len(arn) <= MAX_ARN:
        raise Failure(f"target.arn must be 1 to {MAX_ARN} characters: {LAMBDA_EXAMPLE}")
    if len(role) > MAX_ARN or not _ROLE_ARN.match(role):
        raise Failure(
            f"target.role_arn {role!r} is not an IAM role ARN (such as "
            "arn:aws:iam::123456789012:role/tinyllama-scheduler): EventBridge Scheduler assumes "
            "that role to call the target"
        )
    request = {"Arn": arn, "RoleArn": role, "RetryPolicy": _retry(target["retry_policy"])}
    text = input_text(target["input"], arn)
    if text is not None:
        request["Input"] = text
    queue = target["dead_letter_arn"]
    if queue:
        if len(queue) > MAX_ARN or not _QUEUE_ARN.match(queue):
            raise Failure(
                f"target.dead_letter_arn {queue!r} is not a standard SQS queue's ARN (such as "
                "arn:aws:sqs:eu-west-1:123456789012:tinyllama-schedule-dlq)"
            )
        request["DeadLetterConfig"] = {"Arn": queue}
    return request


def _retry(policy):
    policy = policy or {}
    age = policy.get("maximum_event_age_in_seconds")
    attempts = policy.get("maximum_retry_attempts")
    age = EVENT_AGE[1] if age is None else age
    attempts = RETRY_ATTEMPTS[1] if attempts is None else attempts
    for option, value, (low, high) in (
        ("maximum_event_age_in_seconds", age, EVENT_AGE),
        ("maximum_retry_attempts", attempts, RETRY_ATTEMPTS),
    ):
        if not low <= value <= high:
            raise Failure(f"target.retry_policy.{option} must be {low} to {high}, got {value}")
    return {"MaximumEventAgeInSeconds": age, "MaximumRetryAttempts": attempts}

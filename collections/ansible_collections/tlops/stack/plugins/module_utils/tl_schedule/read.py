# Part of tl_schedule (plugins/modules/tl_schedule.py). Apache-2.0.
"""What EventBridge Scheduler holds, and the snake_case view the diff compares.

One `view()` serves both sides: it reads a CreateSchedule request (what the module wants) and
a GetSchedule answer (what there is) the same way, so equal views mean nothing to write.
"""

from __future__ import annotations

import json

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import ClientError, is_not_found


def read(client, name, group):
    """The schedule as GetSchedule answers it; None when it (or its group) does not exist."""
    try:
        answer = client.get_schedule(Name=name, GroupName=group, aws_retry=True)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    answer.pop("ResponseMetadata", None)
    return answer


def group_exists(client, group):
    try:
        client.get_schedule_group(Name=group, aws_retry=True)
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    return True


def input_view(text):
    """A target's Input as the diff shows and compares it: a JSON object or array parsed (so
    spacing and key order make no change), any other text as it is."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (dict, list)) else text


def view(schedule):
    """The fields the module manages, snake_case; None for no schedule.

    What GetSchedule leaves out reads as AWS's meaning of leaving it out: no description, the
    time zone UTC, enabled, no flexible window.
    """
    if schedule is None:
        return None
    target = schedule.get("Target") or {}
    retry = target.get("RetryPolicy") or {}
    window = schedule.get("FlexibleTimeWindow") or {}
    return {
        "name": schedule["Name"],
        "group_name": schedule.get("GroupName") or "default",
        "description": schedule.get("Description") or "",
        "schedule_expression": schedule.get("ScheduleExpression"),
        "schedule_expression_timezone": schedule.get("ScheduleExpressionTimezone") or "UTC",
        "enabled": schedule.get("State", "ENABLED") == "ENABLED",
        "flexible_time_window": {
            "mode": window.get("Mode", "OFF"),
            "maximum_window_in_minutes": window.get("MaximumWindowInMinutes"),
        },
        "target": {
            "arn": target.get("Arn"),
            "role_arn": target.get("RoleArn"),
            "input": input_view(target.get("Input")),
            "retry_policy": {
                "maximum_event_age_in_seconds": retry.get("MaximumEventAgeInSeconds"),
                "maximum_retry_attempts": retry.get("MaximumRetryAttempts"),
            },
            "dead_letter_arn": (target.get("DeadLetterConfig") or {}).get("Arn"),
        },
    }

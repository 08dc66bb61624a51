# Part of tl_schedule (plugins/modules/tl_schedule.py). Apache-2.0.
"""The calls that change a schedule: create, update (carrying over what the module does not
manage), delete."""

from __future__ import annotations

from datetime import UTC, datetime

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import ClientError, is_not_found

# UpdateSchedule replaces the whole schedule: a field the call leaves out goes back to its
# default (https://docs.aws.amazon.com/scheduler/latest/APIReference/API_UpdateSchedule.html).
# So the fields the module does not manage are sent again as they are.
_CARRIED = ("KmsKeyArn", "ActionAfterCompletion", "EndDate")
_MANAGED_TARGET = ("Arn", "RoleArn", "Input", "RetryPolicy", "DeadLetterConfig")


def create(client, request):
    """Create the schedule; its ARN."""
    return client.create_schedule(**request, aws_retry=True)["ScheduleArn"]


def update_request(request, current, now):
    """The UpdateSchedule request: the wanted fields, plus what the schedule has and the module
    does not manage.

    A start date already past is not sent again: it no longer holds anything back. A templated
    target's own parameters (SqsParameters, EcsParameters, ...) are kept only while the target
    stays the same.
    """
    out = dict(request)
    for key in _CARRIED:
        if current.get(key) is not None:
            out[key] = current[key]
    start = current.get("StartDate")
    if start is not None and start > now:
        out["StartDate"] = start
    target = current.get("Target") or {}
    if target.get("Arn") == request["Target"]["Arn"]:
        kept = {k: v for k, v in target.items() if k not in _MANAGED_TARGET}
        out["Target"] = {**kept, **request["Target"]}
    return out


def update(client, request, current):
    """Update the schedule in place; its ARN."""
    now = datetime.now(UTC)
    answer = client.update_schedule(**update_request(request, current, now), aws_retry=True)
    return answer["ScheduleArn"]


def delete(client, name, group):
    """Delete the schedule; one already gone is no error."""
    try:
        client.delete_schedule(Name=name, GroupName=group, aws_retry=True)
    except ClientError as exc:
        if not is_not_found(exc):
            raise

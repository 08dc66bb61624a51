# Part of tl_metric_alarm (plugins/modules/tl_metric_alarm.py). Apache-2.0.
"""One CloudWatch metric alarm with its tags: check it as AWS would, compare, write, delete ours.

The comparison covers every field the module sets; fields CloudWatch adds (state, ARNs,
timestamps) are ignored. The checks are those PutMetricAlarm makes and the local stand-in
skips: a period of 10, 30 or a multiple of 60 seconds, a statistic or a percentile but not
both, at most as many datapoints as evaluation periods, and at most a day evaluated.
"""

from __future__ import annotations

import re

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    ClientError,
    Failure,
    apply_tags,
    carries,
    is_not_found,
    tag_changes,
    tags_after,
)

_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,2})?|100)$")
_MANAGED = (
    "AlarmDescription",
    "Namespace",
    "MetricName",
    "Dimensions",
    "Statistic",
    "ExtendedStatistic",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "Unit",
    "AlarmActions",
    "OKActions",
    "InsufficientDataActions",
)


def desired(params):
    """The alarm as PutMetricAlarm takes it (keys of _MANAGED), checked; None for absent."""
    if params["state"] == "absent":
        return None
    for option in ("namespace", "metric_name", "period", "threshold", "comparison_operator"):
        if params[option] is None:
            raise Failure(f"{option} is required when state=present")
    statistic, extended = params["statistic"], params["extended_statistic"]
    if (statistic is None) == (extended is None):
        raise Failure("give exactly one of statistic and extended_statistic")
    if extended is not None and not _PERCENTILE.match(extended):
        raise Failure(f"extended_statistic {extended!r} must be a percentile such as p95")
    period = params["period"]
    if period not in (10, 30) and (period < 60 or period % 60):
        raise Failure(f"period must be 10, 30 or a multiple of 60 seconds, got {period}")
    evaluations = params["evaluation_periods"]
    if evaluations < 1 or period * evaluations > 86400:
        raise Failure(
            f"evaluation_periods x period must be at most a day (86400 s), got "
            f"{evaluations} x {period}"
        )
    datapoints = params["datapoints_to_alarm"] or evaluations
    if not 1 <= datapoints <= evaluations:
        raise Failure(
            f"datapoints_to_alarm must be from 1 to evaluation_periods ({evaluations}), "
            f"got {datapoints}"
        )
    alarm = {
        "AlarmDescription": params["description"] or "",
        "Namespace": params["namespace"],
        "MetricName": params["metric_name"],
        "Dimensions": sorted(
            ({"Name": k, "Value": str(v)} for k, v in (params["dimensions"] or {}).items()),
            key=lambda d: d["Name"],
        ),
        "Period": period,
        "EvaluationPeriods": evaluations,
        "DatapointsToAlarm": datapoints,
        "Threshold": float(params["threshold"]),
        "ComparisonOperator": params["comparison_operator"],
        "TreatMissingData": params["treat_missing_data"],
        "AlarmActions": sorted(params["alarm_actions"]),
        "OKActions": sorted(params["ok_actions"]),
        "InsufficientDataActions": sorted(params["insufficient_data_actions"]),
    }
    if statistic is not None:
        alarm["Statistic"] = statistic
    else:
        alarm["ExtendedStatistic"] = extended
    if params["unit"]:
        alarm["Unit"] = params["unit"]
    return alarm


def comparable(alarm):
    """The managed fields of an alarm as DescribeAlarms answers it, in the desired shape."""
    out = {key: alarm[key] for key in _MANAGED if alarm.get(key) not in (None, "")}
    out.setdefault("AlarmDescription", "")
    out["Dimensions"] = sorted(alarm.get("Dimensions") or [], key=lambda d: d["Name"])
    out.setdefault("TreatMissingData", "missing")
    out.setdefault("DatapointsToAlarm", alarm.get("EvaluationPeriods"))
    for key in ("AlarmActions", "OKActions", "InsufficientDataActions"):
        out[key] = sorted(alarm.get(key) or [])
    if "Threshold" in out:
        out["Threshold"] = float(out["Threshold"])
    return out


def read(client, name):
    found = client.describe_alarms(AlarmNames=[name], AlarmTypes=["MetricAlarm"], aws_retry=True)
    alarms = found.get("MetricAlarms") or []
    return alarms[0] if alarms else None


def read_tags(client, arn):
    try:
        listed = client.list_tags_for_resource(ResourceARN=arn, aws_retry=True)
    except ClientError as exc:
        if is_not_found(exc):
            return {}
        raise
    return {t["Key"]: t["Value"] for t in listed.get("Tags") or []}


def write_tags(client, arn, to_set, to_remove):
    apply_tags(
        lambda tags: client.tag_resource(
            ResourceARN=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            aws_retry=True,
        ),
        lambda keys: client.untag_resource(ResourceARN=arn, TagKeys=keys, aws_retry=True),
        to_set,
        to_remove,
    )  # fmt: skip


def view(alarm, tags):
    return None if alarm is None else {**alarm, "Tags": tags}


def ensure_present(client, params, check_mode):
    name, wanted = params["name"], desired(params)
    current = read(client, name)
    arn = (current or {}).get("AlarmArn")
    tags_now = read_tags(client, arn) if current else {}
    to_set, to_remove = tag_changes(tags_now, params["tags"], params["purge_tags"])
    before = view(comparable(current), tags_now) if current else None
    alarm_changed = current is None or comparable(current) != wanted
    changed = alarm_changed or bool(to_set or to_remove)
    if changed and not check_mode:
        if current is None:  # a new alarm takes its tags in the same call
            tags = [{"Key": k, "Value": v} for k, v in to_set.items()]
            client.put_metric_alarm(AlarmName=name, **wanted, Tags=tags, aws_retry=True)
        else:
            if alarm_changed:  # PutMetricAlarm ignores Tags for an alarm that exists
                client.put_metric_alarm(AlarmName=name, **wanted, aws_retry=True)
            write_tags(client, arn, to_set, to_remove)
        arn = (read(client, name) or {}).get("AlarmArn", arn)
    after = view(wanted, tags_after(tags_now, to_set, to_remove))
    return dict(changed=changed, before=before, after=after, alarm_name=name, alarm_arn=arn)


def ensure_absent(client, params, check_mode, warn):
    name = params["name"]
    current = read(client, name)
    if current is None:
        return dict(changed=False, before=None, after=None, alarm_name=name, alarm_arn=None)
    tags = read_tags(client, current["AlarmArn"])
    before = view(comparable(current), tags)
    if not carries(tags, params["tags"]):
        warn(f"alarm {name} was left alone: it lacks the tags {params['tags']} (someone else's)")
        return dict(changed=False, before=before, after=before, alarm_name=name,
                    alarm_arn=current["AlarmArn"])  # fmt: skip
    if not check_mode:
        client.delete_alarms(AlarmNames=[name], aws_retry=True)
    return dict(changed=True, before=before, after=None, alarm_name=name,
                alarm_arn=current["AlarmArn"])  # fmt: skip

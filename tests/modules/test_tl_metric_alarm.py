"""tl_metric_alarm: the stand-in's life cycle with tags, and the checks PutMetricAlarm makes."""

from __future__ import annotations

import pytest

from .harness import ModuleFailed, run_module, warned

NAME = "tinyllama-api-p95-latency"
TAGS = {"Project": "tinyllama", "Role": "observability"}
TOPIC = "arn:aws:sns:eu-west-1:123456789012:tinyllama-alerts"


def alarm_args(base, **over):
    return {
        **base,
        "name": NAME,
        "description": "p95 latency of the API at or over 300 ms for 5 minutes",
        "namespace": "AWS/ApiGateway",
        "metric_name": "Latency",
        "dimensions": {"ApiId": "a1b2c3", "Stage": "$default"},
        "extended_statistic": "p95",
        "period": 300,
        "threshold": 300,
        "comparison_operator": "GreaterThanOrEqualToThreshold",
        "treat_missing_data": "notBreaching",
        "alarm_actions": [TOPIC],
        "tags": TAGS,
        **over,
    }


def described(aws):
    cloudwatch = aws("cloudwatch")
    alarms = cloudwatch.describe_alarms(AlarmNames=[NAME])["MetricAlarms"]
    if not alarms:
        return None, None
    tags = cloudwatch.list_tags_for_resource(ResourceARN=alarms[0]["AlarmArn"])["Tags"]
    return alarms[0], {t["Key"]: t["Value"] for t in tags}


def test_life_cycle_on_the_stand_in(aws_args, aws):
    planned = run_module("tl_metric_alarm", alarm_args(aws_args), check=True)
    assert planned["changed"] is True and described(aws) == (None, None)

    made = run_module("tl_metric_alarm", alarm_args(aws_args))
    assert made["changed"] is True
    assert made["alarm_arn"].endswith(f":alarm:{NAME}")
    alarm, tags = described(aws)
    assert tags == TAGS
    assert (alarm["ExtendedStatistic"], alarm["Threshold"], alarm["Period"]) == ("p95", 300, 300)
    assert alarm["AlarmActions"] == [TOPIC] and alarm["TreatMissingData"] == "notBreaching"

    assert run_module("tl_metric_alarm", alarm_args(aws_args))["changed"] is False

    moved = alarm_args(aws_args, threshold=500, evaluation_periods=3, datapoints_to_alarm=2)
    assert run_module("tl_metric_alarm", moved, check=True)["changed"] is True
    assert described(aws)[0]["Threshold"] == 300
    changed = run_module("tl_metric_alarm", moved)
    assert changed["changed"] is True
    assert changed["diff"]["before"]["Threshold"] == 300.0
    assert changed["diff"]["after"]["Threshold"] == 500.0
    alarm, _ = described(aws)
    assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (
        500,
        3,
        2,
    )
    assert run_module("tl_metric_alarm", moved)["changed"] is False

    retagged = run_module("tl_metric_alarm", {**moved, "tags": {"Project": "tinyllama"}})
    assert retagged["changed"] is True
    assert described(aws)[1] == {"Project": "tinyllama"}

    gone = {**aws_args, "name": NAME, "state": "absent", "tags": {"Project": "tinyllama"}}
    assert run_module("tl_metric_alarm", gone, check=True)["changed"] is True
    assert described(aws)[0] is not None
    assert run_module("tl_metric_alarm", gone)["changed"] is True
    assert described(aws) == (None, None)
    assert run_module("tl_metric_alarm", gone)["changed"] is False


def test_an_untagged_look_alike_is_never_deleted(aws_args, aws):
    aws("cloudwatch").put_metric_alarm(
        AlarmName=NAME, MetricName="Latency", Namespace="AWS/ApiGateway", Statistic="Average",
        Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
    )  # fmt: skip
    gone = {**aws_args, "name": NAME, "state": "absent", "tags": {"Project": "tinyllama"}}
    left = run_module("tl_metric_alarm", gone)
    assert left["changed"] is False and warned(left, "left alone")
    assert described(aws)[0] is not None


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"period": 90}, "period must be 10, 30 or a multiple of 60"),
        ({"statistic": "Maximum"}, "exactly one of statistic and extended_statistic"),
        ({"extended_statistic": None}, "exactly one of statistic and extended_statistic"),
        ({"extended_statistic": "top5"}, "must be a percentile"),
        ({"evaluation_periods": 3, "datapoints_to_alarm": 4}, "datapoints_to_alarm must be"),
        ({"evaluation_periods": 300}, "at most a day"),
        ({"metric_name": None}, "metric_name is required"),
    ],
)
def test_what_aws_would_refuse_is_refused_before_any_call(aws_args, aws, over, words):
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_metric_alarm", alarm_args(aws_args, **over))
    assert words in failed.value.result["msg"]
    assert described(aws) == (None, None)

"""Structured JSON logs and CloudWatch EMF metric records (tlops.telemetry)."""

from __future__ import annotations

import io
import json
import sys

import pytest

from tlops.common.telemetry import NAMESPACE, Telemetry


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


def lines(stream: io.StringIO) -> list[dict]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_log_writes_one_json_line(stream):
    Telemetry("router", stream=stream).log("INFO", "request", requestId="r-1", status=202)
    [record] = lines(stream)
    assert record["level"] == "INFO"
    assert record["message"] == "request"
    assert record["service"] == "router"
    assert isinstance(record["timestamp"], int)
    assert record["timestamp"] > 1_600_000_000_000  # milliseconds since the epoch
    assert record["requestId"] == "r-1"
    assert record["status"] == 202


def test_each_call_is_its_own_line(stream):
    telemetry = Telemetry("router", stream=stream)
    telemetry.log("INFO", "one")
    telemetry.log("WARNING", "two\nlines", detail="a\nb")
    telemetry.metric("EC2Starts", Reason="ColdBoot")
    records = lines(stream)
    assert len(records) == 3
    assert [r.get("message") for r in records[:2]] == ["one", "two\nlines"]
    assert records[1]["detail"] == "a\nb"


def test_log_serialises_unusual_values_as_strings(stream):
    class Thing:
        def __str__(self) -> str:
            return "thing!"

    Telemetry("svc", stream=stream).log("ERROR", "x", thing=Thing(), items=[1, 2])
    [record] = lines(stream)
    assert record["thing"] == "thing!"
    assert record["items"] == [1, 2]


def test_metric_is_a_valid_emf_record(stream):
    Telemetry("router", stream=stream).metric("EC2Starts", Reason="ColdBoot")
    [record] = lines(stream)
    aws = record["_aws"]
    assert isinstance(aws["Timestamp"], int)
    assert len(aws["CloudWatchMetrics"]) == 1
    directive = aws["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "TLFIF" == NAMESPACE
    assert directive["Dimensions"] == [["Reason"]]
    assert directive["Metrics"] == [{"Name": "EC2Starts", "Unit": "Count"}]
    assert record["EC2Starts"] == 1
    assert record["Reason"] == "ColdBoot"
    # every dimension a directive names must be a top-level member
    for dimension_set in directive["Dimensions"]:
        for name in dimension_set:
            assert isinstance(record[name], str)


def test_metric_without_dimensions(stream):
    Telemetry("router", stream=stream).metric("RedisEnqueueFail")
    [record] = lines(stream)
    directive = record["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [[]]
    assert directive["Metrics"] == [{"Name": "RedisEnqueueFail", "Unit": "Count"}]
    assert record["RedisEnqueueFail"] == 1


def test_metric_value_unit_and_several_dimensions(stream):
    Telemetry("router", stream=stream).metric(
        "LatencyMs", 12.5, "Milliseconds", Route="POST /infer", Outcome="queued"
    )
    [record] = lines(stream)
    directive = record["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [["Outcome", "Route"]]
    assert directive["Metrics"] == [{"Name": "LatencyMs", "Unit": "Milliseconds"}]
    assert record["LatencyMs"] == 12.5
    assert record["Route"] == "POST /infer"
    assert record["Outcome"] == "queued"


def test_custom_namespace(stream):
    Telemetry("svc", stream=stream, namespace="Other").metric("M")
    [record] = lines(stream)
    assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Other"


def test_default_stream_is_stdout(capsys):
    telemetry = Telemetry("svc")
    assert telemetry.stream is sys.stdout
    telemetry.log("INFO", "to stdout")
    out = capsys.readouterr().out
    assert json.loads(out)["message"] == "to stdout"

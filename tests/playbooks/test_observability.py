"""The observability role's dashboard, alarms and viewer policy, read as deploy.yml renders
them: eight widgets, and every metric they name is one something emits.

What emits what is read from the code, not listed here: every `telemetry.metric("Name")`
call and every `{"MetricName": "Name"}` under src/ and lambda_src/, plus the node emitter's
own list (`tlops.node.gpu_metrics.METRICS`). Metrics of AWS's own namespaces come from AWS;
those the role uses are named below with the page that documents them.
"""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from tlops.common.telemetry import NAMESPACE
from tlops.node import gpu_metrics

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "observability"

# Published by AWS services themselves (their CloudWatch metrics pages).
AWS_PROVIDED = {
    ("AWS/ApiGateway", "Latency"),  # HTTP API metrics, per ApiId
    ("AWS/Lambda", "Invocations"),  # Lambda function metrics, per FunctionName
    ("AWS/Billing", "EstimatedCharges"),  # us-east-1, once billing alerts are on
}


def emitted_by_code() -> set[str]:
    names = set(gpu_metrics.METRICS)
    for path in [*(REPO / "src").rglob("*.py"), *(REPO / "lambda_src").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        # module-level NAME = "text", so `"MetricName": METRIC` counts as well
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "metric"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "MetricName":
                        if isinstance(value, ast.Constant):
                            names.add(value.value)
                        elif isinstance(value, ast.Name) and value.id in constants:
                            names.add(constants[value.id])
    return names


CONTEXT = {
    "project_tag": "tinyllama",
    "aws_region": "eu-west-1",
    "aws_account_id": "123456789012",
    "router_api_id": "a1b2c3d4e5",
    "ansible_check_mode": False,  # a deploy, not a plan
}


def role_vars() -> dict[str, Any]:
    """The role's defaults and vars, rendered as Ansible would for CONTEXT."""
    raw = {
        **CONTEXT,
        **yaml.safe_load((ROLE / "defaults/main.yml").read_text()),
        **yaml.safe_load((ROLE / "vars/main.yml").read_text()),
        # what every playbook of playbooks/ loads from its group_vars/all/
        **yaml.safe_load((REPO / "playbooks" / "group_vars" / "all" / "names.yml").read_text()),
        "playbook_dir": str(REPO / "playbooks"),
    }
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["combine"] = lambda base, *more: {k: v for d in (base, *more) for k, v in d.items()}

    def render(value: Any, scope: dict[str, Any]) -> Any:
        if isinstance(value, str) and "{{" in value:
            return env.from_string(value).render(scope)
        if isinstance(value, dict):
            return {k: render(v, scope) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v, scope) for v in value]
        return value

    for _ in range(4):  # defaults refer to each other a few levels deep
        raw = {k: render(v, raw) for k, v in raw.items()}
    return raw


def render_template(name: str, values: dict[str, Any]) -> Any:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"))
    return json.loads(env.get_template(name).render(values))


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return role_vars()


@pytest.fixture(scope="module")
def dashboard(values) -> dict[str, Any]:
    return render_template("dashboard.json.j2", values)


def named_metrics(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(namespace, name) of every metric a widget draws (expressions are not metrics)."""
    found = []
    for widget in dashboard["widgets"]:
        for line in widget["properties"].get("metrics", []):
            strings = [part for part in line if isinstance(part, str)]
            if len(strings) >= 2:
                found.append((strings[0], strings[1]))
    return found


def unknown_metrics(pairs: list[tuple[str, str]], emitted: set[str]) -> list[tuple[str, str]]:
    """The metrics nothing emits: ours not in the code, AWS's not among those AWS publishes."""
    return [
        (namespace, name)
        for namespace, name in pairs
        if not ((namespace == NAMESPACE and name in emitted) or (namespace, name) in AWS_PROVIDED)
    ]


def alarm_metrics(values: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["namespace"], a["metric_name"]) for a in values["_observability_alarms"]]


def test_the_dashboard_has_the_eight_widgets(dashboard):
    widgets = dashboard["widgets"]
    assert len(widgets) == 8
    assert {w["type"] for w in widgets} == {"metric"}
    titles = " | ".join(w["properties"]["title"] for w in widgets)
    for words in ("GPU utilisation", "GPU memory", "Redis memory", "p95 latency",
                  "requests per minute", "Spend", "BudgetStops", "AutoStops"):  # fmt: skip
        assert words in titles
    spend = next(w for w in widgets if "Spend" in w["properties"]["title"])
    assert spend["properties"]["metrics"][0][0]["expression"] == "m1 * 0.92"


def test_widgets_look_at_this_deployment(dashboard):
    flat = json.dumps(dashboard)
    for value in ("a1b2c3d4e5", "tinyllama-router"):
        assert value in flat
    assert "tinyllama-queue-" not in flat  # no queue's id: each wake's queue has a new one


def metric_cases() -> list[Any]:
    values = role_vars()
    pairs = sorted(set(named_metrics(render_template("dashboard.json.j2", values)))
                   | set(alarm_metrics(values)))  # fmt: skip
    return [pytest.param(namespace, name, id=f"{namespace}/{name}") for namespace, name in pairs]


@pytest.mark.parametrize(("namespace", "name"), metric_cases())
def test_every_metric_named_is_one_something_emits(namespace, name):
    assert unknown_metrics([(namespace, name)], emitted_by_code()) == []


def test_a_dashboard_naming_a_metric_nobody_emits_is_caught(dashboard):
    bogus = json.loads(json.dumps(dashboard))
    bogus["widgets"][0]["properties"]["metrics"].append(["TLFIF", "GPUTemperature"])
    bogus["widgets"][1]["properties"]["metrics"].append(["AWS/Lambda", "Vibes"])
    emitted = emitted_by_code()
    before = set(unknown_metrics(named_metrics(dashboard), emitted))  # AWAITED, until merged
    assert set(unknown_metrics(named_metrics(bogus), emitted)) - before == {
        ("TLFIF", "GPUTemperature"),
        ("AWS/Lambda", "Vibes"),
    }


def test_the_collector_finds_what_the_code_emits():
    emitted = emitted_by_code()
    assert {"RedisEnqueueFail", "ApiRateLimitBreaches", "EC2Starts", "ResizeRequests"} <= emitted
    assert {"QueueHealthFailed", "DeadLetterEntries", "DetachedEIPs"} <= emitted
    assert set(gpu_metrics.METRICS) <= emitted


def test_the_alarms_are_the_issues_seven_and_the_failed_wake(values):
    alarms = {a["name"].removeprefix("tinyllama-"): a for a in values["_observability_alarms"]}
    assert set(alarms) == {"api-p95-latency", "queue-health", "redis-memory", "dead-letters",
                           "eip-detached", "budget-stops", "redis-enqueue-fail",
                           "wake-failures"}  # fmt: skip
    # each wake's queue has a new id: its memory comes from the probe, named by no node
    assert (alarms["redis-memory"]["namespace"], alarms["redis-memory"]["metric_name"]) == (
        "TLFIF", "QueueMemoryPercent")  # fmt: skip
    assert "dimensions" not in alarms["redis-memory"]
    wake = alarms["wake-failures"]
    assert (wake["metric_name"], wake["statistic"], wake["threshold"]) == ("WakeFailures", "Sum", 0)
    latency = alarms["api-p95-latency"]
    assert (latency["extended_statistic"], latency["period"], latency["threshold"]) == (
        "p95",
        300,
        "300",
    )
    queue = alarms["queue-health"]
    assert (queue["evaluation_periods"], queue["datapoints_to_alarm"]) == (3, 2)
    assert alarms["redis-memory"]["threshold"] == "70"
    assert alarms["redis-enqueue-fail"]["threshold"] == "3"
    eip = alarms["eip-detached"]
    assert int(eip["period"]) * int(eip["evaluation_periods"]) == 3600  # detached for 1 h


def test_the_viewer_policy_reads_and_only_reads(values):
    from parliament import analyze_policy_string

    from tlops.checks import access

    policy = render_template("viewer_policy.json.j2", values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        findings = analyze_policy_string(json.dumps(policy)).findings
    assert not findings, [(f.issue, f.detail) for f in findings]
    ours = "arn:aws:cloudwatch::123456789012:dashboard/TinyLlama-Overview"
    assert access.allows(policy, "cloudwatch:GetDashboard", ours)
    assert not access.allows(policy, "cloudwatch:GetDashboard", ours.replace("TinyLlama", "X"))
    for action in ("cloudwatch:PutDashboard", "cloudwatch:DeleteAlarms", "logs:DeleteLogGroup",
                   "cloudwatch:PutMetricData", "logs:PutQueryDefinition"):  # fmt: skip
        assert not access.allows(policy, action, "*"), action
    group = "arn:aws:logs:eu-west-1:123456789012:log-group:/tinyllama/http-api-access:*"
    assert access.allows(policy, "logs:StartQuery", group)
    assert not access.allows(policy, "logs:StartQuery", group.replace("tinyllama", "other"))

"""Every AWS call a component's code makes is one access.yml declares for it.

The IAM-enforced runs (test_iam_enforced.py) prove that the declared statements suffice
for the paths those runs take; this reads the code itself, so a call on a path no run
takes (an error branch, a new route) cannot ship without its statement. From each
component's entry points it follows the `tlops` imports (module level and inside
functions), finds every method called on an object that a boto3 client of the
component's services answers to (and each `get_paginator("...")`), and requires the
matching IAM action among the component's declared calls.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import boto3
import pytest

from tlops.checks import access

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
# Where each component's code starts: the Lambda's handler, the node's programs.
ENTRY_POINTS = {
    "router": ["lambda_src/router/handler.py"],
    "queue_health": ["lambda_src/queue_health/handler.py"],
    "eip_watch": ["lambda_src/eip_watch/handler.py"],
    "budget_killer": ["lambda_src/budget_killer/handler.py"],
    "cost_summary": ["lambda_src/cost_summary/handler.py"],
    "control": ["lambda_src/control/handler.py"],
    "gpu_node": [
        f"src/tlops/node/{name}.py"
        for name in ("watcher", "watchdog", "boot", "deployment", "gpu_metrics")
    ],
}
# The AWS services any component may talk to: boto3 client name → IAM action prefix.
SERVICES = {
    "ec2": "ec2", "s3": "s3", "ssm": "ssm", "cloudwatch": "cloudwatch",
    "elasticache": "elasticache", "budgets": "budgets", "ce": "ce", "sns": "sns",
}  # fmt: skip
# Operations whose IAM action is not their API name (the Budgets service authorization
# reference: the Describe* calls are allowed by budgets:ViewBudget).
IAM_ACTION = {
    "budgets:DescribeBudget": "budgets:ViewBudget",
    "budgets:DescribeBudgets": "budgets:ViewBudget",
    # S3's listing is allowed by s3:ListBucket (the service authorization reference for S3).
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
}


@cache
def operations() -> dict[str, set[str]]:
    """boto3 method name → the IAM actions it may be (one per service that has it)."""
    found: dict[str, set[str]] = {}
    for name, prefix in SERVICES.items():
        client = boto3.client(name, region_name="eu-west-1")
        for method, api in client.meta.method_to_api_mapping.items():
            action = f"{prefix}:{api}"
            found.setdefault(method, set()).add(IAM_ACTION.get(action, action))
    return found


def module_file(module: str) -> Path | None:
    base = SRC / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(tree: ast.AST) -> set[Path]:
    files = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.startswith("tlops") and (path := module_file(name)):
                files.add(path)
    return files


def component_files(component: str) -> set[Path]:
    todo = [REPO / entry for entry in ENTRY_POINTS[component]]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(imported_files(ast.parse(path.read_text())) - seen)
    return seen


def aws_calls(files: set[Path]) -> dict[str, set[str]]:
    """boto3 method → where it is called, for every call that names an AWS operation."""
    known = operations()
    calls: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            method = node.func.attr
            if method == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                method = str(node.args[0].value)
            if method in known:
                calls.setdefault(method, set()).add(f"{path.name}:{node.lineno}")
    return calls


def declared_actions(component: str) -> set[str]:
    return {a for call in access.load()[component].get("calls", []) for a in call["actions"]}


@pytest.mark.parametrize("component", sorted(ENTRY_POINTS))
def test_every_aws_call_in_the_code_is_declared(component):
    declared = declared_actions(component)
    undeclared = {
        method: sorted(where)
        for method, where in aws_calls(component_files(component)).items()
        if not operations()[method] & declared
    }
    assert not undeclared, f"{component} calls what access.yml does not declare: {undeclared}"


def test_every_component_of_access_yml_has_its_entry_points():
    assert set(ENTRY_POINTS) == set(access.load())


def test_the_reader_finds_the_calls_it_must():
    # control's wake and the node's own stop are found, through their imports; the router
    # asks control through the bucket and calls no EC2 API at all
    control = set(aws_calls(component_files("control")))
    assert {"start_instances", "describe_instances", "create_replication_group"} <= control
    router = set(aws_calls(component_files("router")))
    assert {"put_object", "get_object", "list_objects_v2"} <= router
    assert not [m for m in router if any(a.startswith("ec2:") for a in operations()[m])]
    node = aws_calls(component_files("gpu_node"))
    assert {"stop_instances", "put_metric_data", "put_object", "get_parameter"} <= set(node)
    assert "create_replication_group" not in aws_calls(component_files("budget_killer"))


def test_an_undeclared_call_would_be_named(tmp_path, monkeypatch):
    handler = tmp_path / "handler.py"
    handler.write_text("def run(ec2):\n    ec2.terminate_instances(InstanceIds=['i-1'])\n")
    monkeypatch.setitem(ENTRY_POINTS, "eip_watch", [str(handler)])
    with pytest.raises(AssertionError, match="terminate_instances"):
        test_every_aws_call_in_the_code_is_declared("eip_watch")

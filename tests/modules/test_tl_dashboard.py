"""tl_dashboard: the stand-in's life cycle, the owner's mark, and the checks PutDashboard makes."""

from __future__ import annotations

import json

import pytest

from .harness import ModuleFailed, run_module, warned

NAME = "TinyLlama-Overview"
TAGS = {"Project": "tinyllama", "Role": "observability"}
WIDGET = {
    "type": "metric", "x": 0, "y": 0, "width": 12, "height": 6,
    "properties": {"metrics": [["TLFIF", "EC2Starts"]], "region": "eu-west-1", "title": "Starts"},
}  # fmt: skip
BODY = {"widgets": [WIDGET]}


def stored(aws) -> dict | None:
    cloudwatch = aws("cloudwatch")
    if NAME not in [d["DashboardName"] for d in cloudwatch.list_dashboards()["DashboardEntries"]]:
        return None
    return json.loads(cloudwatch.get_dashboard(DashboardName=NAME)["DashboardBody"])


def test_life_cycle_on_the_stand_in(aws_args, aws):
    args = {**aws_args, "name": NAME, "body": BODY, "tags": TAGS}
    planned = run_module("tl_dashboard", args, check=True)
    assert planned["changed"] is True and planned["diff"]["before"] == {}
    assert stored(aws) is None

    made = run_module("tl_dashboard", args)
    assert made["changed"] is True
    assert made["dashboard_arn"] == "arn:aws:cloudwatch::123456789012:dashboard/TinyLlama-Overview"
    body = stored(aws)
    assert body["widgets"][0] == WIDGET
    [mark] = body["widgets"][1:]
    assert mark["type"] == "text" and mark["y"] == 6  # below the given widgets
    assert "Tags: Project=tinyllama, Role=observability" in mark["properties"]["markdown"]

    again = run_module("tl_dashboard", {**args, "body": json.dumps(BODY)})  # JSON text too
    assert again["changed"] is False

    wider = {"widgets": [{**WIDGET, "width": 24}]}
    assert run_module("tl_dashboard", {**args, "body": wider}, check=True)["changed"] is True
    assert stored(aws)["widgets"][0]["width"] == 12  # check mode wrote nothing
    assert run_module("tl_dashboard", {**args, "body": wider})["changed"] is True
    assert stored(aws)["widgets"][0]["width"] == 24

    gone = {**aws_args, "name": NAME, "state": "absent", "tags": {"Project": "tinyllama"}}
    assert run_module("tl_dashboard", gone, check=True)["changed"] is True
    assert stored(aws) is not None
    assert run_module("tl_dashboard", gone)["changed"] is True
    assert stored(aws) is None
    assert run_module("tl_dashboard", gone)["changed"] is False


def test_a_dashboard_without_our_mark_is_never_deleted(aws_args, aws):
    aws("cloudwatch").put_dashboard(DashboardName=NAME, DashboardBody=json.dumps(BODY))
    gone = {**aws_args, "name": NAME, "state": "absent", "tags": {"Project": "tinyllama"}}
    left = run_module("tl_dashboard", gone)
    assert left["changed"] is False and warned(left, "left alone")
    assert stored(aws) == BODY
    run_module("tl_dashboard", {**aws_args, "name": NAME, "body": BODY, "tags": {"Project": "x"}})
    assert run_module("tl_dashboard", gone)["changed"] is False  # another project's mark
    assert stored(aws) is not None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (None, "body is required"),
        ("{not json", "body is not JSON"),
        ({"widgets": []}, "1 to 499 widgets"),
        ({"panels": []}, "list of widgets"),
        ({"widgets": [WIDGET], "owner": "me"}, "keys CloudWatch refuses: owner"),
        ({"widgets": [{"type": "metric"}]}, "widgets[0] needs a type and properties"),
    ],
)
def test_bad_bodies_are_refused_before_any_call(aws_args, body, words):
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_dashboard", {**aws_args, "name": NAME, "body": body})
    assert words in failed.value.result["msg"]


def test_a_bad_name_is_refused(aws_args):
    with pytest.raises(ModuleFailed, match="1-255 of"):
        run_module("tl_dashboard", {**aws_args, "name": "has space", "body": BODY})

"""tl_query_definition: AWS's answers through a Stubber (the stand-in lacks every call), the
stand-in's gap warned about, and the names that mark the project's definitions."""

from __future__ import annotations

import pytest

from .conftest import STUB_ARGS
from .harness import ModuleFailed, run_module, warned

NAME = "tinyllama/api_5xx_by_route"
QUERY = "filter status >= 500 | stats count(*) as errors by route | sort errors desc"
GROUPS = ["/tinyllama/http-api-access"]
STORED = {"queryDefinitionId": "qd-1", "name": NAME, "queryString": QUERY, "logGroupNames": GROUPS}
PROJECT = {"Project": "tinyllama"}


def args(base, **over):
    return {**base, "name": NAME, "query_string": QUERY, "log_group_names": GROUPS,
            "tags": PROJECT, **over}  # fmt: skip


def listed(stubber, *definitions):
    stubber.add_response(
        "describe_query_definitions",
        {"queryDefinitions": list(definitions)},
        {"queryDefinitionNamePrefix": NAME, "maxResults": 1000},
    )


def test_created_when_missing_and_left_when_equal(stubbed):
    logs = stubbed("logs")
    listed(logs)
    logs.add_response(
        "put_query_definition",
        {"queryDefinitionId": "qd-1"},
        {"name": NAME, "queryString": QUERY, "logGroupNames": GROUPS},
    )
    made = run_module("tl_query_definition", args(STUB_ARGS))
    assert (made["changed"], made["query_definition_id"]) == (True, "qd-1")
    listed(logs, STORED, {**STORED, "queryDefinitionId": "qd-2", "name": NAME + "_older"})
    assert run_module("tl_query_definition", args(STUB_ARGS))["changed"] is False


def test_a_changed_query_updates_the_same_definition(stubbed):
    logs = stubbed("logs")
    listed(logs, {**STORED, "queryString": "fields @message"})
    logs.add_response(
        "put_query_definition",
        {"queryDefinitionId": "qd-1"},
        {"name": NAME, "queryString": QUERY, "logGroupNames": GROUPS, "queryDefinitionId": "qd-1"},
    )
    updated = run_module("tl_query_definition", args(STUB_ARGS))
    assert updated["changed"] is True
    assert updated["diff"]["before"]["query_string"] == "fields @message"


def test_check_mode_and_absent(stubbed):
    logs = stubbed("logs")
    listed(logs)
    assert run_module("tl_query_definition", args(STUB_ARGS), check=True)["changed"] is True
    listed(logs, STORED)
    logs.add_response("delete_query_definition", {"success": True}, {"queryDefinitionId": "qd-1"})
    gone = run_module("tl_query_definition", {**STUB_ARGS, "name": NAME, "state": "absent",
                                              "tags": PROJECT})  # fmt: skip
    assert gone["changed"] is True


def test_the_stand_in_lacks_query_definitions_and_says_so(aws_args):
    result = run_module("tl_query_definition", args(aws_args))
    assert result["changed"] is False
    assert warned(result, "does not implement CloudWatch Logs query definitions")
    assert warned(result, "tlops local logs query")


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"name": "api_5xx_by_route"}, "must start with 'tinyllama/'"),
        ({"query_string": " "}, "query_string is required"),
        ({"query_string": "x" * 10001}, "over 10000"),
        ({"log_group_names": []}, "at least one log group"),
    ],
)
def test_bad_input_is_refused_naming_the_option(aws_args, over, words):
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_query_definition", args(aws_args, **over))
    assert words in failed.value.result["msg"]

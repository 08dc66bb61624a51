"""tlops.stack's tl_aws: what the tl_* modules share."""

from __future__ import annotations

import importlib

import pytest
from botocore.exceptions import ClientError

from .harness import code

tl_aws = code("tl_aws")


def error(code: str, message: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "AnyCall",
    )


PAGE = "<!doctype html>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>"


def test_the_stand_ins_bare_500_counts_as_unsupported_but_aws_errors_do_not():
    assert tl_aws.unsupported(error("500", PAGE, 500))
    assert tl_aws.unsupported(error("NotImplementedError", "x", 500))
    assert not tl_aws.unsupported(error("InternalErrorException", "try again", 500))
    assert not tl_aws.unsupported(error("InternalFailure", "Internal Server Error", 500))
    assert not tl_aws.unsupported(error("AccessDeniedException", "no", 400))
    assert tl_aws.unsupported(error("404", "<!DOCTYPE html><title>404 Not Found</title>", 404))
    assert not tl_aws.unsupported(error("NotFoundException", "Invalid API identifier", 404))
    assert not tl_aws.unsupported(ValueError("not a ClientError"))
    parser = importlib.import_module("botocore.parsers")
    assert tl_aws.unsupported(parser.ResponseParserError(f"Unable to parse: {PAGE}"))
    assert not tl_aws.unsupported(parser.ResponseParserError("Unable to parse: <Error/>"))


def test_wait_until_returns_the_ready_value_without_sleeping_more_than_needed():
    values, slept = iter([1, 2, 3]), []
    got = tl_aws.wait_until(
        lambda: next(values), lambda v: v == 3, what="three", timeout=10, delay=1,
        sleep=slept.append, clock=lambda: 0.0,
    )  # fmt: skip
    assert (got, slept) == (3, [1, 1])


def test_wait_until_is_bounded_and_says_what_it_waited_for():
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(tl_aws.Failure, match=r"after 5 s waiting for the group.*'creating'"):
        tl_aws.wait_until(
            lambda: "creating", lambda v: v == "available", what="the group", timeout=5,
            delay=2, sleep=sleep, clock=lambda: now[0],
        )  # fmt: skip
    assert now[0] <= 5


def test_tag_changes_follow_amazon_aws():
    assert tl_aws.tag_changes({"a": "1", "b": "2"}, {"a": "1", "c": "3"}, True) == (
        {"c": "3"},
        ["b"],
    )
    assert tl_aws.tag_changes({"a": "1", "b": "2"}, {"a": "9"}, False) == ({"a": "9"}, [])
    assert tl_aws.tag_changes({"a": "1"}, None, True) == ({}, [])


def test_tags_are_written_removals_first_and_the_result_predicted():
    calls = []
    to_set, to_remove = tl_aws.tag_changes({"a": "1", "b": "2"}, {"a": "9", "c": "3"}, True)
    tl_aws.apply_tags(
        lambda tags: calls.append(("tag", tags)), lambda keys: calls.append(("untag", keys)),
        to_set, to_remove,
    )  # fmt: skip
    assert calls == [("untag", ["b"]), ("tag", {"a": "9", "c": "3"})]
    assert tl_aws.tags_after({"a": "1", "b": "2"}, to_set, to_remove) == {"a": "9", "c": "3"}
    tl_aws.apply_tags(calls.append, calls.append, {}, [])
    assert len(calls) == 2  # nothing to write, nothing called


def test_pages_follow_a_marker_of_another_name():
    answers = {None: {"Items": [1, 2], "NextMarker": "m"}, "m": {"Items": [3]}}
    asked = []

    def call(aws_retry, FunctionName, Marker=None):
        asked.append((FunctionName, Marker))
        return answers[Marker]

    got = tl_aws.pages(call, "Items", marker="Marker", next_marker="NextMarker", FunctionName="f")
    assert got == [1, 2, 3] and asked == [("f", None), ("f", "m")]


def test_throttling_codes_are_retried():
    calls = []

    @tl_aws._RETRY
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise error("ThrottlingException", "slow down", 400)
        return "ok"

    import ansible_collections.amazon.aws.plugins.module_utils.cloud as cloud

    original = cloud.time.sleep
    cloud.time.sleep = lambda _: None
    try:
        assert flaky() == "ok"
    finally:
        cloud.time.sleep = original
    assert len(calls) == 3

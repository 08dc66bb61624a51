"""The control bucket's layout (tlops.contract.control): request keys and bodies, the checks
a request object must pass before control acts on it, held-job keys, the resize results'
keys and the state document, as docs/decisions.md ("Sleep and wake") lays them out."""

from __future__ import annotations

import json

import pytest

from tlops.contract import control
from tlops.contract.control import Action, BadRequest, Request

JOB = "3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b"  # a lowercase UUIDv4


# --- request keys --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "name", "key"),
    [
        (Action.WAKE, "minute-29610335", "requests/wake/minute-29610335.json"),
        (Action.STOP, "req_1.a", "requests/stop/req_1.a.json"),
        (Action.RESIZE, f"{JOB}-1", f"requests/resize/{JOB}-1.json"),
        (Action.SLEEP, "closing-1776620100000", "requests/sleep/closing-1776620100000.json"),
        ("observe", "x", "requests/observe/x.json"),
    ],
)
def test_a_request_is_named_under_its_actions_folder(action, name, key):
    assert control.request_key(action, name) == key


@pytest.mark.parametrize("name", ["", "a/b", "../state", "a b", "é", "x" * 101])
def test_a_request_name_outside_its_alphabet_is_refused(name):
    with pytest.raises(ValueError, match="a request name is 1-100 of"):
        control.request_key(Action.WAKE, name)


def test_a_request_name_of_100_characters_is_taken():
    assert control.request_key(Action.WAKE, "x" * 100) == f"requests/wake/{'x' * 100}.json"


def test_an_unknown_action_has_no_key():
    with pytest.raises(ValueError):
        control.request_key("reboot", "x")


def test_one_wake_name_per_minute_of_a_recorded_state():
    minute = 29_610_335  # 2026-04-19 17:35 UTC, in minutes since the epoch
    start = minute * 60_000
    since = start - 7_200_000  # asleep for two hours
    name = control.wake_name(start, since)
    assert control.wake_name(start + 59_999, since) == name
    assert control.wake_name(start + 60_000, since) != name  # a failed wake is asked again
    assert control.wake_name(start - 1, since) != name
    # the node woke, stopped and the stack slept again within that minute: a new wake
    assert control.wake_name(start + 30_000, start + 20_000) != name
    assert control.wake_name(start, None) != name  # nothing recorded yet
    for made in (name, control.wake_name(start, None)):
        control.request_key(Action.WAKE, made)  # a valid request name


# --- request bodies ------------------------------------------------------------------------
def test_a_request_body_round_trips():
    key = control.request_key(Action.SLEEP, "closing-1")
    body = control.request_body(
        Action.SLEEP, by="queue_health", at_ms=1_776_620_100_000, deep=True, stop_node=False
    )
    assert json.loads(body) == {"action": "sleep", "by": "queue_health",
                                "at_ms": 1_776_620_100_000, "deep": True,
                                "stop_node": False}  # fmt: skip
    assert control.parse_request(key, body) == Request(
        Action.SLEEP, "queue_health", 1_776_620_100_000, {"deep": True, "stop_node": False}
    )


def test_a_resize_request_keeps_its_arguments_and_drops_unknown_ones():
    key = control.request_key(Action.RESIZE, f"{JOB}-1")
    body = json.dumps(
        {"action": "resize", "by": "router", "at_ms": 5, "operation": JOB, "goal_state":
         "running", "goal_type": "t3.small", "instance": "i-0abc", "force": True}
    ).encode()  # fmt: skip
    request = control.parse_request(key, body)
    assert request.args == {"operation": JOB, "goal_state": "running", "goal_type": "t3.small",
                            "instance": "i-0abc"}  # fmt: skip


def body_of(**fields) -> bytes:
    return json.dumps({"action": "wake", "by": "router", "at_ms": 1000, **fields}).encode()


@pytest.mark.parametrize(
    ("key", "body", "words"),
    [
        ("requests/wake/a.json", b"{", "is not JSON"),
        ("requests/wake/a.json", b"\xff\xfe", "is not JSON"),
        ("requests/wake/a.json", b"[1, 2]", "must hold a JSON object"),
        ("requests/wake/a.json", body_of(action="reboot"), "unknown action 'reboot'"),
        ("requests/wake/a.json", body_of(action=None), "unknown action None"),
        ("requests/stop/a.json", body_of(), "a wake request under requests/stop/"),
        ("requests/a.json", body_of(), "a wake request under requests/a.json/"),
        ("requests/wake/a.json", body_of(by=""), "`by` must name who asks"),
        ("requests/wake/a.json", body_of(by=7), "`by` must name who asks"),
        ("requests/wake/a.json", body_of(at_ms="1000"), "`at_ms` must be a time in ms"),
        ("requests/wake/a.json", body_of(at_ms=-1), "`at_ms` must be a time in ms"),
        ("requests/wake/a.json", body_of(at_ms=True), "`at_ms` must be a time in ms"),
        ("requests/wake/a.json", body_of(round="2"), "`round` has the wrong type"),
        ("requests/wake/a.json", body_of(reason=["x"]), "`reason` has the wrong type"),
        ("requests/sleep/a.json", body_of(action="sleep", deep="yes"),
         "`deep` has the wrong type"),
        ("held/sub/a.json", body_of(), "is not under requests/"),
        ("state.json", body_of(), "is not under requests/"),
    ],
)  # fmt: skip
def test_a_malformed_request_is_refused_saying_why(key, body, words):
    with pytest.raises(BadRequest) as caught:
        control.parse_request(key, body)
    assert words in str(caught.value)


def test_a_request_over_16_kib_is_refused_unread():
    at_limit = body_of(reason="x" * (16 * 1024 - len(body_of(reason=""))))
    assert len(at_limit) == 16 * 1024
    assert control.parse_request("requests/wake/a.json", at_limit).args["reason"]
    over = at_limit[:-2] + b'x"}'
    with pytest.raises(BadRequest, match="16385 bytes, over 16384"):
        control.parse_request("requests/wake/a.json", over)


def test_bad_request_is_a_value_error():
    assert issubclass(BadRequest, ValueError)


# --- held jobs -----------------------------------------------------------------------------
def test_held_keys_round_trip():
    key = control.held_key("user-1", 1_776_620_100_000, JOB)
    assert key == f"held/user-1/1776620100000-{JOB}.json"
    assert control.parse_held_key(key) == control.HeldKey("user-1", 1_776_620_100_000, JOB)
    assert control.held_prefix("user-1") == "held/user-1/"
    assert key.startswith(control.held_prefix("user-1"))


def test_held_times_are_13_digits_so_a_listing_is_oldest_first():
    early, late = control.held_key("u", 999, JOB), control.held_key("u", 1_000, JOB)
    assert early == f"held/u/0000000000999-{JOB}.json"
    assert sorted([late, early]) == [early, late]
    assert control.parse_held_key(early).at_ms == 999


@pytest.mark.parametrize(
    ("sub", "job_id"),
    [("a/b", JOB), ("", JOB), ("u", "not-a-job"), ("u", JOB.upper()),
     ("u", "3f2b8c1e-9a4d-1e6f-8b2a-1c3d5e7f9a0b")],  # a UUIDv1
)  # fmt: skip
def test_held_keys_refuse_what_is_not_a_subject_or_a_job_id(sub, job_id):
    with pytest.raises(ValueError):
        control.held_key(sub, 1, job_id)


@pytest.mark.parametrize(
    "key",
    [
        f"held/u/1776620100000-{JOB}",  # no .json
        f"held/u/177662010000-{JOB}.json",  # 12 digits
        f"held/u/a/1776620100000-{JOB}.json",  # a / in the subject
        f"requests/u/1776620100000-{JOB}.json",
        "held/u/1776620100000-3f2b8c1e-9a4d-1e6f-8b2a-1c3d5e7f9a0b.json",  # not a UUIDv4
    ],
)
def test_other_keys_are_not_held_jobs(key):
    assert control.parse_held_key(key) is None


# --- resize results and the state document ------------------------------------------------
def test_resize_results_are_named_by_operation():
    assert control.resize_result_key(JOB) == f"results/resize/{JOB}.json"
    with pytest.raises(ValueError, match="not an operation id"):
        control.resize_result_key("../state")


@pytest.mark.parametrize("body", [None, b"", b"{", b"[]", b'"asleep"', b"\xff"])
def test_a_missing_or_malformed_state_reads_as_empty(body):
    assert control.parse_state(body) == {}


def test_the_queue_of_a_state():
    state = control.parse_state(
        b'{"state": "awake", "queue": {"id": "tinyllama-queue-3", "status": "available",'
        b' "url": "rediss://q:6379/0"}}'
    )
    assert control.queue_of(state) == control.QueueRecord(
        "tinyllama-queue-3", "available", "rediss://q:6379/0"
    )
    assert control.queue_of({"queue": None}) is None
    assert control.queue_of({"queue": {"status": "creating"}}) is None
    assert control.queue_of({}) is None

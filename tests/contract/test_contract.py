"""The job contract (docs/architecture.md): request validation, key names, stored fields, errors."""

from __future__ import annotations

import json
import uuid

import pytest

from tlops import contract
from tlops.contract import job_key, new_job_id, records, reply_s3_uri, responses
from tlops.contract.request import InferRequest, RequestError, parse_infer_request


def refused_field(payload) -> str:
    with pytest.raises(RequestError) as info:
        parse_infer_request(payload)
    return info.value.field


# --- accepted bodies ----------------------------------------------------------
def test_minimal_body_gets_defaults():
    request = parse_infer_request({"prompt": "hello"})
    assert request == InferRequest(prompt="hello", idle=5, max_tokens=None, temperature=None)
    assert request.idle == contract.IDLE_DEFAULT_MINUTES == 5


def test_full_body_is_kept():
    request = parse_infer_request(
        {"prompt": "Why is the sky blue?", "idle": 12, "max_tokens": 256, "temperature": 0.7}
    )
    assert request == InferRequest(
        prompt="Why is the sky blue?", idle=12, max_tokens=256, temperature=0.7
    )


def test_body_from_json_text():
    request = parse_infer_request(json.loads('{"prompt": "h\\u00e9", "idle": 30}'))
    assert request.prompt == "hé"
    assert request.idle == 30


@pytest.mark.parametrize("idle", [1, 30])
def test_idle_bounds_accepted(idle):
    assert parse_infer_request({"prompt": "p", "idle": idle}).idle == idle


@pytest.mark.parametrize("max_tokens", [1, 4096])
def test_max_tokens_bounds_accepted(max_tokens):
    assert parse_infer_request({"prompt": "p", "max_tokens": max_tokens}).max_tokens == max_tokens


@pytest.mark.parametrize(("temperature", "expected"), [(0, 0.0), (1, 1.0), (0.7, 0.7), (2, 2.0)])
def test_temperature_accepted_as_float(temperature, expected):
    value = parse_infer_request({"prompt": "p", "temperature": temperature}).temperature
    assert value == expected
    assert type(value) is float


def test_optional_fields_may_be_null():
    request = parse_infer_request({"prompt": "p", "max_tokens": None, "temperature": None})
    assert request.max_tokens is None
    assert request.temperature is None


# --- the body -----------------------------------------------------------------
@pytest.mark.parametrize("payload", [[], ["prompt"], "prompt", "", 5, 3.5, None, True])
def test_body_not_an_object(payload):
    assert refused_field(payload) == "body"


# --- prompt -------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"idle": 5},
        {"prompt": ""},
        {"prompt": 5},
        {"prompt": 1.5},
        {"prompt": ["x"]},
        {"prompt": {"text": "x"}},
        {"prompt": None},
        {"prompt": True},
        {"prompt": "\ud800"},
        {"prompt": "ok \udfff ok"},
    ],
    ids=repr,
)
def test_prompt_refused(payload):
    assert refused_field(payload) == "prompt"


def test_prompt_size_is_counted_in_utf8_bytes():
    prompt = "€" * 2049  # 2049 characters, 6147 bytes
    assert len(prompt) < contract.PROMPT_MAX_BYTES < len(prompt.encode())
    with pytest.raises(RequestError) as info:
        parse_infer_request({"prompt": prompt})
    assert info.value.field == "prompt"
    assert "6147" in info.value.message


@pytest.mark.parametrize(
    "prompt",
    ["x" * 6144, "€" * 2048, "é" * 3072, "😀" * 1536],
    ids=["ascii", "3-byte", "2-byte", "4-byte"],
)
def test_prompt_of_exactly_6144_bytes_accepted(prompt):
    assert len(prompt.encode()) == 6144
    assert parse_infer_request({"prompt": prompt}).prompt == prompt


@pytest.mark.parametrize("prompt", ["x" * 6145, "€" * 2048 + "x", "😀" * 1537])
def test_prompt_one_byte_over_refused(prompt):
    assert refused_field({"prompt": prompt}) == "prompt"


def test_single_byte_prompt_accepted():
    assert parse_infer_request({"prompt": "x"}).prompt == "x"


# --- idle, max_tokens, temperature -------------------------------------------
@pytest.mark.parametrize("idle", [0, 31, -1, "5", 3.5, 5.0, True, False, None, [5], {"m": 5}])
def test_idle_refused(idle):
    assert refused_field({"prompt": "p", "idle": idle}) == "idle"


@pytest.mark.parametrize("max_tokens", [0, 4097, -5, "10", 1.5, 10.0, True, [1]])
def test_max_tokens_refused(max_tokens):
    assert refused_field({"prompt": "p", "max_tokens": max_tokens}) == "max_tokens"


@pytest.mark.parametrize(
    "temperature",
    [-0.1, 2.1, 3, "1", float("nan"), float("inf"), float("-inf"), True, False, [0.5]],
    ids=repr,
)
def test_temperature_refused(temperature):
    assert refused_field({"prompt": "p", "temperature": temperature}) == "temperature"


def test_temperature_huge_integer_refused_as_request_error():
    payload = json.loads('{"prompt": "p", "temperature": ' + "1" * 400 + "}")
    assert refused_field(payload) == "temperature"


def test_huge_integer_idle_refused():
    payload = json.loads('{"prompt": "p", "idle": ' + "9" * 400 + "}")
    assert refused_field(payload) == "idle"


# --- unknown fields and ordering ---------------------------------------------
@pytest.mark.parametrize("name", ["foo", "Prompt", "model", ""])
def test_unknown_field_is_named(name):
    assert refused_field({"prompt": "p", name: 1}) == name


def test_unknown_field_reported_even_without_prompt():
    assert refused_field({"foo": 1}) == "foo"


def test_error_message_is_human_readable():
    with pytest.raises(RequestError) as info:
        parse_infer_request({"prompt": "p", "idle": 31})
    assert info.value.message
    assert "31" in info.value.message
    assert str(info.value).startswith("idle: ")


# --- errors -------------------------------------------------------------------
def test_request_error_body_shape():
    error = RequestError("idle", "must be from 1 to 30, got 31")
    assert error.body() == {
        "error": "invalid_request",
        "field": "idle",
        "message": "must be from 1 to 30, got 31",
    }


def test_request_error_body_from_parse_is_json_serialisable():
    with pytest.raises(RequestError) as info:
        parse_infer_request({"prompt": "p", "foo": 1})
    body = json.loads(json.dumps(info.value.body()))
    assert body["error"] == "invalid_request"
    assert body["field"] == "foo"
    assert set(body) == {"error", "field", "message"}


def test_error_body_and_response_bodies():
    assert responses.error_body(contract.ErrorCode.RATE_LIMITED) == {"error": "rate_limited"}
    assert responses.error_body(contract.ErrorCode.QUEUE_UNAVAILABLE, x=1) == {
        "error": "queue_unavailable",
        "x": 1,
    }
    assert responses.queued_body("abc") == {"status": "queued", "id": "abc"}
    assert responses.starting_body("abc", 90) == {"status": "starting", "eta": 90, "id": "abc"}


# --- keys ----------------------------------------------------------------------
def test_new_job_id_is_a_lowercase_uuid4():
    job_id = new_job_id()
    assert uuid.UUID(job_id).version == 4
    assert job_id == job_id.lower()
    assert new_job_id() != job_id
    assert job_key(job_id) == "job:" + job_id


@pytest.mark.parametrize(
    "value",
    [
        # fixed values: the ids must be the same in every test worker's collection
        "22606551-BB07-49B8-B975-EE5F144BDED1",  # upper case
        "e513364c-ee1b-11f1-8648-02fc00000001",  # version 1
        "26930ecd2cd04365a9f96f73c2320ed0",  # no dashes
        "../x",
        "job:x",
        "",
        "*",
        "00000000-0000-4000-8000-00000000000",  # one digit short
        "00000000-0000-4000-c000-000000000000",  # wrong variant
        " 71ba9991-d6e3-4de7-991a-0c4d28baae6a",
    ],
)
def test_job_key_refuses_non_uuid4(value):
    with pytest.raises(ValueError, match="not a job id"):
        job_key(value)
    assert not contract.is_job_id(value)


@pytest.mark.parametrize("value", [None, 5, uuid.uuid4()])
def test_is_job_id_refuses_non_strings(value):
    assert contract.is_job_id(value) is False


def test_job_key_refuses_trailing_newline():
    with pytest.raises(ValueError):
        job_key(new_job_id() + "\n")


def test_other_key_names():
    assert contract.rate_key("user-1") == "rate:user-1"
    assert contract.stop_rate_key("user-1") == "rate:stop:user-1"
    assert contract.JOB_STREAM == "jobs"
    assert contract.HEARTBEAT_KEY == "watcher:heartbeat"


def test_idempotency_keys_are_scoped_by_user():
    assert contract.idempotency_key("alice", "k-1") == "idem:alice:k-1"
    assert contract.idempotency_key("bob", "k-1") != contract.idempotency_key("alice", "k-1")
    assert contract.IDEMPOTENCY_TTL_SECONDS == 3600


@pytest.mark.parametrize("key", ["", "a b", "x" * 129, "é", "a/b", "a\nb", None, 5], ids=repr)
def test_idempotency_key_refuses_what_the_header_may_not_hold(key):
    assert not contract.is_idempotency_key(key)
    with pytest.raises(ValueError):
        contract.idempotency_key("alice", key)


@pytest.mark.parametrize(
    "key", ["a", "x" * 128, "A.b_c:d-9", "c2735865-6f37-45ec-9442-5655682c6781"]
)
def test_idempotency_key_accepts_its_alphabet(key):
    assert contract.is_idempotency_key(key)


def test_reply_s3_uri():
    job_id = new_job_id()
    assert reply_s3_uri("replies", "sub-1", job_id) == f"s3://replies/sub-1/{job_id}.json"


# --- the stored job fields -----------------------------------------------------
def test_queued_job_fields_minimal():
    job_id = new_job_id()
    fields = records.queued(
        InferRequest(prompt="hi"), sub="sub-1", job_id=job_id, reply_bucket="bucket"
    )
    assert fields == {
        "status": "queued",
        "sub": "sub-1",
        "prompt": "hi",
        "idle": "5",
        "reply_s3": f"s3://bucket/sub-1/{job_id}.json",
        "attempts": "0",
        "error": "",
    }
    assert "ts" not in fields  # added by Redis' clock when written


def test_queued_job_fields_full_are_strings():
    job_id = new_job_id()
    request = parse_infer_request({"prompt": "p", "idle": 7, "max_tokens": 100, "temperature": 0.7})
    fields = records.queued(request, sub="s", job_id=job_id, reply_bucket="b")
    assert fields["idle"] == "7"
    assert fields["max_tokens"] == "100"
    assert float(fields["temperature"]) == 0.7
    assert all(isinstance(value, str) for value in fields.values())


def test_queued_job_fields_integer_temperature_round_trips():
    request = parse_infer_request({"prompt": "p", "temperature": 1})
    fields = records.queued(request, sub="s", job_id=new_job_id(), reply_bucket="b")
    assert float(fields["temperature"]) == 1.0


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/sub/id.json", ("bucket", "sub/id.json")),
        ("s3://bucket/", None),
        ("s3:///key", None),
        ("https://bucket/key", None),
        ("", None),
    ],
)
def test_split_s3_uri_takes_back_what_reply_s3_uri_makes(uri, expected):
    assert contract.split_s3_uri(uri) == expected
    made = contract.reply_s3_uri("b", "alice", contract.new_job_id())
    assert contract.reply_s3_uri("b", "alice", "x") == "s3://b/alice/x.json"
    assert contract.split_s3_uri(made)[0] == "b"

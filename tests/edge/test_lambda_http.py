"""Reading payload-2.0 events and writing HTTP API responses (tlops.lambda_http)."""

from __future__ import annotations

import base64
import json

import pytest

from tlops.edge import lambda_http
from tlops.edge.lambda_http import BodyError, body_bytes, headers, request_id, response, route_key


# --- route_key ------------------------------------------------------------------------
def test_route_key_is_taken_from_the_event():
    assert route_key({"routeKey": "POST /infer", "rawPath": "/other"}) == "POST /infer"


@pytest.mark.parametrize("key", ["$default", "", None])
def test_route_key_falls_back_to_method_and_raw_path(key):
    event = {
        "routeKey": key,
        "rawPath": "/ping",
        "requestContext": {"http": {"method": "GET", "path": "/ping"}},
    }
    assert route_key(event) == "GET /ping"


def test_route_key_without_anything_is_get_root():
    assert route_key({}) == "GET /"


# --- request id, source ip ------------------------------------------------------------
def test_request_id_and_source_ip():
    event = {"requestContext": {"requestId": "abc=", "http": {"sourceIp": "10.20.1.5"}}}
    assert request_id(event) == "abc="
    assert lambda_http.source_ip(event) == "10.20.1.5"


def test_request_id_and_source_ip_missing_are_empty():
    assert request_id({}) == ""
    assert lambda_http.source_ip({}) == ""
    assert lambda_http.source_ip({"requestContext": {}}) == ""


# --- headers --------------------------------------------------------------------------
def test_headers_are_lower_cased():
    event = {"headers": {"Authorization": "Bearer t", "X-Forwarded-For": "1.2.3.4", "a": "b"}}
    assert headers(event) == {"authorization": "Bearer t", "x-forwarded-for": "1.2.3.4", "a": "b"}


@pytest.mark.parametrize("value", [None, {}])
def test_headers_missing_or_null_are_empty(value):
    assert headers({"headers": value}) == {}
    assert headers({}) == {}


def test_header_values_become_strings():
    assert headers({"headers": {"Content-Length": 12}}) == {"content-length": "12"}


# --- body_bytes -----------------------------------------------------------------------
def test_plain_body_is_utf8_encoded():
    assert body_bytes({"body": "héllo ✓"}) == "héllo ✓".encode()


@pytest.mark.parametrize("event", [{}, {"body": None}, {"body": ""}])
def test_missing_body_is_empty(event):
    assert body_bytes(event) == b""


def test_base64_body_is_decoded():
    raw = b'{"prompt":"\xc3\xa9"}\x00\xff'
    event = {"body": base64.b64encode(raw).decode(), "isBase64Encoded": True}
    assert body_bytes(event) == raw


def test_base64_flag_false_leaves_the_body_alone():
    text = base64.b64encode(b"hello").decode()
    assert body_bytes({"body": text, "isBase64Encoded": False}) == text.encode()


def test_empty_base64_body_is_empty():
    assert body_bytes({"body": "", "isBase64Encoded": True}) == b""


@pytest.mark.parametrize("text", ["!!!!", "abc", "aGVsbG8=x", "a b c d", "é"])
def test_invalid_base64_raises_body_error(text):
    with pytest.raises(BodyError):
        body_bytes({"body": text, "isBase64Encoded": True})


def test_body_error_is_a_value_error():
    assert issubclass(BodyError, ValueError)


def test_lone_surrogate_in_a_plain_body_does_not_raise():
    # json.loads of such bytes fails later with a ValueError (a 400), never here
    raw = body_bytes({"body": "\ud800"})
    assert isinstance(raw, bytes)
    with pytest.raises(ValueError):
        json.loads(raw)


# --- response -------------------------------------------------------------------------
def test_response_shape():
    out = response(202, {"status": "queued", "id": "x"}, request_id="rid-1")
    assert set(out) == {"statusCode", "headers", "body"}
    assert out["statusCode"] == 202
    assert out["headers"] == {"content-type": "application/json", "x-request-id": "rid-1"}
    assert isinstance(out["body"], str)
    assert json.loads(out["body"]) == {"status": "queued", "id": "x"}
    assert " " not in out["body"]  # compact separators


def test_response_without_request_id_has_no_request_id_header():
    out = response(200, {"status": "ok"})
    assert out["headers"] == {"content-type": "application/json"}


def test_response_extra_headers_are_added():
    out = response(429, {"error": "rate_limited"}, request_id="r", headers={"retry-after": "3"})
    assert out["headers"]["retry-after"] == "3"
    assert out["headers"]["x-request-id"] == "r"
    assert out["headers"]["content-type"] == "application/json"


def test_response_does_not_share_the_default_headers():
    first = response(200, {}, headers={"x-one": "1"})
    second = response(200, {})
    assert "x-one" not in second["headers"]
    assert "x-one" not in lambda_http.JSON_HEADERS
    first["headers"]["content-type"] = "text/plain"
    assert lambda_http.JSON_HEADERS["content-type"] == "application/json"


def test_response_keeps_non_ascii_as_valid_json():
    out = response(400, {"message": "é ✓"})
    assert json.loads(out["body"]) == {"message": "é ✓"}

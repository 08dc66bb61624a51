"""Reading HTTP API (payload format 2.0) events, and the one shape answers take.

A route function returns an `Answer`; anything that ends a request early,
anywhere below it, raises `Refusal`. The handler turns either into the
Lambda response with `respond`, so no route assembles a response itself.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, NamedTuple

from tlops import contract
from tlops.contract import ErrorCode
from tlops.contract.request import RequestError
from tlops.contract.responses import error_body

JSON_HEADERS = {"content-type": "application/json"}


class Answer(NamedTuple):
    status: int
    body: Any
    headers: dict[str, str] = {}  # noqa: RUF012 - never mutated: respond() copies it


class Refusal(Exception):
    """An answer that ends the request: a status, an error code and what the client may know."""

    def __init__(self, status: int, code: ErrorCode, *, headers=None, **details: Any):
        super().__init__(f"{status} {code}")
        self.answer = Answer(status, error_body(code, **details), headers or {})


def response(
    status: int, body: Any, *, request_id: str = "", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    out_headers = dict(JSON_HEADERS)
    if request_id:
        out_headers["x-request-id"] = request_id
    if headers:
        out_headers.update(headers)
    return {
        "statusCode": status,
        "headers": out_headers,
        "body": json.dumps(body, separators=(",", ":")),
    }


def respond(answer: Answer, request_id: str) -> dict[str, Any]:
    return response(answer.status, answer.body, request_id=request_id, headers=answer.headers)


def request_id(event: dict[str, Any]) -> str:
    return str(event.get("requestContext", {}).get("requestId", ""))


def route_key(event: dict[str, Any]) -> str:
    """`METHOD /path` as the HTTP API matched it (falls back to the raw method and path)."""
    key = event.get("routeKey")
    if key and key != "$default":
        return key
    http = event.get("requestContext", {}).get("http", {})
    return f"{http.get('method', 'GET')} {event.get('rawPath', '/')}"


def source_ip(event: dict[str, Any]) -> str:
    return str(event.get("requestContext", {}).get("http", {}).get("sourceIp", ""))


def headers(event: dict[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}


def path_parameter(event: dict[str, Any], name: str) -> str:
    return str((event.get("pathParameters") or {}).get(name, ""))


class BodyError(ValueError):
    pass


def body_bytes(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BodyError("body is not valid base64") from None
    return body.encode("utf-8", "surrogatepass")


def invalid(field: str, message: str) -> Refusal:
    """The 400 that names the field a client got wrong."""
    return Refusal(400, ErrorCode.INVALID_REQUEST, field=field, message=message)


def parse_json_body[T](event: dict[str, Any], parse: Callable[[Any], T]) -> T:
    """The JSON body, decoded, bounded and handed to the contract's `parse`: a 413 over
    `MAX_BODY_BYTES`, a 400 naming `body` or the field `parse` refused."""
    try:
        raw = body_bytes(event)
    except BodyError as exc:
        raise invalid("body", str(exc)) from None
    if len(raw) > contract.MAX_BODY_BYTES:
        raise Refusal(413, ErrorCode.PAYLOAD_TOO_LARGE, limit=contract.MAX_BODY_BYTES)
    try:
        payload = json.loads(raw)
    except ValueError:
        raise invalid("body", "must be valid JSON") from None
    except RecursionError:
        raise invalid("body", "is nested too deeply") from None
    try:
        return parse(payload)
    except RequestError as exc:
        raise invalid(exc.field, exc.message) from None

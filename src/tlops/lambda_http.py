"""Reading HTTP API (payload format 2.0) events and writing their responses."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

JSON_HEADERS = {"content-type": "application/json"}


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

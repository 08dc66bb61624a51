"""The job contract: the one definition shared by the router, the watcher and the CLI.

Everything a client sends, everything stored in Redis and every error body a
client can receive is defined in this package (ARCHITECTURE §3). Other modules
import these names; none of them spell a key, a status or an error code.

This module is plain Python on purpose: the router imports it on every cold
start, and pydantic alone costs more than that start's whole 200 ms budget
(docs/decisions.md). The typed models of what is stored and returned, which
the watcher and the CLI use, are pydantic models in `tlops.contract.records`.
"""

from __future__ import annotations

import enum
import re
import uuid
from typing import Any, NamedTuple

# --- limits -----------------------------------------------------------------
PROMPT_MAX_BYTES = 6 * 1024  # "6 kB" of UTF-8, counted in bytes, not characters
IDLE_DEFAULT_MINUTES = 5
IDLE_MIN_MINUTES = 1
IDLE_MAX_MINUTES = 30
MAX_TOKENS_LIMIT = 4096
QUEUED_TTL_SECONDS = 300  # a job nobody picked up within this is gone (configurable)
MAX_BODY_BYTES = 64 * 1024  # the edge refuses larger bodies with 413
FINISHED_TTL_SECONDS = 3600  # done/failed/expired records stay readable by GET /jobs this long
HEARTBEAT_TTL_SECONDS = 30  # a watcher refreshes its heartbeat well within this
VISIBILITY_TIMEOUT_SECONDS = 120  # an unacknowledged delivery older than this is reclaimed
MAX_DELIVERIES = 3  # deliveries of one job before it goes to the dead-letter stream

# --- Redis names ------------------------------------------------------------
JOB_KEY_PREFIX = "job:"
JOB_STREAM = "jobs"
DEAD_LETTER_STREAM = "jobs:dead"
CONSUMER_GROUP = "watchers"
HEARTBEAT_KEY = "watcher:heartbeat"  # present (with a TTL) while a watcher runs
RATE_KEY_PREFIX = "rate:"

_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


class ErrorCode(enum.StrEnum):
    """The `error` values a client can receive; each maps to one HTTP status."""

    INVALID_REQUEST = "invalid_request"  # 400
    UNAUTHORIZED = "unauthorized"  # 401, no token at all
    INVALID_TOKEN = "invalid_token"  # 403  # noqa: S105 - an error code, not a secret
    NOT_FOUND = "not_found"  # 404
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    PAYLOAD_TOO_LARGE = "payload_too_large"  # 413
    RATE_LIMITED = "rate_limited"  # 429
    QUEUE_UNAVAILABLE = "queue_unavailable"  # 503
    INSTANCE_UNAVAILABLE = "instance_unavailable"  # 503
    AUTH_UNAVAILABLE = "auth_unavailable"  # 503, the JWKS cannot be fetched
    FORBIDDEN = "forbidden"  # 403 for non-JWT refusals (source IP, CORS origin)


def new_job_id() -> str:
    return str(uuid.uuid4())


def is_job_id(value: str) -> bool:
    return isinstance(value, str) and _UUID4.fullmatch(value) is not None


def job_key(job_id: str) -> str:
    """The Redis key of a job record; refuses anything that is not a lowercase UUIDv4."""
    if not is_job_id(job_id):
        raise ValueError(f"not a job id (lowercase UUIDv4 expected): {job_id!r}")
    return JOB_KEY_PREFIX + job_id


def rate_key(sub: str) -> str:
    return RATE_KEY_PREFIX + sub


def reply_s3_uri(bucket: str, sub: str, job_id: str) -> str:
    return f"s3://{bucket}/{sub}/{job_id}.json"


def split_s3_uri(uri: str) -> tuple[str, str] | None:
    """(bucket, key) of an `s3://bucket/key` URI; None when it is not one."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        return None
    return bucket, key


# --- the request ------------------------------------------------------------
REQUEST_FIELDS = ("prompt", "idle", "max_tokens", "temperature")
TEMPERATURE_MAX = 2.0


class InferRequest(NamedTuple):
    """Body of `POST /infer`, validated by `parse_infer_request`."""

    prompt: str
    idle: int = IDLE_DEFAULT_MINUTES
    max_tokens: int | None = None
    temperature: float | None = None


class RequestError(Exception):
    """A client error in the request body: which field, and what is wrong with it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def body(self) -> dict[str, str]:
        return error_body(ErrorCode.INVALID_REQUEST, field=self.field, message=self.message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bounded_int(payload: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise RequestError(name, f"must be a whole number from {low} to {high}")
    if not low <= value <= high:
        raise RequestError(name, f"must be from {low} to {high}, got {value}")
    return value


def parse_infer_request(payload: Any) -> InferRequest:
    """Validate an already JSON-decoded body; raise RequestError naming the first bad field.

    Numbers are not coerced ("5" and 3.5 are not an idle time), unknown fields
    are refused, and the prompt is measured in UTF-8 bytes.
    """
    if not isinstance(payload, dict):
        raise RequestError("body", "must be a JSON object")
    for name in payload:
        if name not in REQUEST_FIELDS:
            raise RequestError(str(name), "unknown field")

    if "prompt" not in payload:
        raise RequestError("prompt", "is required")
    prompt = payload["prompt"]
    if not isinstance(prompt, str):
        raise RequestError("prompt", "must be a string")
    try:
        size = len(prompt.encode("utf-8"))
    except UnicodeEncodeError:
        raise RequestError("prompt", "must be valid UTF-8 text (no lone surrogates)") from None
    if size < 1:
        raise RequestError("prompt", "must not be empty")
    if size > PROMPT_MAX_BYTES:
        raise RequestError(
            "prompt", f"must be at most {PROMPT_MAX_BYTES} bytes of UTF-8, got {size}"
        )

    if "idle" in payload and payload["idle"] is None:
        raise RequestError(
            "idle", f"must be a whole number from {IDLE_MIN_MINUTES} to {IDLE_MAX_MINUTES}"
        )
    idle = _bounded_int(payload, "idle", IDLE_MIN_MINUTES, IDLE_MAX_MINUTES)
    max_tokens = _bounded_int(payload, "max_tokens", 1, MAX_TOKENS_LIMIT)

    temperature = payload.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise RequestError("temperature", f"must be a number from 0 to {TEMPERATURE_MAX:g}")
        # A plain range check: NaN compares false, infinities and integers too big for a
        # float fall outside, and nothing here converts the value (which could overflow).
        if not 0 <= temperature <= TEMPERATURE_MAX:
            raise RequestError("temperature", f"must be from 0 to {TEMPERATURE_MAX:g}")
        temperature = float(temperature)

    return InferRequest(
        prompt=prompt,
        idle=IDLE_DEFAULT_MINUTES if idle is None else idle,
        max_tokens=max_tokens,
        temperature=temperature,
    )


def queued_job_fields(
    request: InferRequest, *, sub: str, job_id: str, reply_bucket: str
) -> dict[str, str]:
    """The hash fields of a new job record; `ts` is added by Redis' clock when it is written."""
    fields = {
        "status": JobStatus.QUEUED.value,
        "sub": sub,
        "prompt": request.prompt,
        "idle": str(request.idle),
        "reply_s3": reply_s3_uri(reply_bucket, sub, job_id),
        "attempts": "0",
        "error": "",
    }
    if request.max_tokens is not None:
        fields["max_tokens"] = str(request.max_tokens)
    if request.temperature is not None:
        fields["temperature"] = repr(request.temperature)
    return fields


# --- responses --------------------------------------------------------------
def error_body(code: ErrorCode, **details: Any) -> dict[str, Any]:
    return {"error": str(code), **details}


def queued_body(job_id: str) -> dict[str, str]:
    return {"status": JobStatus.QUEUED.value, "id": job_id}


def starting_body(job_id: str, eta_seconds: int) -> dict[str, Any]:
    return {"status": "starting", "eta": eta_seconds, "id": job_id}

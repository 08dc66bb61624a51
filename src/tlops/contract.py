"""The job contract: the one definition shared by the router, the watcher and the CLI.

Everything a client sends, everything stored in Redis and every error body a
client can receive is defined here (ARCHITECTURE §3). Other modules import
these names; none of them spell a key, a status or an error code themselves.
"""

from __future__ import annotations

import enum
import re
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# --- limits -----------------------------------------------------------------
PROMPT_MAX_BYTES = 6 * 1024  # "6 kB" of UTF-8, counted in bytes, not characters
IDLE_DEFAULT_MINUTES = 5
IDLE_MIN_MINUTES = 1
IDLE_MAX_MINUTES = 30
MAX_TOKENS_LIMIT = 4096
QUEUED_TTL_SECONDS = 300  # a job nobody picked up within this is gone (configurable)
MAX_BODY_BYTES = 64 * 1024  # the edge refuses larger bodies with 413

# --- Redis names ------------------------------------------------------------
JOB_KEY_PREFIX = "job:"
JOB_STREAM = "jobs"
DEAD_LETTER_STREAM = "jobs:dead"
CONSUMER_GROUP = "watchers"
HEARTBEAT_KEY = "watcher:heartbeat"  # present (with a TTL) while a watcher runs
RATE_KEY_PREFIX = "rate:"

_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


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
    INVALID_TOKEN = "invalid_token"  # 403
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
    return isinstance(value, str) and _UUID4.match(value) is not None


def job_key(job_id: str) -> str:
    """The Redis key of a job record; refuses anything that is not a lowercase UUIDv4."""
    if not is_job_id(job_id):
        raise ValueError(f"not a job id (lowercase UUIDv4 expected): {job_id!r}")
    return JOB_KEY_PREFIX + job_id


def rate_key(sub: str) -> str:
    return RATE_KEY_PREFIX + sub


def reply_s3_uri(bucket: str, sub: str, job_id: str) -> str:
    return f"s3://{bucket}/{sub}/{job_id}.json"


# --- the request ------------------------------------------------------------
StrictIdle = Annotated[int, Field(ge=IDLE_MIN_MINUTES, le=IDLE_MAX_MINUTES, strict=True)]


class InferRequest(BaseModel):
    """Body of `POST /infer`. Unknown fields are refused; numbers are not coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: Annotated[str, Field(strict=True)]
    idle: StrictIdle = IDLE_DEFAULT_MINUTES
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT, strict=True)] | None = None
    temperature: (
        Annotated[float, Field(ge=0.0, le=2.0, strict=True, allow_inf_nan=False)] | None
    ) = None

    @field_validator("prompt")
    @classmethod
    def _prompt_size(cls, value: str) -> str:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("must be valid UTF-8 text (no lone surrogates)") from None
        if size < 1:
            raise ValueError("must not be empty")
        if size > PROMPT_MAX_BYTES:
            raise ValueError(f"must be at most {PROMPT_MAX_BYTES} bytes of UTF-8, got {size}")
        return value


class RequestError(Exception):
    """A client error in the request body: which field, and what is wrong with it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def body(self) -> dict[str, str]:
        return error_body(ErrorCode.INVALID_REQUEST, field=self.field, message=self.message)


def parse_infer_request(payload: Any) -> InferRequest:
    """Validate an already JSON-decoded body; raise RequestError naming the first bad field."""
    if not isinstance(payload, dict):
        raise RequestError("body", "must be a JSON object")
    try:
        return InferRequest.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        elif first["type"] == "missing":
            message = "is required"
        else:
            message = first["msg"].removeprefix("Value error, ")
        raise RequestError(field, message) from None


# --- what is stored ---------------------------------------------------------
class JobRecord(BaseModel):
    """The Redis hash `job:{id}`. Hash values are strings on the wire; this is the typed view."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: JobStatus
    sub: str
    prompt: str
    idle: int
    reply_s3: str
    ts: int = Field(description="enqueue time, ms since the epoch")
    attempts: int = 0
    error: str = ""
    max_tokens: int | None = None
    temperature: float | None = None

    def to_hash(self) -> dict[str, str]:
        """Flatten to the string fields Redis stores; optional fields left out when unset."""
        fields = self.model_dump(exclude={"id"}, exclude_none=True, mode="json")
        return {name: str(value) for name, value in fields.items()}

    @classmethod
    def from_hash(cls, job_id: str, fields: dict[str, str]) -> JobRecord:
        return cls.model_validate({"id": job_id, **fields})


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


class JobResult(BaseModel):
    """The JSON written to `s3://{reply_bucket}/{sub}/{job_id}.json`."""

    id: str
    status: JobStatus
    output: str = ""
    usage: dict[str, int] = Field(default_factory=dict)
    model: str = ""
    latency_ms: float = 0.0
    queued_at_ms: int
    started_at_ms: int
    finished_at_ms: int
    error: str = ""


# --- responses --------------------------------------------------------------
def error_body(code: ErrorCode, **details: Any) -> dict[str, Any]:
    return {"error": str(code), **details}


def queued_body(job_id: str) -> dict[str, str]:
    return {"status": JobStatus.QUEUED.value, "id": job_id}


def starting_body(job_id: str, eta_seconds: int) -> dict[str, Any]:
    return {"status": "starting", "eta": eta_seconds, "id": job_id}

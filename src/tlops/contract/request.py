"""The body of `POST /infer`: what a client may send, validated field by field."""

from __future__ import annotations

from typing import Any, NamedTuple

from tlops.contract import (
    IDLE_DEFAULT_MINUTES,
    IDLE_MAX_MINUTES,
    IDLE_MIN_MINUTES,
    MAX_TOKENS_LIMIT,
    PROMPT_MAX_BYTES,
    ErrorCode,
)
from tlops.contract.responses import error_body

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

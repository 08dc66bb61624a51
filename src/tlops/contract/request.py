"""The body of `POST /infer`: what a client may send, validated field by field.

A job is a completion of a bare `prompt`, or a chat: `messages` in OpenAI's chat
format, which the node sends to the model's chat template
(docs/decisions.md, "A prompt and a conversation").
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tlops.contract import (
    IDLE_DEFAULT_MINUTES,
    IDLE_MAX_MINUTES,
    IDLE_MIN_MINUTES,
    MAX_TOKENS_LIMIT,
    MESSAGES_MAX,
    PROMPT_MAX_BYTES,
    ErrorCode,
)
from tlops.contract.responses import error_body

REQUEST_FIELDS = ("prompt", "messages", "idle", "max_tokens", "temperature")
TEMPERATURE_MAX = 2.0
# The roles a conversation may hold, as stored; OpenAI's newer `developer` role is the
# system message under another name, and is stored as `system`.
ROLES = ("system", "user", "assistant")
_ROLE_ALIASES = {"developer": "system"}
_MESSAGE_KEYS = ("role", "content", "name")  # `name` is accepted and not sent on


class InferRequest(NamedTuple):
    """Body of `POST /infer`, validated by `parse_infer_request`: exactly one of `prompt` and
    `messages` (each message `{"role", "content"}`, the content as plain text)."""

    prompt: str | None
    messages: tuple[dict[str, str], ...] | None = None
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


def _utf8_size(text: str, field: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise RequestError(field, "must be valid UTF-8 text (no lone surrogates)") from None


def parse_prompt(prompt: Any, field: str = "prompt") -> str:
    """A completion's text: a string of 1 to PROMPT_MAX_BYTES bytes of UTF-8."""
    if not isinstance(prompt, str):
        raise RequestError(field, "must be a string")
    size = _utf8_size(prompt, field)
    if size < 1:
        raise RequestError(field, "must not be empty")
    if size > PROMPT_MAX_BYTES:
        raise RequestError(field, f"must be at most {PROMPT_MAX_BYTES} bytes of UTF-8, got {size}")
    return prompt


def _message_text(content: Any, field: str) -> str:
    """A message's content as text: a string, or a list of `{"type": "text", "text"}` parts
    (joined); any other part (images, audio, files) is refused, naming it."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestError(field, "must be a string or a list of text parts")
    texts = []
    for index, part in enumerate(content):
        where = f"{field}[{index}]"
        if not isinstance(part, dict):
            raise RequestError(where, 'must be an object {"type": "text", "text": "..."}')
        kind = part.get("type")
        if kind != "text":
            raise RequestError(f"{where}.type", f"only text parts are supported, got {kind!r}")
        for name in part:
            if name not in ("type", "text"):
                raise RequestError(f"{where}.{name}", "unknown field")
        if not isinstance(part.get("text"), str):
            raise RequestError(f"{where}.text", "must be a string")
        texts.append(part["text"])
    return "".join(texts)


def parse_messages(value: Any, field: str = "messages") -> tuple[dict[str, str], ...]:
    """A conversation in OpenAI's chat format, as stored: `{"role", "content"}` each, roles
    system, user and assistant, text only; 1 to MESSAGES_MAX messages whose texts together
    are 1 to PROMPT_MAX_BYTES bytes of UTF-8. Tools and function calls are refused."""
    if not isinstance(value, list):
        raise RequestError(field, "must be a list of messages")
    if not value:
        raise RequestError(field, "must hold at least one message")
    if len(value) > MESSAGES_MAX:
        raise RequestError(field, f"must hold at most {MESSAGES_MAX} messages, got {len(value)}")
    messages, size = [], 0
    for index, message in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(message, dict):
            raise RequestError(where, 'must be an object {"role": ..., "content": ...}')
        for name in message:
            if name in ("tool_calls", "function_call", "tool_call_id"):
                raise RequestError(f"{where}.{name}", "tools and functions are not supported")
            if name not in _MESSAGE_KEYS:
                raise RequestError(f"{where}.{name}", "unknown field")
        role = message.get("role")
        role = _ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        if role not in ROLES:
            raise RequestError(
                f"{where}.role", f"must be one of {', '.join(ROLES)}, got {message.get('role')!r}"
            )
        if "content" not in message:
            raise RequestError(f"{where}.content", "is required")
        text = _message_text(message["content"], f"{where}.content")
        size += _utf8_size(text, f"{where}.content")
        messages.append({"role": role, "content": text})
    if size < 1:
        raise RequestError(field, "must hold some text")
    if size > PROMPT_MAX_BYTES:
        raise RequestError(
            field, f"must be at most {PROMPT_MAX_BYTES} bytes of UTF-8 in all, got {size}"
        )
    return tuple(messages)


def parse_infer_request(payload: Any) -> InferRequest:
    """Validate an already JSON-decoded body; raise RequestError naming the first bad field.

    Numbers are not coerced ("5" and 3.5 are not an idle time), unknown fields
    are refused, and texts are measured in UTF-8 bytes.
    """
    if not isinstance(payload, dict):
        raise RequestError("body", "must be a JSON object")
    for name in payload:
        if name not in REQUEST_FIELDS:
            raise RequestError(str(name), "unknown field")

    prompt, messages = None, None
    if "messages" in payload:
        if "prompt" in payload:
            raise RequestError("prompt", "send either prompt or messages, not both")
        messages = parse_messages(payload["messages"])
    elif "prompt" in payload:
        prompt = parse_prompt(payload["prompt"])
    else:
        raise RequestError("prompt", "is required (or messages, for a chat)")

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
        messages=messages,
        idle=IDLE_DEFAULT_MINUTES if idle is None else idle,
        max_tokens=max_tokens,
        temperature=temperature,
    )

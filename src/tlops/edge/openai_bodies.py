"""The bodies of the OpenAI-compatible `/v1` routes: requests validated as `POST /infer`'s
are (the same limits, field by field, a 400 naming the field), answers shaped as OpenAI's.

Plain functions of the body and of a job's view (`GET /jobs/{id}`); the routes that use
them are in `tlops.edge.openai_routes`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tlops.contract import MAX_TOKENS_LIMIT, MESSAGES_MAX, PROMPT_MAX_BYTES, JobStatus, request
from tlops.contract.failures import FailureReason
from tlops.contract.request import InferRequest, RequestError

RESPONSE_PREFIX = "resp_"

# A job's status → a Response's, and the status of its output message.
_RESPONSE_STATUS = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "in_progress",
    JobStatus.DONE: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.EXPIRED: "failed",
    JobStatus.CANCELLED: "cancelled",
}
_MESSAGE_STATUS = {"in_progress": "in_progress", "completed": "completed"}  # else incomplete

# Accepted and not used (docs/api.md); every other field not read below is refused.
_IGNORED = ("metadata", "store", "user")
_NO_TOOLS = "tools and functions are not supported"
_UNSUPPORTED = {
    name: _NO_TOOLS
    for name in ("tools", "tool_choice", "functions", "function_call", "parallel_tool_calls")
}
_STREAM = (
    "streaming is not supported (the HTTP API buffers answers): create the response with "
    "POST /v1/responses and background true, and read the text so far from "
    "GET /v1/responses/{id}"
)


# --- the requests -------------------------------------------------------------------
class Ask(NamedTuple):
    """A validated /v1 request: the model asked for, the job, and whether to queue it."""

    model: str
    job: InferRequest
    background: bool = False


def _known_fields(body: Any, read: tuple[str, ...]) -> dict[str, Any]:
    """The body as an object; a field it does not read is refused, naming it (a null one
    counts as absent), except those accepted and ignored."""
    if not isinstance(body, dict):
        raise RequestError("body", "must be a JSON object")
    for name, value in body.items():
        if name in read or value is None:
            continue
        if name in _IGNORED:
            _check_ignored(name, value)
        else:
            raise RequestError(str(name), _UNSUPPORTED.get(name, "is not supported"))
    return body


def _check_ignored(name: str, value: Any) -> None:
    kinds = {
        "metadata": (dict, "an object"),
        "store": (bool, "true or false"),
        "user": (str, "a string"),
    }
    kind, words = kinds[name]
    if not isinstance(value, kind):
        raise RequestError(name, f"must be {words}")


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model", "is required: the id GET /v1/models lists")
    return model


def _switch(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise RequestError(name, "must be true or false")
    return bool(value)


def _max_tokens(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT:
        raise RequestError(name, f"must be a whole number from 1 to {MAX_TOKENS_LIMIT}")
    return value


def _job(messages: tuple[dict[str, str], ...], body: dict[str, Any], tokens: str) -> InferRequest:
    """The job of a validated conversation, with the body's token limit (named `tokens`)
    and temperature checked as `POST /infer` checks them."""
    payload: dict[str, Any] = {"messages": list(messages)}
    limit = _max_tokens(body, tokens)
    if limit is not None:
        payload["max_tokens"] = limit
    if body.get("temperature") is not None:
        payload["temperature"] = body["temperature"]
    return request.parse_infer_request(payload)


def parse_chat(body: Any) -> Ask:
    """`POST /v1/chat/completions`: model, messages, a token limit, temperature; `n` 1 only,
    no streaming, no tools."""
    read = (
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "n",
        "stream",
    )
    body = _known_fields(body, read)
    model = _model(body)
    if _switch(body, "stream"):
        raise RequestError("stream", _STREAM)
    if body.get("n") is not None and (body["n"] != 1 or isinstance(body["n"], bool)):
        raise RequestError("n", "only one choice (n = 1) is supported")
    messages = request.parse_messages(body.get("messages"), field="messages")
    tokens = "max_tokens"
    if body.get("max_completion_tokens") is not None:
        if body.get("max_tokens") is not None:
            raise RequestError("max_tokens", "send max_tokens or max_completion_tokens, not both")
        tokens = "max_completion_tokens"
    return Ask(model, _job(messages, body, tokens))


def _input_item(item: Any, index: int) -> Any:
    """A Responses input item as a chat message: `type` message only, `input_text` and
    `output_text` parts as text parts (anything else is left for parse_messages to refuse)."""
    if not isinstance(item, dict):
        return item
    kind = item.get("type", "message")
    if kind != "message":
        raise RequestError(f"input[{index}].type", f"only messages are supported, got {kind!r}")
    message = {name: value for name, value in item.items() if name != "type"}
    if isinstance(message.get("content"), list):
        message["content"] = [
            {"type": "text", "text": part.get("text")}
            if isinstance(part, dict) and part.get("type") in ("input_text", "output_text")
            else part
            for part in message["content"]
        ]
    return message


def parse_response(body: Any) -> Ask:
    """`POST /v1/responses`: model, input (a prompt or messages), instructions (a system
    message first), background, max_output_tokens, temperature; no streaming, no tools."""
    read = (
        "model",
        "input",
        "instructions",
        "background",
        "max_output_tokens",
        "temperature",
        "stream",
    )
    body = _known_fields(body, read)
    model = _model(body)
    if _switch(body, "stream"):
        raise RequestError("stream", _STREAM)
    background = _switch(body, "background")
    given = body.get("input")
    if isinstance(given, str):
        messages = ({"role": "user", "content": request.parse_prompt(given, field="input")},)
    elif isinstance(given, list):
        items = [_input_item(item, index) for index, item in enumerate(given)]
        messages = request.parse_messages(items, field="input")
    else:
        raise RequestError("input", "must be a string or a list of messages")
    if body.get("instructions") is not None:
        system = request.parse_prompt(body["instructions"], field="instructions")
        messages = ({"role": "system", "content": system}, *messages)
        if len(messages) > MESSAGES_MAX:
            raise RequestError("input", f"must hold at most {MESSAGES_MAX - 1} messages")
        size = sum(len(message["content"].encode()) for message in messages)
        if size > PROMPT_MAX_BYTES:
            raise RequestError(
                "input", f"must be at most {PROMPT_MAX_BYTES} bytes with the instructions"
            )
    return Ask(model, _job(messages, body, "max_output_tokens"), background)


# --- the answers ----------------------------------------------------------------------------
def _text(view: dict[str, Any]) -> str:
    return str(view.get("output") or view.get("partial_output") or "")


def response_object(
    job_id: str, view: dict[str, Any], *, model: str, created_at: int, background: bool
) -> dict[str, Any]:
    """A job's view (`GET /jobs/{id}`) as OpenAI's Response object."""
    status = _RESPONSE_STATUS.get(view.get("status"), "queued")
    text = _text(view)
    output = []
    if text:
        content = [{"type": "output_text", "text": text, "annotations": []}]
        output.append(
            {
                "type": "message",
                "id": f"msg_{job_id}",
                "role": "assistant",
                "status": _MESSAGE_STATUS.get(status, "incomplete"),
                "content": content,
            }
        )
    error = None
    if status == "failed":
        refused = FailureReason.PROMPT_REFUSED in str(view.get("error", ""))
        error = {
            "code": "invalid_prompt" if refused else "server_error",
            "message": str(view.get("error") or "the job failed"),
        }
    usage = view.get("usage") or {}
    return {
        "id": RESPONSE_PREFIX + job_id,
        "object": "response",
        "created_at": created_at,
        "model": model,
        "status": status,
        "background": background,
        "output": output,
        "error": error,
        "incomplete_details": None,
        "usage": {
            "input_tokens": usage.get("prompt_tokens", 0),
            "output_tokens": usage.get("completion_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        if usage
        else None,
    }


def chat_completion(job_id: str, view: dict[str, Any], *, model: str, created: int) -> dict:
    """A done job's view as OpenAI's `chat.completion`."""
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": _text(view)},
        "finish_reason": view.get("finish_reason") or "stop",
        "logprobs": None,
    }
    answer: dict[str, Any] = {
        "id": f"chatcmpl-{job_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
    }
    usage = view.get("usage") or {}
    if usage:
        answer["usage"] = {
            name: usage.get(name, 0)
            for name in ("prompt_tokens", "completion_tokens", "total_tokens")
        }
    return answer

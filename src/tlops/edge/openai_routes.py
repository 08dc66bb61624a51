"""The OpenAI-compatible routes under `/v1`, for the OpenAI SDKs (docs/api.md).

Mixed into the router (`tlops.edge.router.Router`): the same token, limits,
queue and wake as `POST /infer`; only the shapes differ. Every error the
router answers on these routes is in OpenAI's shape (`as_openai_error`).

A background response is a job, queued as `POST /infer` queues one. A chat
completion (and a response without `background`) is a job the router waits on,
only while the node is awake (a watcher heartbeat) and at most
`sync_waits_max` at once (`sync:waits`, each wait scored by its start, so the
wait of a router that died is dropped); otherwise, and when the job is not done
within the wait, 503 with `Retry-After` and nothing stays queued, so the SDK's
own retries bring the answer without running it twice (docs/decisions.md,
"OpenAI's API over a queue that sleeps").
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.contract import ErrorCode, JobStatus, records
from tlops.contract.failures import FailureReason
from tlops.contract.records import Field
from tlops.contract.request import InferRequest
from tlops.contract.states import StackState
from tlops.edge import admission, boot, lambda_http
from tlops.edge.admission import Admitted
from tlops.edge.control_link import BucketUnavailable
from tlops.edge.lambda_http import Answer, Refusal
from tlops.edge.openai_bodies import (
    RESPONSE_PREFIX,
    Ask,
    chat_completion,
    parse_chat,
    parse_response,
    response_object,
)
from tlops.edge.resp import RedisReplyError, RedisUnavailable, RedisUnreachable, Script

telemetry = Telemetry("router")

OWNED_BY = "tinyllama-ops"
# The SDKs honour a Retry-After of at most 120 s; a boot is announced as at most this.
SYNC_RETRY_AFTER_MAX_S = 30

# OpenAI's error `type` by status; another 4xx is invalid_request_error, another 5xx
# server_error.
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict",
    429: "rate_limit_error",
    503: "service_unavailable",
}
# The message of a router error whose body carries none.
_MESSAGES = {
    ErrorCode.UNAUTHORIZED: "no bearer token: send the Cognito ID token as the API key",
    ErrorCode.INVALID_TOKEN: "the token was refused: sign in again and send the new ID token",
    ErrorCode.NOT_FOUND: "not found: there is no such response of yours (or route)",
    ErrorCode.PAYLOAD_TOO_LARGE: f"the body is over {contract.MAX_BODY_BYTES} bytes",
    ErrorCode.RATE_LIMITED: "over your request rate: retry after the Retry-After seconds",
    ErrorCode.QUEUE_UNAVAILABLE: "the queue is unavailable and nothing was queued: try again",
    ErrorCode.AUTH_UNAVAILABLE: "the sign-in keys could not be read: try again",
}
# KEYS: sync:waits, the heartbeat. ARGV: the most waits, ms after which a wait is surely
# over, ms a wait lasts, this wait's member. {0}: not awake (no heartbeat); {1, 1}: the slot
# taken; {1, 0, ms}: every slot taken, the oldest wait over in ms.
_TAKE_WAIT = Script(
    """
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {1, 0, tonumber(oldest[2]) + tonumber(ARGV[3]) - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {1, 1}
"""
)


def is_openai_route(route: str) -> bool:
    """`POST /v1/responses` and the like: a route key under `/v1/`."""
    return route.partition(" ")[2].startswith("/v1/")


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def openai_error(status: int, message: str, *, code: str, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type(status), "code": code, "param": param}}


def as_openai_error(answer: Answer) -> Answer:
    """An error answer in OpenAI's shape (`param` is the router's `field`), its headers
    (Retry-After) kept; any other answer, and one already in that shape, as it is."""
    body = answer.body
    if answer.status < 400 or not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return answer
    code = body["error"]
    message = body.get("message") or _MESSAGES.get(code) or code.replace("_", " ")
    shaped = openai_error(answer.status, message, code=code, param=body.get("field"))
    return answer._replace(body=shaped)


class OpenAIRefusal(Refusal):
    """A refusal in OpenAI's shape, with a code of its own (`model_not_found`, ...)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        Exception.__init__(self, f"{status} {code}")
        self.answer = Answer(
            status, openai_error(status, message, code=code, param=param), headers or {}
        )


def _retry_later(
    message: str, *, code: str, retry_after_s: int, headers: dict[str, str] | None = None
) -> OpenAIRefusal:
    """The one documented 5xx: 503, nothing queued, come back after `retry_after_s`."""
    seconds = max(1, min(int(retry_after_s), SYNC_RETRY_AFTER_MAX_S))
    return OpenAIRefusal(
        503,
        f"{message}; retry after {seconds} s",
        code=code,
        headers={"retry-after": str(seconds), **(headers or {})},
    )


def _unfinished(view: dict[str, Any], field: str) -> OpenAIRefusal:
    """A synchronous job that ended without an answer: 400 for a prompt the model refused,
    422 otherwise (the node already retried it: a retry would not do better)."""
    status, why = view.get("status"), str(view.get("error") or "")
    if FailureReason.PROMPT_REFUSED in why:
        return OpenAIRefusal(400, why, code="prompt_refused", param=field)
    return OpenAIRefusal(422, why or f"the job ended {status}", code=f"job_{status}")


def _response_job_id(raw: str) -> str:
    job_id = raw.removeprefix(RESPONSE_PREFIX)
    if not raw.startswith(RESPONSE_PREFIX) or not contract.is_job_id(job_id):
        raise lambda_http.invalid("id", "must be a response id: resp_ and a lowercase UUIDv4")
    return job_id


# --- the routes -----------------------------------------------------------------------------
class OpenAIRoutes:
    """The `/v1` routes; the rest (token, admission, views, control) is the Router's."""

    def list_models(self, event: dict[str, Any], rid: str) -> Answer:
        """The one served model (`created` is now, as vLLM answers it)."""
        self._authenticate(event)
        card = {
            "id": self.config.served_model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": OWNED_BY,
        }
        return Answer(200, {"object": "list", "data": [card]})

    def create_response(self, event: dict[str, Any], rid: str) -> Answer:
        """Background: queued as `POST /infer` queues (held while the stack sleeps), answered
        with the Response `queued`. Otherwise answered once done, as a chat completion is."""
        sub, ask, idempotency = self._openai_request(event, parse_response)
        if not ask.background:
            job_id, view = self._answer_while_waiting(ask.job, sub, idempotency, "input", rid)
            return Answer(
                200,
                response_object(
                    job_id, view, model=ask.model, created_at=int(time.time()), background=False
                ),
            )
        queued = self.submit(ask.job, sub, idempotency, rid)
        job_id = queued.body["id"]
        view = {"status": JobStatus.QUEUED}
        if contract.REPLAYED_HEADER.lower() in queued.headers:
            view = self.job_view_of(sub, job_id)  # the first request's job, as it now is
        body = response_object(
            job_id, view, model=ask.model, created_at=int(time.time()), background=True
        )
        return Answer(200, body, queued.headers)

    def get_response(self, event: dict[str, Any], rid: str) -> Answer:
        """The caller's own response, as its job now is; 404 for anyone else's."""
        sub = self._authenticate(event)["sub"]
        job_id = _response_job_id(lambda_http.path_parameter(event, "id"))
        return Answer(200, self._response_of(sub, job_id))

    def cancel_response(self, event: dict[str, Any], rid: str) -> Answer:
        """As `POST /jobs/{id}/cancel`: queued never runs, running is stopped with its text so
        far, finished is unchanged; 404 for anyone else's, 409 for one held while waking."""
        from tlops.edge.job_routes import cancel_record

        sub = self._authenticate(event)["sub"]
        job_id = _response_job_id(lambda_http.path_parameter(event, "id"))
        try:
            found = cancel_record(self.redis, sub=sub, job_id=job_id)
        except RedisUnreachable:
            found = False
        if not found:
            self._refuse_held(sub, job_id)
        return Answer(200, self._response_of(sub, job_id))

    def create_chat_completion(self, event: dict[str, Any], rid: str) -> Answer:
        """Answered once the job is done, while the node is awake; else 503, nothing queued."""
        sub, ask, idempotency = self._openai_request(event, parse_chat)
        job_id, view = self._answer_while_waiting(ask.job, sub, idempotency, "messages", rid)
        created = int(time.time())
        return Answer(200, chat_completion(job_id, view, model=ask.model, created=created))

    # --- steps ------------------------------------------------------------------------------
    def _openai_request(self, event: dict[str, Any], parse) -> tuple[str, Ask, Any]:
        """The caller, the validated body (its model the served one) and its Idempotency-Key."""
        from tlops.edge.router import _idempotency_key, _require_json

        claims = self._authenticate(event)
        _require_json(event)
        key = _idempotency_key(event)
        ask = lambda_http.parse_json_body(event, parse)
        if ask.model != self.config.served_model:
            raise OpenAIRefusal(
                400,
                f"the model {ask.model!r} is not served here; use {self.config.served_model!r}",
                code="model_not_found",
                param="model",
            )
        idempotency = (
            None if key is None else admission.Idempotency(key, records.fingerprint(ask.job))
        )
        return claims["sub"], ask, idempotency

    def _response_of(self, sub: str, job_id: str) -> dict[str, Any]:
        view = self.job_view_of(sub, job_id)
        return response_object(
            job_id,
            view,
            model=self.config.served_model,
            created_at=self._created_at_s(job_id),
            background=True,
        )

    def _created_at_s(self, job_id: str) -> int:
        """When the job was admitted (its record's `ts`); now once only S3 knows the job."""
        try:
            admitted_ms = self.redis.execute("HGET", contract.job_key(job_id), Field.TS)
        except (RedisUnavailable, RedisReplyError):
            admitted_ms = None
        if isinstance(admitted_ms, str) and admitted_ms.isdigit():
            return int(admitted_ms) // 1000
        return int(time.time())

    def _answer_while_waiting(
        self, job: InferRequest, sub: str, idempotency: Any, field: str, rid: str
    ) -> tuple[str, dict[str, Any]]:
        """Queue the job and wait for it, holding one of the wait slots; the job's id and its
        done view. 503 with Retry-After, nothing queued, when the node is not awake, every
        slot is taken or the wait runs out."""
        member = uuid.uuid4().hex
        try:
            slot = self.redis.run_script(
                _TAKE_WAIT,
                [contract.SYNC_WAITS_KEY, contract.HEARTBEAT_KEY],
                [
                    self.config.sync_waits_max,
                    math.ceil(self.config.sync_worst_case_s() * 1000),
                    self.config.sync_wait_s * 1000,
                    member,
                ],
            )
        except RedisUnreachable:
            raise self._not_awake(rid) from None
        if not slot[0]:
            raise self._not_awake(rid)
        if not slot[1]:
            telemetry.log("WARNING", "sync waits full", requestId=rid, sub=sub)
            raise _retry_later(
                "every synchronous wait is taken",
                code="too_many_waits",
                retry_after_s=math.ceil(int(slot[2]) / 1000),
            )
        try:
            admitted = self._admit(job, sub, idempotency)
            if admitted.outcome is Admitted.CLOSING:
                raise self._not_awake(rid)
            if admitted.outcome not in (Admitted.QUEUED, Admitted.REPLAYED):
                self._answer_admitted(admitted, sub, rid)  # raises the refusal
            view = self._wait_for(sub, admitted.job_id, rid)
        finally:
            self._end_wait(member, rid)
        if view.get("status") != JobStatus.DONE:
            raise _unfinished(view, field)
        return admitted.job_id, view

    def _wait_for(self, sub: str, job_id: str, rid: str) -> dict[str, Any]:
        """The job's view once it is finished; cancelled when the wait runs out (503)."""
        key = contract.job_key(job_id)
        deadline = time.monotonic() + self.config.sync_wait_s
        while self.redis.execute("HGET", key, Field.STATUS) not in records.FINISHED:
            left = deadline - time.monotonic()
            if left <= 0:
                from tlops.edge.job_routes import cancel_record

                cancel_record(self.redis, sub=sub, job_id=job_id)
                if self.redis.execute("HGET", key, Field.STATUS) != JobStatus.DONE:
                    telemetry.log("WARNING", "sync wait ran out", requestId=rid, jobId=job_id)
                    raise _retry_later(
                        f"no answer within {self.config.sync_wait_s} s; it was cancelled",
                        code="answer_not_ready",
                        retry_after_s=self.config.sync_retry_after_s,
                    )
                break
            time.sleep(min(self.config.sync_poll_s, left))
        return self.job_view_of(sub, job_id)

    def _end_wait(self, member: str, rid: str) -> None:
        """Give the slot back; a slot left behind is dropped once its wait is surely over."""
        try:
            self.redis.execute("ZREM", contract.SYNC_WAITS_KEY, member)
        except (RedisUnavailable, RedisReplyError) as exc:
            telemetry.log("WARNING", "sync wait not released", requestId=rid, reason=str(exc))

    def _not_awake(self, rid: str) -> Refusal:
        """Ask for a wake, and say when to come back: Retry-After the ETA of the boot (or of
        the stack's wake), at most SYNC_RETRY_AFTER_MAX_S. Nothing is queued."""
        try:
            state = self.control.state()
            asked = self.control.wake("a synchronous /v1 request while the node is not awake")
        except BucketUnavailable as exc:
            telemetry.log("ERROR", "wake not asked", requestId=rid, reason=str(exc))
            return _retry_later(
                "the GPU node could not be woken",
                code="instance_unavailable",
                retry_after_s=SYNC_RETRY_AFTER_MAX_S,
            )
        if state.get("state") in (StackState.ASLEEP, StackState.WAKING):
            eta = self.control.wake_eta_s(state, self.config.wake_eta_s)
        else:
            node = state.get("node") or {}
            eta = boot.starting(
                self.redis,
                str(node.get("instance", "")),
                started=asked and node.get("state") not in ("pending", "running"),
                fallback_eta_s=self.config.cold_boot_eta_s,
                telemetry=telemetry,
                rid=rid,
            )
        telemetry.log("INFO", "sync request while not awake", requestId=rid, asked=asked, eta=eta)
        return _retry_later(
            "the GPU node is not awake; it is being woken and nothing was queued",
            code="node_not_awake",
            retry_after_s=eta,
            headers={"x-gpu-coldboot": "true"},
        )

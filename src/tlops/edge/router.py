"""The router Lambda: `POST /infer`, `GET /jobs/{id}`, `POST /stop`, `GET /status`, `/ping` ….

Behind the HTTP API's JWT authorizer the router still verifies the token itself
(defence in depth: a misconfigured route or a direct invoke must not bypass
auth), validates the body against the job contract, rate-limits and enqueues in
one Redis round trip, and asks `control` to wake the GPU node only when no
watcher heartbeat says it is up. The warm path imports nothing heavy: no boto3,
no redis-py, no native crypto.

The router calls no EC2 or ElastiCache API: it sits in the VPC, which reaches
AWS only through the free S3 gateway endpoint. It asks `control` for the node's
start and stop by writing request objects to the control bucket, and reads the
state `control` recorded there (tlops.edge.control_link). When Redis does not
answer a connection, it reads that state: a stack that sleeps has no queue, and
the job is then held in S3 (202 `waking`) for the node to pick up once the
queue is back; any other stack answers 503 `queue_unavailable` as before.

Each route function returns an `Answer` and says nothing about the failures
it does not handle itself: `handle` turns a `Refusal`, and every domain error
listed in `_DOMAIN_ERRORS`, into the response (lambda_http).

Every call out is bounded (`RouterConfig.worst_case_s` sums them against the
function's time limit): a 503 `queue_unavailable` then means nothing was
queued, because Redis refuses to run an admission past its deadline.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.contract import ErrorCode, JobStatus, records, request, responses
from tlops.contract import control as control_contract
from tlops.contract.control import Action
from tlops.contract.states import StackState
from tlops.edge import admission, auth, boot, lambda_http, routes
from tlops.edge.admission import REFUSED_FOR_CAPS, Admitted
from tlops.edge.auth import InvalidToken, JwksCache, KeysUnavailable, TokenVerifier
from tlops.edge.control_link import BucketUnavailable, ControlLink
from tlops.edge.job_routes import JobRoutes
from tlops.edge.lambda_http import Answer, Refusal
from tlops.edge.openai_routes import OpenAIRoutes, as_openai_error, is_openai_route
from tlops.edge.resp import RedisReplyError, RedisUnavailable, RedisUnreachable, RespClient
from tlops.edge.router_config import RouterConfig

telemetry = Telemetry("router")

# Failures a route lets through: the status and code the client gets, a fixed message for
# it (the exception's own text, which may hold ARNs or account ids, is only logged), and
# what the log line says.
_DOMAIN_ERRORS: tuple[tuple[type[Exception], int, ErrorCode, str | None, str], ...] = (
    (InvalidToken, 403, ErrorCode.INVALID_TOKEN, None, "token refused"),
    (KeysUnavailable, 503, ErrorCode.AUTH_UNAVAILABLE, None, "jwks unavailable"),
    (RedisUnavailable, 503, ErrorCode.QUEUE_UNAVAILABLE, None, "redis unavailable"),
    (RedisReplyError, 503, ErrorCode.QUEUE_UNAVAILABLE, None, "redis refused a command"),
    (
        BucketUnavailable,
        503,
        ErrorCode.INSTANCE_UNAVAILABLE,
        "the GPU node could not be reached; try again in a minute",
        "control bucket unavailable",
    ),
)
_HANDLED = tuple(error for error, *_ in _DOMAIN_ERRORS)


class Router(JobRoutes, OpenAIRoutes):
    """Serves every route of openapi.yaml behind the `router` function: the job routes here,
    the list and cancel in `JobRoutes`, the OpenAI-compatible `/v1` routes in `OpenAIRoutes`."""

    def __init__(self, config: RouterConfig):
        self.config = config
        self.verifier = TokenVerifier(
            issuer=config.issuer,
            audience=config.audience,
            jwks=config.jwks or JwksCache(config.jwks_url, timeout=config.jwks_timeout_s),
        )
        self.redis_url = config.redis_url  # where the queue is; a wake may move it
        self.redis = self._redis_client(config.redis_url)
        self.control = ControlLink(
            lambda: config.aws_client("s3"), config.control_bucket,
            state_max_age_s=config.node_state_cache_s,
        )  # fmt: skip
        self._node_running_seen_at = float("-inf")
        # openapi.yaml's operationId → the method serving it
        self._routes = {
            key: getattr(self, routes.method_name(operation))
            for key, operation in routes.of_function("router").items()
        }

    def _redis_client(self, url: str) -> RespClient:
        return RespClient(
            url,
            connect_timeout=self.config.redis_connect_timeout_s,
            timeout=self.config.redis_timeout_s,
        )

    # --- dispatch -------------------------------------------------------
    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        started = time.perf_counter()
        rid = lambda_http.request_id(event)
        route = lambda_http.route_key(event)
        answer = self._answer(route, event, rid)
        if is_openai_route(route):
            answer = as_openai_error(answer)
        telemetry.log(
            "INFO",
            "request",
            requestId=rid,
            route=route,
            status=answer.status,
            latencyMs=round((time.perf_counter() - started) * 1000, 3),
        )
        return lambda_http.respond(answer, rid)

    def _answer(self, route: str, event: dict[str, Any], rid: str) -> Answer:
        serve = self._routes.get(route)
        try:
            if serve is None:
                raise Refusal(404, ErrorCode.NOT_FOUND, route=route)
            return serve(event, rid)
        except Refusal as refusal:
            return refusal.answer
        except _HANDLED as exc:
            for error, status, code, public, logged in _DOMAIN_ERRORS:
                if isinstance(exc, error):
                    level = "WARNING" if status < 500 else "ERROR"
                    telemetry.log(level, logged, requestId=rid, route=route, reason=str(exc))
                    details = {} if public is None else {"message": public}
                    return Answer(status, responses.error_body(code, **details))
            raise  # unreachable: every caught class is in the table

    def _authenticate(self, event: dict[str, Any]) -> dict[str, Any]:
        """The verified claims (raises InvalidToken, KeysUnavailable, or 401 without a token)."""
        token = auth.bearer_token(lambda_http.headers(event))
        if token is None:
            raise Refusal(401, ErrorCode.UNAUTHORIZED)
        return self.verifier.verify(token)

    # --- routes (named after openapi.yaml's operationIds) -----------------
    def ping(self, event: dict[str, Any], rid: str) -> Answer:
        return Answer(200, {"status": "ok"})

    health = ping

    def infer(self, event: dict[str, Any], rid: str) -> Answer:
        claims = self._authenticate(event)
        _require_json(event)
        key = _idempotency_key(event)
        job = lambda_http.parse_json_body(event, request.parse_infer_request)
        idempotency = None if key is None else admission.Idempotency(key, records.fingerprint(job))
        return self.submit(job, claims["sub"], idempotency, rid)

    def submit(
        self, job: request.InferRequest, sub: str, idempotency: admission.Idempotency | None,
        rid: str,
    ) -> Answer:  # fmt: skip
        """Queue `sub`'s validated job (held in S3 while the stack sleeps): 202 `queued`,
        `starting` or `waking`. `POST /infer` and a background `POST /v1/responses` both."""
        try:
            admitted = self._admit(job, sub, idempotency)
        except RedisUnreachable:
            # Counted only where the answer is 503: a job held while the stack sleeps is no
            # failed enqueue, and the redis-enqueue-fail alarm must not wake the operator.
            return self._when_unreachable(job, sub, idempotency, rid)
        except (RedisUnavailable, RedisReplyError):
            telemetry.metric("RedisEnqueueFail")
            raise
        if admitted.outcome is Admitted.CLOSING:
            return self._hold(job, sub, idempotency, rid)
        return self._answer_admitted(admitted, sub, rid)

    def _answer_admitted(self, admitted: admission.Admission, sub: str, rid: str) -> Answer:
        if admitted.outcome is Admitted.LIMITED:
            telemetry.metric("ApiRateLimitBreaches")
            raise _rate_limited(admitted.retry_after_s)
        if admitted.outcome in REFUSED_FOR_CAPS:
            raise self._queue_full(admitted.outcome, admitted.retry_after_s, sub, rid)
        if admitted.outcome is Admitted.REUSED:
            raise _key_reused()
        job_id = admitted.job_id
        if admitted.outcome is Admitted.REPLAYED:
            telemetry.log("INFO", "idempotent replay", requestId=rid, jobId=job_id, sub=sub)
            return _replayed(self._place(job_id, admitted, rid))
        telemetry.log("INFO", "job queued", requestId=rid, jobId=job_id, sub=sub)
        return self._place(job_id, admitted, rid)

    def _when_unreachable(
        self, job: request.InferRequest, sub: str, idempotency: admission.Idempotency | None,
        rid: str,
    ) -> Answer:  # fmt: skip
        """Redis did not answer a connection. Asleep or waking by the recorded state: hold the
        job. Moved (a wake made a new queue): admit it there. Otherwise: 503, nothing queued."""
        state = self.control.state(fresh=True)
        if state.get("state") in (StackState.ASLEEP, StackState.WAKING):
            return self._hold(job, sub, idempotency, rid)
        queue = control_contract.queue_of(state)
        if queue and queue.url and queue.url != self.redis_url:
            telemetry.log("INFO", "queue moved", requestId=rid, queue=queue.id)
            self.redis.close()
            self.redis = self._redis_client(queue.url)
            self.redis_url = queue.url
            try:
                admitted = self._admit(job, sub, idempotency)
            except (RedisUnavailable, RedisReplyError):
                telemetry.metric("RedisEnqueueFail")
                raise
            return self._answer_admitted(admitted, sub, rid)
        telemetry.metric("RedisEnqueueFail")
        raise RedisUnavailable("Redis is unreachable and the stack is not asleep")

    def _hold(
        self, job: request.InferRequest, sub: str, idempotency: admission.Idempotency | None,
        rid: str,
    ) -> Answer:  # fmt: skip
        """Keep the job in S3 until the queue is back, and ask for a wake: 202 `waking`."""
        job_id = contract.new_job_id()
        fields = records.queued(job, sub=sub, job_id=job_id, reply_bucket=self.config.reply_bucket)
        held = self.control.hold(
            sub=sub, job_id=job_id, fields=fields, limits=self.config.limits,
            caps=self.config.caps, idempotency=idempotency,
            before_write=lambda: self.control.wake("a request while the stack sleeps"),
        )  # fmt: skip
        if held.outcome is Admitted.LIMITED:
            telemetry.metric("ApiRateLimitBreaches")
            raise _rate_limited(held.retry_after_s)
        if held.outcome in REFUSED_FOR_CAPS:
            raise self._queue_full(held.outcome, held.retry_after_s, sub, rid)
        if held.outcome is Admitted.REUSED:
            raise _key_reused()
        state = self.control.state()
        eta = self.control.wake_eta_s(state, self.config.wake_eta_s)
        telemetry.log("INFO", "job held", requestId=rid, jobId=held.job_id, sub=sub, eta=eta)
        answer = Answer(202, responses.waking_body(held.job_id, eta), {"x-gpu-coldboot": "true"})
        return _replayed(answer) if held.outcome is Admitted.REPLAYED else answer

    def get_job(self, event: dict[str, Any], rid: str) -> Answer:
        """The caller's own job: status, and once finished its result; 404 for anyone else."""
        claims = self._authenticate(event)
        job_id = lambda_http.path_parameter(event, "id")
        if not contract.is_job_id(job_id):
            raise lambda_http.invalid("id", "must be a job id (a lowercase UUIDv4)")
        return Answer(200, self.job_view_of(claims["sub"], job_id))

    def job_view_of(self, sub: str, job_id: str) -> dict[str, Any]:
        """What `sub` may read of job `job_id` (tlops.edge.jobs), wherever the job now is: the
        queue, S3, or held while the stack slept. Refusal 404 when it is not `sub`'s."""
        from tlops.edge import jobs

        try:
            record = self.redis.hgetall(contract.job_key(job_id))
        except RedisUnreachable:
            return self._held_view(sub, job_id, unreachable=True)
        view = jobs.job_view(
            job_id,
            record,
            sub=sub,
            reply_bucket=self.config.reply_bucket,
            s3=lambda: self.config.aws_client("s3"),
        )
        if view is None:
            return self._held_view(sub, job_id, unreachable=False)
        boot.phase_of_queued(self.redis, view)
        return view

    def _held_view(self, sub: str, job_id: str, *, unreachable: bool) -> dict[str, Any]:
        """A job held while the queue slept: queued, waking. None held: 404, except with Redis
        unreachable, where a sleeping stack still has the caller's result in S3 (what outlives
        the queue) and any other stack answers 503."""
        from tlops.edge import jobs

        held = self.control.held_job(sub, job_id)
        if held is None:
            if unreachable:
                state = self.control.state(fresh=True)
                if state.get("state") not in (StackState.ASLEEP, StackState.WAKING):
                    raise RedisUnavailable("Redis is unreachable and no such job is held")
                view = jobs.job_view(
                    job_id, {}, sub=sub, reply_bucket=self.config.reply_bucket,
                    s3=lambda: self.config.aws_client("s3"),
                )  # fmt: skip
                if view is not None:
                    return view
            raise Refusal(404, ErrorCode.NOT_FOUND, id=job_id)
        state = self.control.state()
        return jobs.held_view(job_id, held["held_ms"], state, self.control.now_ms())

    def stop_node(self, event: dict[str, Any], rid: str) -> Answer:
        """`POST /stop` (admins only): ask control to stop the node; 202 with its instance."""
        claims = self._authenticate(event)
        self._require_admin(claims)
        self._limit_stops(claims["sub"], rid)
        node = self.control.state(fresh=True).get("node") or {}
        if not node.get("instance"):
            raise Refusal(503, ErrorCode.INSTANCE_UNAVAILABLE, message="no GPU node is deployed")
        self.control.ask(Action.STOP, rid_name(rid), sub=claims["sub"])
        self._node_running_seen_at = float("-inf")
        self.control.forget_state()  # the running node just read must not outlive the stop
        boot.stopped(self.redis, node["instance"], telemetry=telemetry, rid=rid)
        telemetry.log("INFO", "node stop requested", requestId=rid, sub=claims["sub"])
        return Answer(202, {"status": "stopping", "instance": node["instance"]})

    def get_status(self, event: dict[str, Any], rid: str) -> Answer:
        """`GET /status`: the node's EC2 state, the queue, the boot phase (tlops.edge.status)."""
        from tlops.edge import status

        sub = self._authenticate(event)["sub"]
        self._limit("status", contract.status_rate_key(sub), self.config.status_limits, rid)
        return Answer(200, status.snapshot(
            project=self.config.project, state=lambda: self.control.state(fresh=True),
            redis=self.redis, telemetry=telemetry, rid=rid,
        ))  # fmt: skip

    def resize_node(self, event: dict[str, Any], rid: str) -> Answer:
        """`POST /resize` (admins only): start, stop or reshape the node (tlops.edge.resize)."""
        claims = self._authenticate(event)
        self._require_admin(claims)
        _require_json(event)
        sub = claims["sub"]
        return self._resizer().submit(event, sub, rid, limit=lambda: self._limit_stops(sub, rid))

    def get_resize(self, event: dict[str, Any], rid: str) -> Answer:
        """`GET /resize/{operationId}` (admins only): an operation's progress, advanced."""
        claims = self._authenticate(event)
        self._require_admin(claims)
        return self._resizer().progress(lambda_http.path_parameter(event, "operationId"), rid)

    def _resizer(self):
        from tlops.edge import resize

        self._node_running_seen_at = float("-inf")  # the node is about to change under us
        return resize.Resizer(self.redis, self.control)

    # --- steps ----------------------------------------------------------
    def _admit(
        self, job: request.InferRequest, sub: str, idempotency: admission.Idempotency | None
    ) -> admission.Admission:
        for _ in range(3):  # a UUIDv4 collision is astronomically rare; never loop forever
            job_id = contract.new_job_id()
            admitted = admission.admit(
                self.redis,
                sub=sub,
                job_id=job_id,
                job_fields=records.queued(
                    job, sub=sub, job_id=job_id, reply_bucket=self.config.reply_bucket
                ),
                limits=self.config.limits,
                job_ttl_s=self.config.job_ttl_s,
                within_s=self.config.admission_within_s,
                idempotency=idempotency,
                caps=self.config.caps,
            )
            if admitted.outcome is Admitted.LATE:
                # This answer is 503: the script saw it would be, and wrote nothing.
                raise RedisUnavailable("Redis ran the admission after its deadline")
            if admitted.outcome is not Admitted.COLLISION:
                return admitted
        raise RedisReplyError("could not find a free job id")

    def _queue_full(self, outcome: Admitted, retry_after_s: int, sub: str, rid: str) -> Refusal:
        """429 when this user's open jobs are at their cap, 503 when everyone's are: nothing
        was queued, and a client should come back after Retry-After."""
        mine = outcome is Admitted.USER_FULL
        scope, cap = (
            ("user", self.config.caps.per_user) if mine else ("global", self.config.caps.total)
        )
        telemetry.metric("QueueCapRefusals", Scope=scope)
        telemetry.log("WARNING", "queue cap reached", requestId=rid, sub=sub, scope=scope, cap=cap)
        whose = "your" if mine else "all users'"
        return Refusal(
            429 if mine else 503,
            ErrorCode.USER_QUEUE_FULL if mine else ErrorCode.QUEUE_FULL,
            retry_after=retry_after_s,
            limit=cap,
            message=f"{cap} of {whose} jobs are queued or running; nothing was queued",
            headers={"retry-after": str(retry_after_s)},
        )

    def _require_admin(self, claims: dict[str, Any]) -> None:
        """403 unless the verified token is an admin's (`forbidden`) and, where admins must
        use MFA, its sign-in used a second factor (`mfa_required`): no `amr` naming `mfa`
        is refused, whatever else the token says."""
        _require_group(claims, contract.ADMINS_GROUP)
        if self.config.admins_require_mfa and not auth.signed_in_with_mfa(claims):
            raise Refusal(
                403,
                ErrorCode.MFA_REQUIRED,
                message="admin routes need a sign-in with MFA: sign in again with your "
                "authenticator app's code (tlops login)",
            )

    def _limit_stops(self, sub: str, rid: str) -> None:
        """At most `stop_limits` stops per user, `POST /stop` and each `POST /resize` (whose
        operations start and stop the node) together. Without Redis the stop goes ahead: a
        queue outage must not keep a GPU running (and billing) that an admin stops."""
        self._limit("stop", contract.stop_rate_key(sub), self.config.stop_limits, rid)

    def _limit(self, what: str, key: str, limits: admission.RateLimits, rid: str) -> None:
        """429 past `limits` on `key`; without Redis the request goes ahead (logged)."""
        try:
            retry_after_s = admission.limit(
                self.redis, key=key, member=uuid.uuid4().hex, limits=limits
            )
        except (RedisUnavailable, RedisReplyError) as exc:
            telemetry.log("WARNING", f"{what} not rate-limited", requestId=rid, reason=str(exc))
            return
        if retry_after_s:
            raise _rate_limited(retry_after_s)

    def _place(self, job_id: str, admitted: admission.Admission, rid: str) -> Answer:
        """The answer for an admitted job: queued while the node is up, else a cold boot.
        A replayed job no longer queued needs no node from this request."""
        if (
            admitted.node_alive
            or self._node_recently_running()
            or admitted.job_status != JobStatus.QUEUED
        ):
            return Answer(202, responses.queued_body(job_id))
        return self._cold_boot(job_id, rid)

    def _node_recently_running(self) -> bool:
        age = time.monotonic() - self._node_running_seen_at
        return age < self.config.node_state_cache_s

    def _cold_boot(self, job_id: str, rid: str) -> Answer:
        """No watcher answers: unless control saw the node running, ask it for a wake (once a
        minute, however many ask), and answer `starting` with the ETA of a boot."""
        try:
            node = self.control.state().get("node") or {}
            if node.get("state") == "running":
                self._node_running_seen_at = time.monotonic()
                return Answer(202, responses.queued_body(job_id))
            asked = self.control.wake("a job for a stopped node")
        except BucketUnavailable as exc:
            # Answering 503 means the job will not run: say so in its record. Client and
            # record get the fixed words; S3's own (ARNs, account ids) stay in the log.
            public = "the GPU node could not be woken"
            self._fail_job(job_id, f"{ErrorCode.INSTANCE_UNAVAILABLE}: {public}")
            telemetry.log("ERROR", "wake not asked", requestId=rid, jobId=job_id, reason=str(exc))
            raise Refusal(503, ErrorCode.INSTANCE_UNAVAILABLE, id=job_id, message=public) from None
        if asked:
            telemetry.log("INFO", "wake asked", requestId=rid, jobId=job_id)
        # A node already pending is a boot someone else started: control will not start it
        # again, and its record (and the ETA, what is left of it) must stay.
        started = asked and node.get("state") != "pending"
        eta = boot.starting(
            self.redis,
            str(node.get("instance", "")),
            started=started,
            fallback_eta_s=self.config.cold_boot_eta_s,
            telemetry=telemetry,
            rid=rid,
        )
        return Answer(202, responses.starting_body(job_id, eta), {"x-gpu-coldboot": "true"})

    def _fail_job(self, job_id: str, reason: str) -> None:
        flat = [part for item in records.not_booted(reason).items() for part in item]
        try:
            self.redis.execute("HSET", contract.job_key(job_id), *flat)
        except (RedisUnavailable, RedisReplyError) as exc:
            telemetry.log("ERROR", "could not mark job failed", jobId=job_id, reason=str(exc))


def rid_name(rid: str) -> str:
    """A request id as a request object's name (ids are letters, digits and hyphens)."""
    cleaned = "".join(c for c in rid if c.isalnum() or c in "-_.")[:100]
    return cleaned or contract.new_job_id()


def _key_reused() -> Refusal:
    return Refusal(
        409,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        message=f"this {contract.IDEMPOTENCY_HEADER} came with another request before",
    )


def _replayed(answer: Answer) -> Answer:
    return answer._replace(headers={**answer.headers, contract.REPLAYED_HEADER.lower(): "true"})


def _rate_limited(retry_after_s: int) -> Refusal:
    return Refusal(
        429,
        ErrorCode.RATE_LIMITED,
        retry_after=retry_after_s,
        headers={"retry-after": str(retry_after_s)},
    )


def _require_group(claims: dict[str, Any], group: str) -> None:
    """403 `forbidden` unless the verified token names `group` in `cognito:groups`: the
    token is fine, so the client must not renew it (as it would for invalid_token)."""
    if group not in auth.groups(claims):
        raise Refusal(403, ErrorCode.FORBIDDEN, message=f"this route is for the {group} group")


def _require_json(event: dict[str, Any]) -> None:
    """415 unless the body is declared application/json (parameters such as charset pass)."""
    declared = lambda_http.headers(event).get("content-type", "")
    if declared.partition(";")[0].strip().lower() != "application/json":
        raise Refusal(
            415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, message="send the body as application/json"
        )


def _idempotency_key(event: dict[str, Any]) -> str | None:
    value = lambda_http.headers(event).get(contract.IDEMPOTENCY_HEADER.lower())
    if value is None:
        return None
    if not contract.is_idempotency_key(value):
        raise lambda_http.invalid(
            contract.IDEMPOTENCY_HEADER,
            "must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'",
        )
    return value


_router: Router | None = None


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (re-exported by lambda_src/router)."""
    global _router  # noqa: PLW0603 - one Router per warm Lambda container
    if _router is None:
        _router = Router(RouterConfig.from_env())
        _check_time_limit(_router.config, context)
    return _router.handle(event)


def _check_time_limit(config: RouterConfig, context: Any) -> None:
    """Warn once per container when the function's time limit is shorter than the router's
    longest path: Lambda would then cut a cold boot or a chat completion's wait off before
    the router could answer."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return
    left_s = remaining() / 1000
    if left_s < config.longest_path_s():
        telemetry.log(
            "WARNING",
            "function time limit below the router's worst case",
            remainingS=round(left_s, 3),
            worstCaseS=round(config.longest_path_s(), 3),
        )

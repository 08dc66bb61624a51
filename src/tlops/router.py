"""The router Lambda's logic: `POST /infer`, `GET /jobs/{id}`, `POST /stop`, `GET /ping`, `/health`.

Behind the HTTP API's JWT authorizer the router still verifies the token itself
(defence in depth: a misconfigured route or a direct invoke must not bypass
auth), validates the body against the job contract, rate-limits and enqueues in
one Redis round trip, and cold-boots the GPU node only when no watcher
heartbeat says it is up. The warm path imports nothing heavy: no boto3, no
redis-py, no native crypto.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple

from tlops import admission, contract, lambda_http
from tlops.auth import InvalidToken, JwksCache, KeysUnavailable, TokenVerifier, bearer_token
from tlops.contract import ErrorCode, error_body
from tlops.resp import RedisReplyError, RedisUnavailable, RespClient
from tlops.telemetry import Telemetry

telemetry = Telemetry("router")


class RouterConfig(NamedTuple):
    redis_url: str
    issuer: str
    audience: str
    jwks_url: str
    reply_bucket: str
    project: str = "tinyllama"
    cold_boot_eta_s: int = 90
    job_ttl_s: int = contract.QUEUED_TTL_SECONDS
    node_state_cache_s: float = 10.0
    redis_connect_timeout_s: float = 0.25
    redis_timeout_s: float = 0.5
    limits: admission.RateLimits = admission.RateLimits()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RouterConfig:
        env = dict(os.environ if env is None else env)
        missing = [
            name
            for name in ("TL_REDIS_URL", "TL_JWT_ISSUER", "TL_JWT_AUDIENCE", "TL_REPLY_BUCKET")
            if not env.get(name)
        ]
        if missing:
            raise RuntimeError(f"router configuration incomplete, set: {', '.join(missing)}")
        issuer = env["TL_JWT_ISSUER"].rstrip("/")
        return cls(
            redis_url=env["TL_REDIS_URL"],
            issuer=issuer,
            audience=env["TL_JWT_AUDIENCE"],
            jwks_url=env.get("TL_JWKS_URL") or f"{issuer}/.well-known/jwks.json",
            reply_bucket=env["TL_REPLY_BUCKET"],
            project=env.get("TL_PROJECT", "tinyllama"),
            cold_boot_eta_s=int(env.get("TL_COLD_BOOT_ETA_S", "90")),
            job_ttl_s=int(env.get("TL_JOB_TTL_S", str(contract.QUEUED_TTL_SECONDS))),
            limits=admission.RateLimits(
                burst=int(env.get("TL_RATE_BURST", "5")),
                sustained=int(env.get("TL_RATE_PER_MINUTE", "20")),
            ),
        )


class Router:
    def __init__(self, config: RouterConfig):
        self.config = config
        self.verifier = TokenVerifier(
            issuer=config.issuer, audience=config.audience, jwks=JwksCache(config.jwks_url)
        )
        self.redis = RespClient(
            config.redis_url,
            connect_timeout=config.redis_connect_timeout_s,
            timeout=config.redis_timeout_s,
        )
        self._node_running_seen_at = float("-inf")
        self._routes = {
            "POST /infer": self.infer,
            "GET /jobs/{id}": self.job,
            "POST /stop": self.stop,
            "GET /ping": self.ping,
            "GET /health": self.ping,
        }

    # --- dispatch -------------------------------------------------------
    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        rid = lambda_http.request_id(event)
        route = lambda_http.route_key(event)
        handler = self._routes.get(route)
        if handler is None:
            result = lambda_http.response(
                404, error_body(ErrorCode.NOT_FOUND, route=route), request_id=rid
            )
        else:
            result = handler(event, rid)
        telemetry.log(
            "INFO",
            "request",
            requestId=rid,
            route=route,
            status=result["statusCode"],
            latencyMs=round((time.perf_counter() - started) * 1000, 3),
        )
        return result

    def _authenticate(self, event: dict[str, Any], rid: str) -> dict[str, Any]:
        """The verified claims; raises _Refusal with the response to send otherwise."""
        token = bearer_token(lambda_http.headers(event))
        if token is None:
            raise _Refusal(
                lambda_http.response(401, error_body(ErrorCode.UNAUTHORIZED), request_id=rid)
            )
        try:
            return self.verifier.verify(token)
        except InvalidToken as exc:
            telemetry.log("WARNING", "token refused", requestId=rid, reason=str(exc))
            raise _Refusal(
                lambda_http.response(403, error_body(ErrorCode.INVALID_TOKEN), request_id=rid)
            ) from None
        except KeysUnavailable as exc:
            telemetry.log("ERROR", "jwks unavailable", requestId=rid, reason=str(exc))
            raise _Refusal(
                lambda_http.response(503, error_body(ErrorCode.AUTH_UNAVAILABLE), request_id=rid)
            ) from None

    # --- routes ---------------------------------------------------------
    def ping(self, event: dict[str, Any], rid: str) -> dict[str, Any]:
        return lambda_http.response(200, {"status": "ok"}, request_id=rid)

    def infer(self, event: dict[str, Any], rid: str) -> dict[str, Any]:
        try:
            claims = self._authenticate(event, rid)
            request = self._parse_body(event, rid)
        except _Refusal as refusal:
            return refusal.response
        sub = claims["sub"]
        try:
            job_id, admitted = self._admit(request, sub)
        except (RedisUnavailable, RedisReplyError) as exc:
            telemetry.metric("RedisEnqueueFail")
            telemetry.log("ERROR", "enqueue failed", requestId=rid, reason=str(exc))
            return lambda_http.response(
                503, error_body(ErrorCode.QUEUE_UNAVAILABLE), request_id=rid
            )
        if admitted.outcome == "limited":
            telemetry.metric("ApiRateLimitBreaches")
            return lambda_http.response(
                429,
                error_body(ErrorCode.RATE_LIMITED, retry_after=admitted.retry_after_s),
                request_id=rid,
                headers={"retry-after": str(admitted.retry_after_s)},
            )
        telemetry.log("INFO", "job queued", requestId=rid, jobId=job_id, sub=sub)
        if admitted.node_alive or self._node_recently_running():
            return lambda_http.response(202, contract.queued_body(job_id), request_id=rid)
        return self._cold_boot(job_id, rid)

    def job(self, event: dict[str, Any], rid: str) -> dict[str, Any]:
        """The caller's own job: status, and once finished its result; 404 for anyone else."""
        from tlops import results

        try:
            claims = self._authenticate(event, rid)
        except _Refusal as refusal:
            return refusal.response
        job_id = (event.get("pathParameters") or {}).get("id", "")
        if not contract.is_job_id(job_id):
            return self._bad_request(rid, "id", "must be a job id (a lowercase UUIDv4)")
        try:
            record = self.redis.hgetall(contract.job_key(job_id))
        except (RedisUnavailable, RedisReplyError) as exc:
            telemetry.log("ERROR", "job lookup failed", requestId=rid, reason=str(exc))
            return lambda_http.response(
                503, error_body(ErrorCode.QUEUE_UNAVAILABLE), request_id=rid
            )
        view = results.job_view(
            job_id, record, sub=claims["sub"], reply_bucket=self.config.reply_bucket
        )
        if view is None:
            return lambda_http.response(
                404, error_body(ErrorCode.NOT_FOUND, id=job_id), request_id=rid
            )
        return lambda_http.response(200, view, request_id=rid)

    def stop(self, event: dict[str, Any], rid: str) -> dict[str, Any]:
        from tlops import node

        try:
            claims = self._authenticate(event, rid)
        except _Refusal as refusal:
            return refusal.response
        try:
            stopped = node.stop(self.config.project)
        except node.NodeUnavailable as exc:
            return lambda_http.response(
                503,
                error_body(ErrorCode.INSTANCE_UNAVAILABLE, message=str(exc)),
                request_id=rid,
            )
        if stopped is None:
            return lambda_http.response(
                503,
                error_body(ErrorCode.INSTANCE_UNAVAILABLE, message="no GPU node is deployed"),
                request_id=rid,
            )
        self._node_running_seen_at = float("-inf")
        telemetry.log("INFO", "node stop requested", requestId=rid, sub=claims["sub"])
        return lambda_http.response(
            200, {"status": stopped.state, "instance": stopped.instance_id}, request_id=rid
        )

    # --- steps ----------------------------------------------------------
    def _parse_body(self, event: dict[str, Any], rid: str) -> contract.InferRequest:
        try:
            raw = lambda_http.body_bytes(event)
        except lambda_http.BodyError as exc:
            raise _Refusal(self._bad_request(rid, "body", str(exc))) from None
        if len(raw) > contract.MAX_BODY_BYTES:
            raise _Refusal(
                lambda_http.response(
                    413,
                    error_body(ErrorCode.PAYLOAD_TOO_LARGE, limit=contract.MAX_BODY_BYTES),
                    request_id=rid,
                )
            )
        try:
            payload = json.loads(raw)
        except ValueError:
            raise _Refusal(self._bad_request(rid, "body", "must be valid JSON")) from None
        except RecursionError:
            raise _Refusal(self._bad_request(rid, "body", "is nested too deeply")) from None
        try:
            return contract.parse_infer_request(payload)
        except contract.RequestError as exc:
            raise _Refusal(lambda_http.response(400, exc.body(), request_id=rid)) from None

    @staticmethod
    def _bad_request(rid: str, field: str, message: str) -> dict[str, Any]:
        return lambda_http.response(
            400, error_body(ErrorCode.INVALID_REQUEST, field=field, message=message), request_id=rid
        )

    def _admit(self, request: contract.InferRequest, sub: str) -> tuple[str, admission.Admission]:
        for _ in range(3):  # a UUIDv4 collision is astronomically rare; never loop forever
            job_id = contract.new_job_id()
            admitted = admission.admit(
                self.redis,
                sub=sub,
                job_id=job_id,
                job_fields=contract.queued_job_fields(
                    request, sub=sub, job_id=job_id, reply_bucket=self.config.reply_bucket
                ),
                limits=self.config.limits,
                job_ttl_s=self.config.job_ttl_s,
            )
            if admitted.outcome != "collision":
                return job_id, admitted
        raise RedisReplyError("could not find a free job id")

    def _node_recently_running(self) -> bool:
        age = time.monotonic() - self._node_running_seen_at
        return age < self.config.node_state_cache_s

    def _cold_boot(self, job_id: str, rid: str) -> dict[str, Any]:
        from tlops import node

        try:
            decision = node.ensure_running(self.config.project)
        except node.NodeUnavailable as exc:
            self._fail_job(job_id, f"{ErrorCode.INSTANCE_UNAVAILABLE}: {exc}")
            telemetry.log("ERROR", "cold boot failed", requestId=rid, jobId=job_id, reason=str(exc))
            return lambda_http.response(
                503,
                error_body(ErrorCode.INSTANCE_UNAVAILABLE, id=job_id, message=str(exc)),
                request_id=rid,
            )
        if decision.state == "running":
            self._node_running_seen_at = time.monotonic()
            return lambda_http.response(202, contract.queued_body(job_id), request_id=rid)
        if decision.started:
            telemetry.metric("EC2Starts", Reason="ColdBoot")
            telemetry.log("INFO", "node started", requestId=rid, instance=decision.node.instance_id)
        return lambda_http.response(
            202,
            contract.starting_body(job_id, self.config.cold_boot_eta_s),
            request_id=rid,
            headers={"x-gpu-coldboot": "true"},
        )

    def _fail_job(self, job_id: str, reason: str) -> None:
        """Answering 503 means the job will not run: say so in its record rather than leave it."""
        try:
            self.redis.execute(
                "HSET",
                contract.job_key(job_id),
                "status",
                contract.JobStatus.FAILED.value,
                "error",
                reason,
            )
        except (RedisUnavailable, RedisReplyError) as exc:
            telemetry.log("ERROR", "could not mark job failed", jobId=job_id, reason=str(exc))


class _Refusal(Exception):
    def __init__(self, response: dict[str, Any]):
        super().__init__(response["statusCode"])
        self.response = response


_router: Router | None = None


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (re-exported by lambda_src/router)."""
    global _router  # noqa: PLW0603 - one Router per warm Lambda container
    if _router is None:
        _router = Router(RouterConfig.from_env())
    return _router.handle(event)

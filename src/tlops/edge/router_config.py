"""The router's configuration: its environment (set by the router role) read once, with
every timeout and limit it runs under, and the worst case they add up to."""

from __future__ import annotations

import json
import os
from typing import NamedTuple

from tlops import contract
from tlops.contract import names
from tlops.edge import admission
from tlops.edge.auth import StaticKeys

# botocore's standard retry mode waits up to this long before each retry.
_BOTOCORE_MAX_BACKOFF_S = 20.0


class RouterConfig(NamedTuple):
    redis_url: str
    issuer: str
    audience: str
    jwks_url: str
    reply_bucket: str
    control_bucket: str  # where the router asks control for EC2 steps and holds jobs asleep
    # The pool's keys from TL_JWKS (the deployed router cannot reach jwks_url); None: fetched.
    jwks: StaticKeys | None = None
    project: str = names.PROJECT
    cold_boot_eta_s: int = 90
    # The ETA answered while the stack sleeps, until a wake was measured: ElastiCache takes
    # minutes to create a queue.
    wake_eta_s: int = 600
    job_ttl_s: int = contract.QUEUED_TTL_SECONDS
    node_state_cache_s: float = 10.0
    redis_connect_timeout_s: float = 0.25
    redis_timeout_s: float = 0.5
    jwks_timeout_s: float = 2.0
    # EC2 and S3 calls: tight, one attempt; a client retries with its Idempotency-Key.
    aws_connect_timeout_s: float = 1.0
    aws_read_timeout_s: float = 2.0
    aws_max_attempts: int = 1
    limits: admission.RateLimits = admission.RateLimits()
    caps: admission.QueueCaps = admission.QueueCaps()
    stop_limits: admission.RateLimits = admission.RateLimits(
        burst=2, burst_window_ms=60_000, sustained=2, sustained_window_ms=60_000
    )
    # GET /status calls EC2 each time: a user polling it must not use up EC2's API rate.
    status_limits: admission.RateLimits = admission.RateLimits(burst=2, sustained=30)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RouterConfig:
        env = dict(os.environ if env is None else env)
        missing = [
            name
            for name in (
                "TL_REDIS_URL",
                "TL_JWT_ISSUER",
                "TL_JWT_AUDIENCE",
                "TL_REPLY_BUCKET",
                "TL_CONTROL_BUCKET",
            )
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
            control_bucket=env["TL_CONTROL_BUCKET"],
            jwks=_static_keys(env.get("TL_JWKS", "")),
            project=env.get("TL_PROJECT", names.PROJECT),
            cold_boot_eta_s=int(env.get("TL_COLD_BOOT_ETA_S", "90")),
            wake_eta_s=int(env.get("TL_WAKE_ETA_S", "600")),
            job_ttl_s=int(env.get("TL_JOB_TTL_S", str(contract.QUEUED_TTL_SECONDS))),
            limits=admission.RateLimits(
                burst=int(env.get("TL_RATE_BURST", "5")),
                sustained=int(env.get("TL_RATE_PER_MINUTE", "20")),
            ),
            caps=admission.QueueCaps(
                total=int(env.get("TL_QUEUE_CAP_TOTAL", str(contract.QUEUE_CAP_TOTAL))),
                per_user=int(env.get("TL_QUEUE_CAP_PER_USER", str(contract.QUEUE_CAP_PER_USER))),
            ),
        )

    def aws_client(self, service: str):
        """The boto3 client the router calls `service` with, bounded as configured here."""
        from tlops.common import aws

        return aws.client(
            service,
            connect_timeout=self.aws_connect_timeout_s,
            read_timeout=self.aws_read_timeout_s,
            max_attempts=self.aws_max_attempts,
        )

    @property
    def admission_within_s(self) -> float:
        """How soon Redis must run the admission script: half the reply timeout, so that a
        script that ran in time also answers in time, and one that did not writes nothing."""
        return self.redis_timeout_s / 2

    def worst_case_s(self) -> float:
        """The longest `POST /infer` can take with every dependency at its timeouts: the key
        fetch (none with TL_JWKS), then the longer of two paths. Awake: admission (connect,
        TIME once per connection, the script), the state read and the wake request, and
        marking the job failed or the boot record. Asleep: a connection refused, the state
        read, the held job's two listings, its write and the wake request (the state is
        then cached)."""
        keys = 0.0 if self.jwks is not None else self.jwks_timeout_s
        admit = self.redis_connect_timeout_s + 2 * self.redis_timeout_s
        aws_call = self.aws_max_attempts * (self.aws_connect_timeout_s + self.aws_read_timeout_s)
        aws_call += (self.aws_max_attempts - 1) * _BOTOCORE_MAX_BACKOFF_S
        mark = self.redis_connect_timeout_s + self.redis_timeout_s
        awake = admit + 2 * aws_call + mark
        asleep = self.redis_connect_timeout_s + 5 * aws_call
        return keys + max(awake, asleep)


def _static_keys(text: str) -> StaticKeys | None:
    if not text:
        return None
    try:
        return StaticKeys(json.loads(text))
    except (ValueError, RecursionError) as exc:
        raise RuntimeError(
            f"TL_JWKS is not a usable JWKS document ({exc}): run deploy.yml, which writes it"
        ) from None

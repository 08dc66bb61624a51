"""The router's configuration: its environment (set by the router role) read once, with
every timeout and limit it runs under, and the worst case they add up to."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

from tlops import contract
from tlops.common import settings_table
from tlops.common.settings_table import number, setting, switch
from tlops.contract import names
from tlops.edge import admission
from tlops.edge.auth import StaticKeys

# botocore's standard retry mode waits up to this long before each retry.
_BOTOCORE_MAX_BACKOFF_S = 20.0
# The name vLLM serves the model under by default (the vllm and ami_bake roles' default).
SERVED_MODEL_DEFAULT = "tinyllama-1.1b-chat"
# The longest a synchronous /v1 request may wait on its job: with the router's own calls
# around it (`sync_worst_case_s`), it stays within the function's time limit, at most 29 s
# below the HTTP API's 30 s integration timeout.
SYNC_WAIT_MAX_S = 20


def _sync_wait(text: str) -> int:
    seconds = number(int)(text)
    if not 1 <= seconds <= SYNC_WAIT_MAX_S:
        raise ValueError(f"must be from 1 to {SYNC_WAIT_MAX_S} seconds, got {seconds}")
    return seconds


def _at_least_one(text: str) -> int:
    count = number(int)(text)
    if count < 1:
        raise ValueError(f"must be at least 1, got {count}")
    return count


def _static_keys(text: str) -> StaticKeys | None:
    if not text:
        return None
    try:
        return StaticKeys(json.loads(text))
    except (ValueError, RecursionError) as exc:
        raise ValueError(
            f"is not a usable JWKS document ({exc}): run deploy.yml, which writes it"
        ) from None


def _issuer(text: str) -> str:
    return text.rstrip("/")


@dataclasses.dataclass(frozen=True)
class RouterConfig:
    redis_url: str = setting(None, "TL_REDIS_URL", "the queue's Redis")
    issuer: str = setting(None, "TL_JWT_ISSUER", "the user pool's token issuer", parse=_issuer)
    audience: str = setting(None, "TL_JWT_AUDIENCE", "the app client id tokens are for")
    reply_bucket: str = setting(None, "TL_REPLY_BUCKET", "where the node stores results")
    # Where the router asks control for EC2 steps and holds jobs while the stack sleeps.
    control_bucket: str = setting(None, "TL_CONTROL_BUCKET", "the control bucket")
    # Default: the issuer's, which the deployed router cannot reach (no NAT): it reads the
    # pool's keys from TL_JWKS, which deploy.yml writes.
    jwks_url: str = setting(None, "TL_JWKS_URL", "where the pool's keys are fetched", "")
    jwks: StaticKeys | None = setting(
        None, "TL_JWKS", "the pool's keys (JWKS JSON); unset: fetched", None, _static_keys
    )
    project: str = setting(None, "TL_PROJECT", "the Project tag", names.PROJECT)
    cold_boot_eta_s: int = setting(
        None, "TL_COLD_BOOT_ETA_S", "the ETA before a boot was measured", 90, number(int)
    )
    # The ETA answered while the stack sleeps, until a wake was measured: ElastiCache takes
    # minutes to create a queue.
    wake_eta_s: int = setting(
        None, "TL_WAKE_ETA_S", "the ETA before a wake was measured", 600, number(int)
    )
    job_ttl_s: int = setting(
        None, "TL_JOB_TTL_S", "seconds a queued job lives", contract.QUEUED_TTL_SECONDS,
        number(int),
    )  # fmt: skip
    rate_burst: int = setting(None, "TL_RATE_BURST", "requests a user may burst", 5, number(int))
    rate_per_minute: int = setting(
        None, "TL_RATE_PER_MINUTE", "requests a user may send a minute", 20, number(int)
    )
    queue_cap_total: int = setting(
        None, "TL_QUEUE_CAP_TOTAL", "open jobs of all users", contract.QUEUE_CAP_TOTAL,
        number(int),
    )  # fmt: skip
    queue_cap_per_user: int = setting(
        None, "TL_QUEUE_CAP_PER_USER", "open jobs of one user", contract.QUEUE_CAP_PER_USER,
        number(int),
    )  # fmt: skip
    # The admin routes refuse a token whose sign-in used no second factor (its `amr` claim
    # names no `mfa`); the auth role turns TOTP on in the pool with the same setting.
    admins_require_mfa: bool = setting(
        None, "TL_ADMINS_REQUIRE_MFA", "admin routes need a sign-in with MFA", False, switch
    )
    # The model id the /v1 routes answer to: what vLLM serves (--served-model-name).
    served_model: str = setting(
        None, "TL_SERVED_MODEL", "the model id of the /v1 routes", SERVED_MODEL_DEFAULT
    )
    # A synchronous /v1 request (chat completions, a response without background) waits
    # this long on its job, and at most this many wait at once: each holds a router.
    sync_wait_s: int = setting(
        None, "TL_SYNC_WAIT_S", "seconds a synchronous /v1 request waits", 20, _sync_wait
    )
    sync_waits_max: int = setting(
        None, "TL_SYNC_WAITS_MAX", "synchronous /v1 waits at once", 4, _at_least_one
    )
    # Fixed tunables, not settings.
    sync_poll_s: float = 0.25  # how often a wait reads its job's status
    sync_retry_after_s: int = 5  # Retry-After of a wait that ran out (the node is busy)
    node_state_cache_s: float = 10.0
    redis_connect_timeout_s: float = 0.25
    redis_timeout_s: float = 0.5
    jwks_timeout_s: float = 2.0
    # EC2 and S3 calls: tight, one attempt; a client retries with its Idempotency-Key.
    aws_connect_timeout_s: float = 1.0
    aws_read_timeout_s: float = 2.0
    aws_max_attempts: int = 1
    stop_limits: admission.RateLimits = admission.RateLimits(
        burst=2, burst_window_ms=60_000, sustained=2, sustained_window_ms=60_000
    )
    # GET /status calls EC2 each time: a user polling it must not use up EC2's API rate.
    status_limits: admission.RateLimits = admission.RateLimits(burst=2, sustained=30)

    def __post_init__(self) -> None:
        if not self.jwks_url:
            object.__setattr__(self, "jwks_url", f"{self.issuer}/.well-known/jwks.json")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RouterConfig:
        return settings_table.from_env(cls, os.environ if env is None else env, "router")

    @property
    def limits(self) -> admission.RateLimits:
        return admission.RateLimits(burst=self.rate_burst, sustained=self.rate_per_minute)

    @property
    def caps(self) -> admission.QueueCaps:
        return admission.QueueCaps(total=self.queue_cap_total, per_user=self.queue_cap_per_user)

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

    def sync_worst_case_s(self) -> float:
        """The longest a synchronous /v1 request can take, at every timeout: the key fetch,
        then the wait's slot, the admission (its clock reading and script), the wait with
        its last status read, the cancel and the read after it, the result's record and
        its object in S3, and the slot given back. Not awake, it takes less: the slot,
        the state read, the wake request and the boot record."""
        keys = 0.0 if self.jwks is not None else self.jwks_timeout_s
        aws_call = self.aws_max_attempts * (self.aws_connect_timeout_s + self.aws_read_timeout_s)
        around = self.redis_connect_timeout_s + 8 * self.redis_timeout_s + aws_call
        return keys + around + self.sync_wait_s

    def longest_path_s(self) -> float:
        """The longest any route can take at every timeout: the function's time limit must
        hold it (the router role's preflight and a test check the defaults)."""
        return max(self.worst_case_s(), self.sync_worst_case_s())

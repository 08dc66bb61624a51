"""The job contract: the one definition shared by the router, the watcher and the CLI.

Everything a client sends, everything stored in Redis and every error body a
client can receive is defined in this package (docs/architecture.md, "The job
contract"); other code imports these names and spells no key, field, status or
error code itself:

- this module: limits, Redis key and stream names, header and group names, statuses,
  error codes, ids;
- `request`: the body of `POST /infer` and its validation;
- `records`: the job record's fields and its transitions (Lua scripts take the
  field names from there), and the dead-letter entry;
- `responses`: the bodies the edge answers with;
- `boot`: the node's boot record, the cold-boot ETA from measured boots, what a queued
  job's view says of a boot;
- `resize`: the body of `POST /resize` and the record of a resize operation;
- `results`: the typed result stored in S3 (pydantic, long-running side only).

The modules other than `results` are plain Python on purpose: the router
imports them on every cold start, and pydantic alone costs more than that
start's whole 200 ms budget (docs/decisions.md).
"""

from __future__ import annotations

import enum
import re
import uuid

# --- limits -----------------------------------------------------------------
PROMPT_MAX_BYTES = 6 * 1024  # "6 kB" of UTF-8, counted in bytes, not characters
# A chat job's conversation (`messages`): its texts together within PROMPT_MAX_BYTES, and at
# most this many messages.
MESSAGES_MAX = 64
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
IDEMPOTENCY_TTL_SECONDS = 3600  # a retry with the same Idempotency-Key finds its job this long
# Jobs queued or running at once (configurable): a burst cannot pile up hours of GPU work.
QUEUE_CAP_TOTAL = 50
QUEUE_CAP_PER_USER = 20
# Retry-After of a refusal by a queue cap: until the oldest open job has surely left the
# queue (its queued TTL), but at least 5 s and at most 30 s (a running node frees one sooner).
QUEUE_FULL_RETRY_SECONDS = (5, 30)

# --- Redis names ------------------------------------------------------------
JOB_KEY_PREFIX = "job:"
JOB_STREAM = "jobs"
DEAD_LETTER_STREAM = "jobs:dead"
CONSUMER_GROUP = "watchers"
HEARTBEAT_KEY = "watcher:heartbeat"  # present (with a TTL) while a watcher runs
RATE_KEY_PREFIX = "rate:"
STOP_RATE_KEY_PREFIX = "rate:stop:"  # `POST /stop`'s own window (Cognito subs are UUIDs)
STATUS_RATE_KEY_PREFIX = "rate:status:"  # `GET /status`'s own window: it calls EC2 each time
IDEMPOTENCY_KEY_PREFIX = "idem:"  # idem:{sub}:{key} → the job that key admitted
# The node's boot: a hash (fields in `tlops.contract.boot`) and the last boot durations (ms),
# newest first, at most BOOT_TIMES_KEPT; the router's cold-boot ETA is their median.
NODE_BOOT_KEY = "node:boot"
NODE_BOOT_TIMES_KEY = "node:boot_times"
BOOT_TIMES_KEPT = 10
OPEN_JOBS_KEY = "jobs:open"  # sorted set: ids admitted and not yet final, scored by admission ms
# A user's jobs for `GET /jobs`: jobs:of:{sub}, a sorted set of ids scored by admission ms,
# the newest JOBS_LISTED kept, written with each admission; it lives JOBS_OF_TTL_SECONDS after
# the user's last job, longer than any record lives (queued, its deliveries, then finished).
JOBS_OF_KEY_PREFIX = "jobs:of:"
JOBS_LISTED = 200
JOBS_OF_TTL_SECONDS = 86400
# The synchronous /v1 requests waiting on their job now: a sorted set of waits scored by their
# start (ms), so that the wait of a router that died is dropped once it is surely over.
SYNC_WAITS_KEY = "sync:waits"
RESIZE_LOCK_KEY = "resize:current"  # the operation in progress, if any (one at a time)
RESIZE_KEY_PREFIX = "resize:op:"  # resize:op:{id} → the operation's record (contract.resize)
# Set (with CLOSING_TTL_SECONDS) when the queue is about to be deleted for a deep sleep:
# admission queues nothing while it exists; a node that starts clears it.
CLOSING_KEY = "queue:closing"
CLOSING_TTL_SECONDS = 600
# The last time (ms) the scheduled queue probe saw a watcher heartbeat: napping since then.
LAST_AWAKE_KEY = "queue:last_awake_ms"
# Jobs held in S3 while the queue slept, moved into the stream once (by job id), this long.
HELD_MOVED_KEY_PREFIX = "held:moved:"

# --- HTTP names -------------------------------------------------------------
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # `true` on the answer to a retry
ADMINS_GROUP = "admins"  # the pool group allowed to stop the node (made by the auth role)

_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"  # its owner cancelled it: never ran, or stopped with its partial output


class BootPhase(enum.StrEnum):
    """Where a boot of the node is, in order; the router writes the first, the node the rest.
    A job held while the stack slept shows `waking the queue` until the queue is back."""

    WAKING_QUEUE = "waking the queue"  # the stack slept: the queue is being created again
    STARTING_INSTANCE = "starting instance"  # the router called StartInstances
    STARTING_SERVICES = "starting services"  # the node's supervisord started its programs
    LOADING_MODEL = "loading model"  # nginx and the watcher are up; vLLM is loading
    READY = "ready"  # vLLM answered a real completion
    STOPPED = "stopped"  # `POST /stop` stopped the node (no boot runs)


class ErrorCode(enum.StrEnum):
    """The `error` values a client can receive; each maps to one HTTP status."""

    INVALID_REQUEST = "invalid_request"  # 400
    UNAUTHORIZED = "unauthorized"  # 401, no token at all
    INVALID_TOKEN = "invalid_token"  # 403  # noqa: S105 - an error code, not a secret
    NOT_FOUND = "not_found"  # 404
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"  # 409, same key, another request
    PAYLOAD_TOO_LARGE = "payload_too_large"  # 413
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415, the body is not application/json
    RATE_LIMITED = "rate_limited"  # 429
    QUEUE_UNAVAILABLE = "queue_unavailable"  # 503
    INSTANCE_UNAVAILABLE = "instance_unavailable"  # 503
    AUTH_UNAVAILABLE = "auth_unavailable"  # 503, the JWKS cannot be fetched
    USER_QUEUE_FULL = "user_queue_full"  # 429, this user's jobs queued or running at the cap
    QUEUE_FULL = "queue_full"  # 503, every user's jobs queued or running at the global cap
    # 403 for a valid token that may not use the route (a group it lacks), a source IP or
    # CORS origin: distinct from invalid_token, so that clients do not renew their token.
    FORBIDDEN = "forbidden"
    RESIZE_IN_PROGRESS = "resize_in_progress"  # 409, another POST /resize has not finished
    # 403 for an admin whose token's sign-in used no second factor, where admins must use MFA
    MFA_REQUIRED = "mfa_required"
    # 409 for a cancel of a job held in S3 while the stack wakes: it can be cancelled once queued
    JOB_HELD = "job_held"


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


def jobs_of_key(sub: str) -> str:
    return JOBS_OF_KEY_PREFIX + sub


def stop_rate_key(sub: str) -> str:
    return STOP_RATE_KEY_PREFIX + sub


def status_rate_key(sub: str) -> str:
    return STATUS_RATE_KEY_PREFIX + sub


def is_idempotency_key(value: str) -> bool:
    return isinstance(value, str) and _IDEMPOTENCY_KEY.fullmatch(value) is not None


def idempotency_key(sub: str, key: str) -> str:
    """The Redis key remembering what `key` admitted for `sub`: keys are scoped per user."""
    if not is_idempotency_key(key):
        raise ValueError(f"not an idempotency key (1-128 of A-Z a-z 0-9 . _ : -): {key!r}")
    return f"{IDEMPOTENCY_KEY_PREFIX}{sub}:{key}"


def reply_s3_uri(bucket: str, sub: str, job_id: str) -> str:
    return f"s3://{bucket}/{sub}/{job_id}.json"


def split_s3_uri(uri: str) -> tuple[str, str] | None:
    """(bucket, key) of an `s3://bucket/key` URI; None when it is not one."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        return None
    return bucket, key

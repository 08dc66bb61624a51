"""The job record `job:{id}` and how it changes: the one place that names its fields.

A record is a Redis hash of strings. Admission creates it `queued`; after that
it changes only by the transitions below, each a function here that returns
the fields it writes (the Lua scripts that change records take their field
names from `lua()`, so no script spells one):

    (none)   --admit-------------------------> queued
    queued   --pick-up-----------------------> running   (attempts + 1)
    running  --pick-up after a lost delivery-> running   (attempts + 1)
    running  --returned before it ran--------> queued    (attempts - 1)
    running  --settled-----------------------> done | failed
    queued   --the router could not boot-----> failed
    queued   --cancelled by its owner--------> cancelled (never runs)
    running  --cancelled, seen by the watcher> cancelled (its partial output kept)
    (none)   --picked up after its TTL-------> expired

A running job's owner asks for its cancel by setting `cancel_requested`; the
watcher that runs it sees the mark while it publishes the text so far
(`partial`), closes its request to the inference server and settles it.

`done`, `failed`, `expired` and `cancelled` are final: a final record is never changed
again, only acknowledged (`FINISHED`).
"""

from __future__ import annotations

import enum
import hashlib
import json
import string

from tlops.contract import JobStatus, reply_s3_uri
from tlops.contract.request import InferRequest


class Field(enum.StrEnum):
    STATUS = "status"
    SUB = "sub"  # the owner: the token subject that submitted the job
    PROMPT = "prompt"  # a completion job's text (absent on a chat job)
    MESSAGES = "messages"  # a chat job's conversation: a JSON list of {role, content}
    IDLE = "idle"  # minutes the node stays up after this job
    REPLY_S3 = "reply_s3"
    TS = "ts"  # enqueued, ms since the epoch, Redis' clock
    ATTEMPTS = "attempts"  # deliveries so far
    ERROR = "error"
    MAX_TOKENS = "max_tokens"
    TEMPERATURE = "temperature"
    STARTED_TS = "started_ts"
    FINISHED_TS = "finished_ts"
    PARTIAL = "partial"  # a running job's output so far, published by the watcher
    CANCEL_REQUESTED = "cancel_requested"  # "1" once the owner asked to cancel a running job


# The `jobs` stream entry's fields: the job id, and its owner for when the record is gone.
ENTRY_ID = "id"
ENTRY_SUB = "sub"

# The idempotency record `idem:{sub}:{key}` (a hash, IDEMPOTENCY_TTL_SECONDS): the job its
# first request admitted, and that request's fingerprint (`fingerprint` below).
IDEM_JOB = "job"
IDEM_FINGERPRINT = "request_sha256"

FINISHED = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELLED})

# status before → statuses it may become (None: no record yet).
TRANSITIONS: dict[JobStatus | None, frozenset[JobStatus]] = {
    None: frozenset({JobStatus.QUEUED, JobStatus.EXPIRED}),
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    **{status: frozenset() for status in FINISHED},
}


def lua(source: str) -> str:
    """A Lua script with the names defined here put in: `$status`, `$attempts`, ... for the
    record's fields, `$queued`, `$running`, ... for its statuses, `$entry_id` and `$entry_sub`
    for the stream entry's fields, `$idem_job` and `$idem_fingerprint` for the idempotency
    record's."""
    names = {field.value: field.value for field in Field}
    names |= {status.value: status.value for status in JobStatus}
    return string.Template(source).substitute(
        names,
        entry_id=ENTRY_ID,
        entry_sub=ENTRY_SUB,
        idem_job=IDEM_JOB,
        idem_fingerprint=IDEM_FINGERPRINT,
    )


def fingerprint(request: InferRequest) -> str:
    """What makes two requests the same for an Idempotency-Key: the validated fields, defaults
    applied (so `{"prompt": "x"}` and `{"prompt": "x", "idle": 5}` are one request)."""
    canonical = json.dumps(request._asdict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def queued(request: InferRequest, *, sub: str, job_id: str, reply_bucket: str) -> dict[str, str]:
    """A new record's fields; `ts` is added by the admission script from Redis' clock."""
    fields = {
        Field.STATUS: JobStatus.QUEUED.value,
        Field.SUB: sub,
        Field.IDLE: str(request.idle),
        Field.REPLY_S3: reply_s3_uri(reply_bucket, sub, job_id),
        Field.ATTEMPTS: "0",
        Field.ERROR: "",
    }
    if request.messages is not None:
        fields[Field.MESSAGES] = json.dumps(request.messages, separators=(",", ":"))
    else:
        fields[Field.PROMPT] = request.prompt or ""
    if request.max_tokens is not None:
        fields[Field.MAX_TOKENS] = str(request.max_tokens)
    if request.temperature is not None:
        fields[Field.TEMPERATURE] = repr(request.temperature)
    return {str(name): value for name, value in fields.items()}


def not_booted(reason: str) -> dict[str, str]:
    """queued → failed: the router answered 503 because the node could not be started."""
    return {Field.STATUS.value: JobStatus.FAILED.value, Field.ERROR.value: reason}


def conversation(record: dict[str, str]) -> list[dict[str, str]] | None:
    """A chat job's messages as admitted; None for a completion job (a `prompt`)."""
    raw = record.get(Field.MESSAGES)
    return None if not raw else json.loads(raw)


def finished(status: JobStatus, *, sub: str, finished_ms: int, error: str = "") -> dict[str, str]:
    """running → done | failed | cancelled."""
    if status not in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED):
        raise ValueError(f"a delivery settles as done, failed or cancelled, not {status}")
    return {
        Field.STATUS.value: status.value,
        Field.SUB.value: sub,
        Field.FINISHED_TS.value: str(finished_ms),
        Field.ERROR.value: error,
    }


def expired(*, sub: str, finished_ms: int) -> dict[str, str]:
    """(none) → expired: the stream entry outlived its record; `sub` comes from the entry."""
    return {
        Field.STATUS.value: JobStatus.EXPIRED.value,
        Field.SUB.value: sub,
        Field.FINISHED_TS.value: str(finished_ms),
    }


def left_pending(reason: str) -> dict[str, str]:
    """running stays running until redelivered; the reason is kept for the dead letter."""
    return {Field.ERROR.value: reason}


def returned() -> dict[str, str]:
    """running → queued: taken just before a drain and never run (attempts is decremented)."""
    return {Field.STATUS.value: JobStatus.QUEUED.value}


def dead_letter(*, job_id: str, sub: str, reason: str, deliveries: int) -> dict[str, str]:
    """The entry on the dead-letter stream for a job that will not be delivered again."""
    return {ENTRY_ID: job_id, ENTRY_SUB: sub, "reason": reason, "deliveries": str(deliveries)}

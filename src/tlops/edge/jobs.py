"""`GET /jobs/{id}`: what a client may read of its own job, from Redis and the result in S3.

Polling a queued or running job costs one Redis round trip and imports no
boto3. Once the job is finished the result object in S3 is the answer: a
presigned URL to it (computed locally, no request) and, when the object is
small enough, its output inline (one ranged GET, so a large result is never
read whole into the Lambda). A record that expired after its finished TTL is
looked up in S3 directly: the key holds the caller's own `sub`, so nobody can
read another user's result by guessing its id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tlops import contract
from tlops.contract import JobStatus
from tlops.contract.records import Field

INLINE_MAX_BYTES = 64 * 1024  # a result up to this size is returned in the body too
URL_EXPIRES_S = 900


class ResultUnavailable(Exception):
    """S3 could not be read; the client still gets the status and the URL."""


def status_view(job_id: str, record: dict[str, str]) -> dict[str, Any]:
    """The public part of a job record: never the prompt or the messages, never another
    user's `sub`. A running job shows its output so far and whether its cancel was asked."""
    view: dict[str, Any] = {"id": job_id, "status": record.get(Field.STATUS, "")}
    try:
        view["attempts"] = int(record.get(Field.ATTEMPTS) or 0)
    except ValueError:
        view["attempts"] = 0
    if record.get(Field.ERROR) and view["status"] in (JobStatus.FAILED, JobStatus.EXPIRED):
        view["error"] = record[Field.ERROR]
    if view["status"] == JobStatus.RUNNING:
        if Field.PARTIAL in record:
            view["partial_output"] = record[Field.PARTIAL]
        if record.get(Field.CANCEL_REQUESTED) == "1":
            view["cancel_requested"] = True
    return view


def has_result(record: dict[str, str]) -> bool:
    """Whether a record's job stored a result in S3: done or failed, or cancelled once it had
    started (the output so far is its result; a job cancelled while queued has none)."""
    status = record.get(Field.STATUS)
    if status == JobStatus.CANCELLED:
        return bool(record.get(Field.STARTED_TS))
    return status in (JobStatus.DONE, JobStatus.FAILED)


def presigned_url(s3: Any, bucket: str, key: str, expires_s: int = URL_EXPIRES_S) -> str:
    return s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
    )


def read_small_result(s3: Any, bucket: str, key: str, limit: int = INLINE_MAX_BYTES) -> dict | None:
    """The stored result when it is at most `limit` bytes; None when missing or larger.

    One ranged GET: the object's total size comes back in Content-Range, so a
    large result costs `limit` bytes of transfer, not its size.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{limit - 1}")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404", "InvalidRange"):
            return None
        raise ResultUnavailable(f"s3://{bucket}/{key}: {code}") from exc
    except BotoCoreError as exc:
        raise ResultUnavailable(f"s3://{bucket}/{key}: {exc}") from exc
    total = answer.get("ContentRange", "").rpartition("/")[2]
    data = answer["Body"].read()
    if (total.isdigit() and int(total) > limit) or len(data) > limit:
        return {}
    try:
        stored = json.loads(data)
    except ValueError as exc:
        raise ResultUnavailable(f"s3://{bucket}/{key} is not JSON") from exc
    return stored if isinstance(stored, dict) else None


_UNREAD = object()


def finished_view(
    view: dict[str, Any], s3: Any, bucket: str, key: str, stored: Any = _UNREAD
) -> dict:
    """Add the URL to the stored result and, if small, its output to a finished job's view.

    No URL when nothing is stored (a job the router failed before it ran); a URL
    without the output when S3 could not be read just now.
    """
    if stored is _UNREAD:
        try:
            stored = read_small_result(s3, bucket, key)
        except ResultUnavailable:
            stored = {}
    view["output_inline"] = bool(stored)
    if stored is None:
        return view
    view["result_url"] = presigned_url(s3, bucket, key)
    view["result_url_expires_in"] = URL_EXPIRES_S
    for name in ("output", "usage", "model", "latency_ms", "finish_reason"):
        if name in stored:
            view[name] = stored[name]
    if stored.get("status") == JobStatus.FAILED and stored.get("error"):
        view.setdefault("error", stored["error"])
    return view


def job_view(
    job_id: str,
    record: dict[str, str],
    *,
    sub: str,
    reply_bucket: str,
    s3: Callable[[], Any],
) -> dict[str, Any] | None:
    """What `GET /jobs/{id}` answers for `sub`, or None for 404 (unknown, or not theirs).

    `s3` makes the S3 client, called only once S3 is needed (boto3 is imported then).
    """
    if record:
        if record.get(Field.SUB) != sub:
            return None
        view = status_view(job_id, record)
        location = contract.split_s3_uri(record.get(Field.REPLY_S3, ""))
        if has_result(record) and location:
            return finished_view(view, s3(), *location)
        return view
    # The record is gone (finished TTL): the caller's own result key may still be there.
    _, key = contract.split_s3_uri(contract.reply_s3_uri(reply_bucket, sub, job_id))
    client = s3()
    try:
        stored = read_small_result(client, reply_bucket, key)
    except ResultUnavailable:
        return None
    if stored is None:
        return None
    # {} is a result too large to read inline: only a done job's output gets that big.
    view = {"id": job_id, "status": stored.get("status", JobStatus.DONE.value)}
    return finished_view(view, client, reply_bucket, key, stored)


def held_view(job_id: str, held_ms: int, state: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """What `GET /jobs/{id}` answers for a job held while the stack slept: queued while the
    queue is being woken (with why the last wake failed, if it did), expired once it has been
    held longer than `HELD_TTL_SECONDS` (it never runs then)."""
    from tlops.contract import control

    if now_ms - held_ms > control.HELD_TTL_SECONDS * 1000:
        return {"id": job_id, "status": JobStatus.EXPIRED.value, "attempts": 0, "held": True,
                "error": "held while the stack slept, and not run within its lifetime"}  # fmt: skip
    view: dict[str, Any] = {
        "id": job_id,
        "status": JobStatus.QUEUED.value,
        "attempts": 0,
        "held": True,
        "boot_phase": contract.BootPhase.WAKING_QUEUE.value,
    }
    wake = state.get("wake") if isinstance(state.get("wake"), dict) else {}
    if wake.get("error"):
        view["wake_error"] = str(wake["error"])
    return view

"""One job's run: the prompt to the inference server, the result to S3, written once.

The watcher owns Redis and hands each delivery to a `JobRunner`; the runner
owns everything else. `OpenAIRunner` calls an OpenAI-compatible
`/v1/completions` (vLLM) and writes the result with a conditional PUT, so the
first result written is the result (docs/delivery.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import threading
import time
import urllib.parse
from typing import Any, Protocol

from tlops import contract
from tlops.contract import JobStatus
from tlops.contract.failures import FailureReason
from tlops.contract.records import Field
from tlops.contract.results import JobResult
from tlops.node.settings import Settings


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclasses.dataclass
class Job:
    """One delivery of one stream entry, with the record as it was at pick-up."""

    entry_id: str
    job_id: str
    sub: str
    record: dict[str, str]
    delivery: int  # 1 for the first pick-up; the record's `attempts` after this one
    started_ms: int = 0
    dead_reason: str = ""  # set when the job is past its deliveries: dead-letter, do not run


class Refused(Exception):
    """The inference server refused this prompt (4xx): running it again cannot help.

    Each failure class carries the fixed sentence the job's owner reads (`public`); the
    message, which may quote AWS or the server, goes to the node's log only.
    """

    public = FailureReason.PROMPT_REFUSED


class UnusableRecord(Refused):
    """The job's record names no place for its result."""

    public = FailureReason.UNUSABLE_RECORD


class Transient(Exception):
    """Inference or the network failed in a way a later try may not."""

    public = FailureReason.INFERENCE_FAILED


class StoreFailed(Transient):
    """S3 refused or did not answer: the result is not stored (a later try may store it)."""

    public = FailureReason.NOT_STORED


class JobRunner(Protocol):
    """Runs one job to a stored result. The watcher owns Redis; the runner owns the rest."""

    def run(self, job: Job) -> JobResult:
        """Run and store the result; raise Refused or Transient."""

    def store_failure(self, job: Job, result: JobResult) -> JobResult | None:
        """Store a failed job's result where the client looks, if it can (best effort).

        Returns what the result location now holds (an earlier delivery's result wins
        over this one), or None when nothing could be stored.
        """


def result_json(result: JobResult) -> bytes:
    """The stored form: sorted keys and fixed separators, so equal results are equal bytes."""
    return json.dumps(
        result.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    ).encode()


def queued_ms(job: Job) -> int:
    try:
        return int(job.record.get(Field.TS, 0))
    except ValueError:
        return 0


def failed_result(job: Job, error: str) -> JobResult:
    return JobResult(
        id=job.job_id,
        status=JobStatus.FAILED,
        error=error,
        queued_at_ms=queued_ms(job),
        started_at_ms=job.started_ms,
        finished_at_ms=now_ms(),
    )


def job_seed(job_id: str) -> int:
    """A sampling seed fixed by the job id: a job that runs twice asks for the same text."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


class OpenAIRunner:
    """Runs a job on an OpenAI-compatible `/v1/completions` (vLLM) and writes the result to S3."""

    def __init__(self, settings: Settings, s3: Any | None = None):
        parsed = urllib.parse.urlsplit(settings.inference_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"inference URL must be http(s)://host[:port]: {settings.inference_url}"
            )
        self._parsed = parsed
        self._settings = settings
        self._model = settings.model
        self._model_lock = threading.Lock()
        self._local = threading.local()  # one keep-alive connection per worker thread
        # The watcher holds more jobs than this; only `concurrency` reach the server at once.
        self._requests = threading.BoundedSemaphore(settings.concurrency)
        if s3 is None:
            from tlops.common import aws

            s3 = aws.client("s3")
        self._s3 = s3

    # HTTP -------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._parsed.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(
                self._parsed.hostname,
                self._parsed.port,
                timeout=self._settings.request_timeout_s,
            )
            self._local.conn = conn
        return conn

    def _request(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        base = self._parsed.path.rstrip("/")
        raw = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if raw is not None else {}
        if self._settings.inference_api_key:  # vLLM's VLLM_API_KEY guards every /v1 route
            headers["authorization"] = f"Bearer {self._settings.inference_api_key}"
        conn = self._connection()
        try:
            conn.request(method, base + path, body=raw, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._local.conn = None
            raise Transient(f"inference server unreachable: {exc!r}") from exc
        try:
            return response.status, json.loads(data or b"null")
        except ValueError:
            return response.status, data.decode("utf-8", "replace")

    @staticmethod
    def _message(payload: Any) -> str:
        if isinstance(payload, dict):
            error = payload.get("error", payload.get("message", payload))
            if isinstance(error, dict):
                return str(error.get("message", error))
            return str(error)
        return str(payload)

    def model(self) -> str:
        """The configured model, or the first one the server lists (asked once)."""
        with self._model_lock:
            if self._model is None:
                status, payload = self._request("GET", "/v1/models")
                if status != 200:
                    raise Transient(f"GET /v1/models answered {status}: {self._message(payload)}")
                try:
                    self._model = str(payload["data"][0]["id"])
                except (KeyError, IndexError, TypeError) as exc:
                    raise Transient(f"GET /v1/models listed no model: {payload!r}") from exc
            return self._model

    # S3 ---------------------------------------------------------------------
    @staticmethod
    def _location(job: Job) -> tuple[str, str]:
        uri = job.record.get(Field.REPLY_S3, "")
        location = contract.split_s3_uri(uri)
        if location is None:
            raise UnusableRecord(f"job record has no usable reply_s3: {uri!r}")
        return location

    def _existing(self, bucket: str, key: str) -> JobResult | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StoreFailed(f"S3 read of s3://{bucket}/{key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreFailed(f"S3 unreachable: {exc}") from exc
        return JobResult.model_validate_json(body)

    def _put_once(self, bucket: str, key: str, result: JobResult) -> JobResult:
        """Write unless an object is already there; the first result written is the result."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=result_json(result),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                existing = self._existing(bucket, key)
                if existing is not None:
                    return existing
            raise StoreFailed(f"S3 write of s3://{bucket}/{key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreFailed(f"S3 unreachable: {exc}") from exc
        return result

    # the job ------------------------------------------------------------------
    def run(self, job: Job) -> JobResult:
        bucket, key = self._location(job)
        body: dict[str, Any] = {
            "model": self.model(),
            "prompt": job.record.get(Field.PROMPT, ""),
            "max_tokens": int(job.record.get(Field.MAX_TOKENS) or self._settings.max_tokens),
            "seed": job_seed(job.job_id),
        }
        if job.record.get(Field.TEMPERATURE):
            body["temperature"] = float(job.record[Field.TEMPERATURE])
        with self._requests:
            started = time.perf_counter()
            status, payload = self._request("POST", "/v1/completions", body)
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        # 401/403: this node's key and vLLM's disagree (a setup fault, not the prompt's): retried.
        if 400 <= status < 500 and status not in (401, 403, 408, 429):
            raise Refused(f"inference refused the prompt ({status}): {self._message(payload)}")
        if status != 200:
            raise Transient(f"inference answered {status}: {self._message(payload)}")
        try:
            output = str(payload["choices"][0].get("text") or "")
            usage = {k: int(v) for k, v in (payload.get("usage") or {}).items() if v is not None}
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise Transient(f"inference answer not understood: {payload!r}") from exc
        result = JobResult(
            id=job.job_id,
            status=JobStatus.DONE,
            output=output,
            usage=usage,
            model=str(payload.get("model") or body["model"]),
            latency_ms=latency_ms,
            queued_at_ms=queued_ms(job),
            started_at_ms=job.started_ms,
            finished_at_ms=now_ms(),
        )
        return self._put_once(bucket, key, result)

    def store_failure(self, job: Job, result: JobResult) -> JobResult | None:
        try:
            bucket, key = self._location(job)
            return self._put_once(bucket, key, result)
        except (Refused, Transient):
            return None  # best effort: the record in Redis carries the error either way

"""One job's run: the prompt to the inference server, the result to S3, written once.

The watcher owns Redis and hands each delivery to a `JobRunner`; the runner
owns everything else. `OpenAIRunner` streams from an OpenAI-compatible server
(vLLM): `/v1/chat/completions` for a chat job, `/v1/completions` for a prompt.
It hands the text so far to the watcher's `progress` callback at a bounded
rate, closes the request when that callback says the job was cancelled (vLLM
aborts a request whose client went away), and writes the result with a
conditional PUT, so the first result written is the result (docs/delivery.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

from tlops import contract
from tlops.contract import JobStatus, records
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


# Publishes a running job's text so far; answers True when its owner asked to cancel it.
Progress = Callable[[str], bool]


class JobRunner(Protocol):
    """Runs one job to a stored result. The watcher owns Redis; the runner owns the rest."""

    def run(self, job: Job, progress: Progress | None = None) -> JobResult:
        """Run and store the result (`cancelled`, with the text so far, once `progress`
        answers True); raise Refused or Transient."""

    def store_failure(self, job: Job, result: JobResult) -> JobResult | None:
        """Store the result of a job that did not run to its end (failed, or cancelled
        before it ran) where the client looks, if it can (best effort).

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


def cancelled_result(job: Job, output: str) -> JobResult:
    """A job cancelled by its owner before it ran to its end: the text it had so far."""
    return failed_result(job, "").model_copy(
        update={"status": JobStatus.CANCELLED, "output": output}
    )


def job_seed(job_id: str) -> int:
    """A sampling seed fixed by the job id: a job that runs twice asks for the same text."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


class Pacer:
    """When the text so far is published: the first text at once (the time to first visible
    text is the model's own plus one round trip), then once `every_s` seconds or
    `every_chunks` chunks have passed since the last publish, whichever comes first. A
    publish is a Redis round trip, so a job costs a few per generation, not one per token."""

    def __init__(self, every_s: float, every_chunks: int):
        self._every_s = every_s
        self._every_chunks = every_chunks
        self._last: float | None = None
        self._chunks = 0

    def due(self) -> bool:
        """Called once per chunk that brought text: whether to publish now."""
        self._chunks += 1
        now = time.monotonic()
        waited = self._last is None or now - self._last >= self._every_s
        if not waited and self._chunks < self._every_chunks:
            return False
        self._last, self._chunks = now, 0
        return True


@dataclasses.dataclass
class Generation:
    """What one streamed request brought back."""

    text: str = ""
    usage: dict[str, int] = dataclasses.field(default_factory=dict)
    model: str = ""
    finish_reason: str = ""
    cancelled: bool = False


class OpenAIRunner:
    """Runs a job on an OpenAI-compatible server (vLLM), streaming, and writes the result to S3."""

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

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        """Close the connection (the server sees its client go) and start afresh next time."""
        conn.close()
        self._local.conn = None

    def _send(
        self, conn: http.client.HTTPConnection, method: str, path: str, body: dict | None
    ) -> http.client.HTTPResponse:
        base = self._parsed.path.rstrip("/")
        raw = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if raw is not None else {}
        if self._settings.inference_api_key:  # vLLM's VLLM_API_KEY guards every /v1 route
            headers["authorization"] = f"Bearer {self._settings.inference_api_key}"
        conn.request(method, base + path, body=raw, headers=headers)
        return conn.getresponse()

    @staticmethod
    def _decode(data: bytes) -> Any:
        try:
            return json.loads(data or b"null")
        except ValueError:
            return data.decode("utf-8", "replace")

    def _request(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        conn = self._connection()
        try:
            response = self._send(conn, method, path, body)
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop(conn)
            raise Transient(f"inference server unreachable: {exc!r}") from exc
        return response.status, self._decode(data)

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
    def _body(self, job: Job) -> tuple[str, dict[str, Any]]:
        """The route and the request: a chat job's conversation goes to the chat route, so
        the model's own chat template applies; a prompt goes to the completions route."""
        body: dict[str, Any] = {
            "model": self.model(),
            "max_tokens": int(job.record.get(Field.MAX_TOKENS) or self._settings.max_tokens),
            "seed": job_seed(job.job_id),
            "stream": True,
            "stream_options": {"include_usage": True},  # the usage comes in a last chunk
        }
        if job.record.get(Field.TEMPERATURE):
            body["temperature"] = float(job.record[Field.TEMPERATURE])
        try:
            messages = records.conversation(job.record)
        except ValueError as exc:
            raise UnusableRecord(f"job record's messages are not JSON: {exc}") from exc
        if messages is not None:
            return "/v1/chat/completions", body | {"messages": messages}
        return "/v1/completions", body | {"prompt": job.record.get(Field.PROMPT, "")}

    def run(self, job: Job, progress: Progress | None = None) -> JobResult:
        bucket, key = self._location(job)
        path, body = self._body(job)
        with self._requests:
            started = time.perf_counter()
            generation = self._generate(path, body, progress)
        result = JobResult(
            id=job.job_id,
            status=JobStatus.CANCELLED if generation.cancelled else JobStatus.DONE,
            output=generation.text,
            usage=generation.usage,
            model=generation.model or body["model"],
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            queued_at_ms=queued_ms(job),
            started_at_ms=job.started_ms,
            finished_at_ms=now_ms(),
            finish_reason=generation.finish_reason,
        )
        return self._put_once(bucket, key, result)

    def _generate(self, path: str, body: dict[str, Any], progress: Progress | None) -> Generation:
        conn = self._connection()
        try:
            response = self._send(conn, "POST", path, body)
            if response.status != 200:
                self._refuse(response.status, self._decode(response.read()))
            generation = self._read_stream(response, progress)
        except (OSError, http.client.HTTPException) as exc:
            self._drop(conn)
            raise Transient(f"inference server unreachable: {exc!r}") from exc
        except Exception:
            self._drop(conn)  # a stream left half read cannot carry the next request
            raise
        if generation.cancelled:
            self._drop(conn)  # vLLM aborts a request whose client disconnects
        return generation

    def _refuse(self, status: int, payload: Any) -> None:
        # 401/403: this node's key and vLLM's disagree (a setup fault, not the prompt's): retried.
        if 400 <= status < 500 and status not in (401, 403, 408, 429):
            raise Refused(f"inference refused the prompt ({status}): {self._message(payload)}")
        raise Transient(f"inference answered {status}: {self._message(payload)}")

    def _read_stream(
        self, response: http.client.HTTPResponse, progress: Progress | None
    ) -> Generation:
        """Server-sent events, `data: {chunk}` lines up to `data: [DONE]`; the text is
        gathered and, when the pacer says so, handed to `progress`."""
        generation = Generation()
        pieces: list[str] = []
        pacer = Pacer(self._settings.partial_interval_s, self._settings.partial_tokens)
        deadline = time.monotonic() + self._settings.request_timeout_s
        while True:
            line = response.readline()
            if not line:
                raise Transient("inference stream ended before [DONE]")
            if not line.startswith(b"data:"):
                continue  # the blank line after each event, comments
            data = line[5:].strip()
            if data == b"[DONE]":
                response.read()  # the end of the chunked body: the connection serves again
                break
            piece = self._absorb(data, generation)
            if time.monotonic() > deadline:
                raise Transient(f"inference took over {self._settings.request_timeout_s} s")
            if not piece:
                continue
            pieces.append(piece)
            if progress is not None and pacer.due() and progress("".join(pieces)):
                generation.cancelled = True
                break
        generation.text = "".join(pieces)
        return generation

    def _absorb(self, data: bytes, generation: Generation) -> str:
        """One event into `generation`; returns the text it brought."""
        try:
            event = json.loads(data)
            if "error" in event:  # vLLM reports a failure met mid-stream as an event
                raise Transient(f"inference failed while streaming: {self._message(event)}")
            generation.model = str(event.get("model") or generation.model)
            if event.get("usage"):
                usage = event["usage"].items()
                generation.usage = {k: v for k, v in usage if isinstance(v, int)}
            choice = (event.get("choices") or [{}])[0]
            if choice.get("finish_reason"):
                generation.finish_reason = str(choice["finish_reason"])
            # completions: choices[0].text; chat: choices[0].delta.content
            return str(choice.get("text") or (choice.get("delta") or {}).get("content") or "")
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            raise Transient(f"inference stream not understood: {data[:200]!r}") from exc

    def store_failure(self, job: Job, result: JobResult) -> JobResult | None:
        try:
            bucket, key = self._location(job)
            return self._put_once(bucket, key, result)
        except (Refused, Transient):
            return None  # best effort: the record in Redis carries the error either way

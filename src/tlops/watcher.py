"""The watcher: takes jobs from the Redis stream, runs them on the inference server, stores results.

It runs on the GPU node next to vLLM and delivers each job at least once
(docs/delivery.md). The shape follows rq's `work()`: bootstrap, signals, a
loop, and a teardown that always runs.

- The main thread reads the `jobs` stream as one consumer of the `watchers`
  group, at most as many entries as there are free slots, and reclaims entries
  that another (dead) consumer left unacknowledged longer than the visibility
  timeout (XAUTOCLAIM).
- Worker threads each run one job at a time: vLLM batches the concurrent
  requests, so threads are enough and keep the code synchronous. There are
  twice `concurrency` of them and as many slots, while the runner lets only
  `concurrency` requests reach the server: the next job is already taken and
  waiting when a request ends, so the server is not idle while the previous
  result goes to S3 and Redis (bench/saturation.py measures this).
- One finisher thread writes the outcomes to Redis in batches (one MULTI per
  batch), so a fast runner is not held back by a round trip per job.

A job's result goes to S3 before its status flips to done and the stream entry
is acknowledged, in that order, and the S3 write is conditional (only if no
object exists): a watcher killed between the two leaves the entry pending, and
the next delivery's write is refused and adopts the stored object, so a result
never changes once written. (Not looking first keeps the node's S3 rights to
PutObject and GetObject: without ListBucket, reading a missing key is a 403.)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import queue
import random
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry

from tlops import contract
from tlops.contract import JobStatus
from tlops.contract.records import JobResult
from tlops.telemetry import Telemetry

DEFAULT_INFERENCE_URL = "http://127.0.0.1:8000"
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_TOKENS = 128
DEFAULT_DRAIN_DEADLINE_S = 30.0
DEFAULT_REQUEST_TIMEOUT_S = 300.0
HEARTBEAT_INTERVAL_S = 5.0  # well inside HEARTBEAT_TTL_SECONDS
LAST_ACTIVITY_FILE = "last_activity"
_REDIS_ERRORS = (redis_py.ConnectionError, redis_py.TimeoutError)
_FINISHED = {JobStatus.DONE.value, JobStatus.FAILED.value, JobStatus.EXPIRED.value}


# KEYS: job records. ARGV: started_ms, max_deliveries, held TTL, the running status, then the
# finished statuses. Each record is returned as it was; a record that exists, is not finished
# and has deliveries left is marked running, its attempts counted and its TTL set.
_PICK_UP = """
local started, max_deliveries, held = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local running = ARGV[4]
local finished = {}
for i = 5, #ARGV do finished[ARGV[i]] = true end
local out = {}
for i, key in ipairs(KEYS) do
  local record = redis.call('HGETALL', key)
  out[i] = record
  if #record > 0 then
    local status, attempts = nil, 0
    for j = 1, #record, 2 do
      if record[j] == 'status' then status = record[j + 1] end
      if record[j] == 'attempts' then attempts = tonumber(record[j + 1]) or 0 end
    end
    if not finished[status] and attempts < max_deliveries then
      redis.call('HSET', key, 'status', running, 'started_ts', started)
      redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('EXPIRE', key, held)
    end
  end
end
return out
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- settings -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Settings:
    redis_url: str
    inference_url: str = DEFAULT_INFERENCE_URL
    model: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    state_dir: Path | None = None
    visibility_timeout_s: float = float(contract.VISIBILITY_TIMEOUT_SECONDS)
    max_deliveries: int = contract.MAX_DELIVERIES
    drain_deadline_s: float = DEFAULT_DRAIN_DEADLINE_S
    max_tokens: int = DEFAULT_MAX_TOKENS
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    consumer: str = dataclasses.field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}"
    )
    block_ms: int = 1000
    backoff_cap_s: float = 10.0


class Backoff:
    """Exponential backoff with jitter: waits grow while a dependency stays down.

    Half the delay is fixed and half random, so a retry never comes right away
    (no busy loop) and several watchers do not retry in step.
    """

    def __init__(self, base: float = 0.1, cap: float = 10.0):
        self.base, self.cap, self.failures = base, cap, 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.failures)
        self.failures = min(self.failures + 1, 30)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto

    def reset(self) -> None:
        self.failures = 0


# --- jobs and runners ---------------------------------------------------------
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
    """The inference server refused this prompt (4xx): running it again cannot help."""


class Transient(Exception):
    """Inference, S3 or the network failed in a way a later try may not."""


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


def _queued_ms(job: Job) -> int:
    try:
        return int(job.record.get("ts", 0))
    except ValueError:
        return 0


def failed_result(job: Job, error: str) -> JobResult:
    return JobResult(
        id=job.job_id,
        status=JobStatus.FAILED,
        error=error,
        queued_at_ms=_queued_ms(job),
        started_at_ms=job.started_ms,
        finished_at_ms=now_ms(),
    )


def job_seed(job_id: str) -> int:
    """A sampling seed fixed by the job id: a job that runs twice asks for the same text."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


class NoopRunner:
    """Finishes every job at once with an empty output: measures the queue alone (bench)."""

    def run(self, job: Job) -> JobResult:
        return JobResult(
            id=job.job_id,
            status=JobStatus.DONE,
            queued_at_ms=_queued_ms(job),
            started_at_ms=job.started_ms,
            finished_at_ms=job.started_ms,
        )

    def store_failure(self, job: Job, result: JobResult) -> JobResult | None:
        """Nothing is stored for no-op jobs."""
        return None


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
            from tlops import aws

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
        uri = job.record.get("reply_s3", "")
        location = contract.split_s3_uri(uri)
        if location is None:
            raise Refused(f"job record has no usable reply_s3: {uri!r}")
        return location

    def _existing(self, bucket: str, key: str) -> JobResult | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise Transient(f"S3 read of s3://{bucket}/{key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise Transient(f"S3 unreachable: {exc}") from exc
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
            raise Transient(f"S3 write of s3://{bucket}/{key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise Transient(f"S3 unreachable: {exc}") from exc
        return result

    # the job ------------------------------------------------------------------
    def run(self, job: Job) -> JobResult:
        bucket, key = self._location(job)
        body: dict[str, Any] = {
            "model": self.model(),
            "prompt": job.record.get("prompt", ""),
            "max_tokens": int(job.record.get("max_tokens") or self._settings.max_tokens),
            "seed": job_seed(job.job_id),
        }
        if job.record.get("temperature"):
            body["temperature"] = float(job.record["temperature"])
        with self._requests:
            started = time.perf_counter()
            status, payload = self._request("POST", "/v1/completions", body)
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        if 400 <= status < 500 and status not in (408, 429):
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
            queued_at_ms=_queued_ms(job),
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


# --- the watcher --------------------------------------------------------------
@dataclasses.dataclass
class _Outcome:
    # done, failed, dead: settled; pending: left for redelivery after the visibility timeout;
    # returned: the same, and the delivery is not counted (it never ran)
    kind: str
    job: Job
    result: JobResult | None = None
    reason: str = ""


class Watcher:
    def __init__(
        self,
        settings: Settings,
        runner: JobRunner,
        *,
        telemetry: Telemetry | None = None,
        redis_client: redis_py.Redis | None = None,
    ):
        self.settings = settings
        self.runner = runner
        self.log = telemetry or Telemetry("watcher")
        self.redis = redis_client or redis_py.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=max(5.0, settings.block_ms / 1000 + 3),
            retry=Retry(NoBackoff(), 0),  # this module does its own backoff
        )
        self.stop_event = threading.Event()
        self.slots = 2 * settings.concurrency  # jobs held: in the runner plus one ready each
        self._held_ttl_s = contract.QUEUED_TTL_SECONDS + int(settings.visibility_timeout_s)
        self.counts = {"done": 0, "failed": 0, "dead": 0, "expired": 0}
        self._work: queue.Queue[Job | None] = queue.Queue()
        self._outcomes: queue.Queue[_Outcome] = queue.Queue()
        self._slots = threading.Condition()
        self._in_flight: set[str] = set()  # stream entry ids delivered here and not yet settled
        self._last_activity_ms = now_ms()
        self._written_activity_ms = 0
        self._drain_until = float("inf")
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._next_heartbeat = 0.0
        self._threads: list[threading.Thread] = []
        self._pick_up_script = self.redis.register_script(_PICK_UP)

    # rq-style skeleton ----------------------------------------------------------
    def work(self) -> int:
        self._install_signals()
        try:
            self._bootstrap()
            self._loop()
        finally:
            self._teardown()
        return 0

    def stop(self) -> None:
        self.stop_event.set()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # run in a thread (tests): the owner calls stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop())

    def _bootstrap(self) -> None:
        backoff = Backoff(cap=self.settings.backoff_cap_s)
        while not self.stop_event.is_set():
            try:
                self._ensure_group()
                break
            except _REDIS_ERRORS as exc:
                self.log.log("WARNING", "redis unreachable at start", error=repr(exc))
                self.stop_event.wait(backoff.next())
        for index in range(self.slots):
            self._spawn(self._worker, f"worker-{index}")
        self._spawn(self._finisher, "finisher")
        self.log.log(
            "INFO",
            "watcher started",
            consumer=self.settings.consumer,
            concurrency=self.settings.concurrency,
        )

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        # Daemon threads: a request stuck past the drain deadline must not hold the exit.
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(
                contract.JOB_STREAM, contract.CONSUMER_GROUP, id="0", mkstream=True
            )
        except redis_py.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _loop(self) -> None:
        backoff = Backoff(cap=self.settings.backoff_cap_s)
        group_missing = False
        while not self.stop_event.is_set():
            try:
                if group_missing:
                    self._ensure_group()
                    group_missing = False
                self._tick()
                free = self._wait_for_free_slot()
                if free:
                    picked = self._reclaim(free) or self._read(free)
                    self._pick_up(picked)
                backoff.reset()
            except _REDIS_ERRORS as exc:
                delay = backoff.next()
                self.log.log("WARNING", "redis unreachable", error=repr(exc), retry_in_s=delay)
                self.stop_event.wait(delay)
            except redis_py.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # Redis came back empty (no persistence): the group must be made again.
                self.log.log("WARNING", "consumer group missing; creating it")
                group_missing = True

    def _teardown(self) -> None:
        self.stop_event.set()
        self._drain_until = time.monotonic() + self.settings.drain_deadline_s
        with self._slots:
            while self._in_flight and time.monotonic() < self._drain_until:
                self._slots.wait(timeout=0.2)
            left = len(self._in_flight)
        for _ in range(self.slots):
            self._work.put(None)
        self._write_activity(force=True)
        with contextlib.suppress(*_REDIS_ERRORS):  # if not deleted, the key expires on its own
            self.redis.delete(contract.HEARTBEAT_KEY)
        self.log.log("INFO", "watcher stopped", left_pending=left, **self.counts)

    # reading ---------------------------------------------------------------------
    def _wait_for_free_slot(self) -> int:
        with self._slots:
            if len(self._in_flight) >= self.slots:
                self._slots.wait(timeout=0.5)
            return max(0, self.slots - len(self._in_flight))

    def _read(self, count: int) -> list[tuple[str, dict[str, str]]]:
        reply = self.redis.xreadgroup(
            contract.CONSUMER_GROUP,
            self.settings.consumer,
            {contract.JOB_STREAM: ">"},
            count=count,
            block=self.settings.block_ms,
        )
        return [entry for _, entries in reply or [] for entry in entries]

    def _reclaim(self, count: int) -> list[tuple[str, dict[str, str]]]:
        """Take over entries left unacknowledged past the visibility timeout."""
        if time.monotonic() < self._next_claim:
            return []
        cursor, claimed, deleted = self.redis.xautoclaim(
            contract.JOB_STREAM,
            contract.CONSUMER_GROUP,
            self.settings.consumer,
            min_idle_time=int(self.settings.visibility_timeout_s * 1000),
            start_id=self._claim_cursor,
            count=count,
        )[:3]
        self._claim_cursor = cursor
        if cursor == "0-0":  # a full pass: wait before scanning again
            self._next_claim = time.monotonic() + min(5.0, self.settings.visibility_timeout_s / 2)
        if deleted:
            self.redis.xack(contract.JOB_STREAM, contract.CONSUMER_GROUP, *deleted)
        with self._slots:
            return [(eid, f) for eid, f in claimed if f and eid not in self._in_flight]

    def _pick_up(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Decide each entry's fate from its record and write the pick-up in one round trip."""
        if not entries:
            return
        valid = [(eid, f) for eid, f in entries if contract.is_job_id(f.get("id", ""))]
        started = now_ms()
        # One script reads every record and marks the runnable ones running (atomically, one
        # round trip); what it returns is each record as it was before.
        flat_records = (
            self._pick_up_script(
                keys=[contract.job_key(fields["id"]) for _, fields in valid],
                args=[started, self.settings.max_deliveries, self._held_ttl_s,
                      JobStatus.RUNNING.value, *sorted(_FINISHED)],
            )
            if valid
            else []
        )  # fmt: skip
        records = [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in flat_records]

        writes = self.redis.pipeline(transaction=False)
        to_run: list[Job] = []
        for entry_id, fields in entries:
            if not contract.is_job_id(fields.get("id", "")):
                self._dead_letter_entry(writes, entry_id, fields, "malformed stream entry")
        for (entry_id, fields), record in zip(valid, records, strict=True):
            job_id, key = fields["id"], contract.job_key(fields["id"])
            sub = record.get("sub") or fields.get("sub", "")
            if not record:
                writes.hset(
                    key,
                    mapping={
                        "status": JobStatus.EXPIRED.value,
                        "sub": sub,
                        "finished_ts": started,
                    },
                )
                writes.expire(key, contract.FINISHED_TTL_SECONDS)
                writes.xack(contract.JOB_STREAM, contract.CONSUMER_GROUP, entry_id)
                self.counts["expired"] += 1
                self.log.log("INFO", "job expired before it ran", job_id=job_id)
                continue
            if record.get("status") in _FINISHED:
                writes.xack(contract.JOB_STREAM, contract.CONSUMER_GROUP, entry_id)
                continue
            attempts = int(record.get("attempts") or 0)
            job = Job(entry_id, job_id, sub, record, attempts + 1, started)
            if attempts >= self.settings.max_deliveries:
                reason = record.get("error") or "watcher lost the job on every delivery"
                to_run.append(dataclasses.replace(job, delivery=attempts, dead_reason=reason))
                continue
            to_run.append(job)  # the script marked it running
        if len(writes):
            writes.execute()
        if to_run:
            with self._slots:
                self._in_flight.update(job.entry_id for job in to_run)
            self._last_activity_ms = started
            for job in to_run:
                self._work.put(job)

    def _dead_letter_entry(self, pipe: Any, entry_id: str, fields: dict, reason: str) -> None:
        pipe.xadd(
            contract.DEAD_LETTER_STREAM,
            {
                "id": fields.get("id", ""),
                "sub": fields.get("sub", ""),
                "reason": reason,
                "deliveries": 1,
            },
        )
        pipe.xack(contract.JOB_STREAM, contract.CONSUMER_GROUP, entry_id)

    # running -----------------------------------------------------------------------
    def _worker(self) -> None:
        while (job := self._work.get()) is not None:
            try:
                self._outcomes.put(self._run(job))
            except Exception as exc:  # a job must never kill its worker thread
                self.log.log("ERROR", "job crashed", job_id=job.job_id, error=repr(exc))
                self._outcomes.put(_Outcome("pending", job, reason=f"watcher error: {exc!r}"))

    def _run(self, job: Job) -> _Outcome:
        if job.dead_reason:
            return self._give_up(job, job.dead_reason, "dead")
        if self.stop_event.is_set():  # taken just before a SIGTERM: leave it for redelivery
            return _Outcome("returned", job)
        # Retry inside this delivery for most of the visibility timeout, then let it lapse:
        # no other watcher takes the entry over while this one still works on it.
        window_end = time.monotonic() + self.settings.visibility_timeout_s * 0.8
        backoff = Backoff(base=0.2, cap=self.settings.backoff_cap_s)
        while True:
            try:
                return _Outcome("done", job, result=self.runner.run(job))
            except Refused as exc:
                return self._give_up(job, str(exc), "failed")
            except Transient as exc:
                reason = str(exc)
                delay = backoff.next()
                if self.stop_event.is_set() or time.monotonic() + delay >= window_end:
                    break
                self.log.log("WARNING", "job will be retried", job_id=job.job_id, error=reason)
                self.stop_event.wait(delay)
        if job.delivery >= self.settings.max_deliveries:
            return self._give_up(job, f"gave up after {job.delivery} deliveries: {reason}", "dead")
        return _Outcome("pending", job, reason=reason)

    def _give_up(self, job: Job, reason: str, kind: str) -> _Outcome:
        stored = self.runner.store_failure(job, failed_result(job, reason))
        if stored is not None and stored.status is JobStatus.DONE:
            # An earlier delivery stored its result and died before saying so: it stands.
            return _Outcome("done", job, result=stored)
        return _Outcome(kind, job, result=stored, reason=reason)

    # finishing -----------------------------------------------------------------------
    def _finisher(self) -> None:
        backoff = Backoff(cap=self.settings.backoff_cap_s)
        while True:
            batch = [self._outcomes.get()]
            while len(batch) < 512:
                try:
                    batch.append(self._outcomes.get_nowait())
                except queue.Empty:
                    break
            while True:
                try:
                    self._settle(batch)
                    backoff.reset()
                    break
                except _REDIS_ERRORS as exc:
                    if time.monotonic() >= self._drain_until:
                        # Left pending: the next delivery adopts any result already in S3.
                        self._release(batch)
                        break
                    delay = backoff.next()
                    self.log.log("WARNING", "redis unreachable", error=repr(exc), retry_in_s=delay)
                    time.sleep(delay)
                except redis_py.RedisError as exc:
                    # Redis refused a command (e.g. the group vanished with a restart): the
                    # rest of the transaction ran; what did not stays pending and comes back.
                    self.log.log("ERROR", "settling jobs failed", error=repr(exc))
                    self._release(batch)
                    break

    def _settle(self, batch: list[_Outcome]) -> None:
        finished = now_ms()
        pipe = self.redis.pipeline(transaction=True)
        settled: list[str] = []  # acknowledged with one XACK, last in the same transaction
        for outcome in batch:
            job, key = outcome.job, contract.job_key(outcome.job.job_id)
            if outcome.kind in ("pending", "returned"):
                if outcome.kind == "pending":
                    pipe.hset(key, "error", outcome.reason)
                else:
                    pipe.hset(key, "status", JobStatus.QUEUED.value)
                    pipe.hincrby(key, "attempts", -1)
                # had the record expired meanwhile, the write above made a new one: bound it
                pipe.expire(key, self._held_ttl_s, nx=True)
                continue
            status = JobStatus.DONE if outcome.kind == "done" else JobStatus.FAILED
            pipe.hset(
                key,
                mapping={
                    "status": status.value,
                    "sub": job.sub,
                    "finished_ts": finished,
                    "error": "" if outcome.kind == "done" else outcome.reason,
                },
            )
            pipe.expire(key, contract.FINISHED_TTL_SECONDS)
            if outcome.kind == "dead":
                pipe.xadd(
                    contract.DEAD_LETTER_STREAM,
                    {
                        "id": job.job_id,
                        "sub": job.sub,
                        "reason": outcome.reason,
                        "deliveries": job.delivery,
                    },
                )
            settled.append(job.entry_id)
        if settled:
            pipe.xack(contract.JOB_STREAM, contract.CONSUMER_GROUP, *settled)
        pipe.execute()
        for outcome in batch:
            self._log_outcome(outcome)
        self._release(batch)

    def _release(self, batch: list[_Outcome]) -> None:
        with self._slots:
            for outcome in batch:
                self._in_flight.discard(outcome.job.entry_id)
                if outcome.kind in self.counts:
                    self.counts[outcome.kind] += 1
            self._slots.notify_all()
        self._last_activity_ms = now_ms()

    def _log_outcome(self, outcome: _Outcome) -> None:
        fields: dict[str, Any] = {"job_id": outcome.job.job_id, "delivery": outcome.job.delivery}
        if outcome.result is not None and outcome.kind == "done":
            fields |= {
                "latency_ms": outcome.result.latency_ms,
                "prompt_tokens": outcome.result.usage.get("prompt_tokens", 0),
                "completion_tokens": outcome.result.usage.get("completion_tokens", 0),
            }
        if outcome.reason:
            fields["error"] = outcome.reason
        level = "INFO" if outcome.kind == "done" else "WARNING"
        self.log.log(level, f"job {outcome.kind}", **fields)

    # liveness ------------------------------------------------------------------------
    def _tick(self) -> None:
        if time.monotonic() < self._next_heartbeat:
            return
        with self._slots:
            in_flight = len(self._in_flight)
        if in_flight:
            self._last_activity_ms = now_ms()  # a long generation is activity too
        beat = {
            "consumer": self.settings.consumer,
            "done": self.counts["done"],
            "failed": self.counts["failed"] + self.counts["dead"],
            "in_flight": in_flight,
            "last_activity_ms": self._last_activity_ms,
            "ts_ms": now_ms(),
        }
        self.redis.set(contract.HEARTBEAT_KEY, json.dumps(beat), ex=contract.HEARTBEAT_TTL_SECONDS)
        self._write_activity()
        self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL_S

    def _write_activity(self, *, force: bool = False) -> None:
        """Keep the idle watchdog's file current; written only when the time moved."""
        state_dir = self.settings.state_dir
        if state_dir is None or (not force and self._last_activity_ms == self._written_activity_ms):
            return
        state_dir.mkdir(parents=True, exist_ok=True)
        temporary = state_dir / f".{LAST_ACTIVITY_FILE}.tmp"
        temporary.write_text(f"{self._last_activity_ms}\n")
        temporary.replace(state_dir / LAST_ACTIVITY_FILE)
        self._written_activity_ms = self._last_activity_ms


# --- entry point --------------------------------------------------------------
def _positive(kind: type, name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            message = f"{name} must be a positive number, got {text!r}"
            raise argparse.ArgumentTypeError(message) from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{name} must be greater than 0, got {text!r}")
        return value

    return parse


_OPTIONS: list[tuple[str, str, type, Any, str]] = [
    # flag, environment variable, type, default, help
    ("--redis-url", "TL_REDIS_URL", str, None, "Redis holding the queue (required)"),
    ("--inference-url", "TL_INFERENCE_URL", str, DEFAULT_INFERENCE_URL, "OpenAI-compatible server"),
    ("--model", "TL_MODEL", str, None, "model name; default: the first the server lists"),
    ("--concurrency", "TL_WATCHER_CONCURRENCY", int, DEFAULT_CONCURRENCY, "requests in flight"),
    ("--state-dir", "TL_WATCHER_STATE_DIR", str, None, "where the last-activity file is kept"),
    (
        "--visibility-timeout",
        "TL_WATCHER_VISIBILITY_TIMEOUT",
        float,
        float(contract.VISIBILITY_TIMEOUT_SECONDS),
        "seconds before an unacknowledged job is delivered again",
    ),
    (
        "--max-deliveries",
        "TL_WATCHER_MAX_DELIVERIES",
        int,
        contract.MAX_DELIVERIES,
        "deliveries before a job is dead-lettered",
    ),
    (
        "--drain-deadline",
        "TL_WATCHER_DRAIN_DEADLINE",
        float,
        DEFAULT_DRAIN_DEADLINE_S,
        "seconds to finish in-flight jobs after SIGTERM",
    ),
    ("--max-tokens", "TL_WATCHER_MAX_TOKENS", int, DEFAULT_MAX_TOKENS, "when a job sets none"),
    (
        "--request-timeout",
        "TL_WATCHER_REQUEST_TIMEOUT",
        float,
        DEFAULT_REQUEST_TIMEOUT_S,
        "seconds one inference request may take",
    ),
]


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    """Flags first, then the environment; a bad value exits 2 naming the flag or variable."""
    parser = argparse.ArgumentParser(prog="tlops watcher", description=__doc__.splitlines()[0])
    for flag, env, kind, _, text in _OPTIONS:
        checked = _positive(kind, flag) if kind in (int, float) else kind
        parser.add_argument(flag, type=checked, default=None, help=f"{text} [{env}]")
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for flag, env, kind, default, _ in _OPTIONS:
        name = flag.removeprefix("--").replace("-", "_")
        value = getattr(args, name)
        if value is None and os.environ.get(env):
            try:
                value = (
                    _positive(kind, env)(os.environ[env])
                    if kind in (int, float)
                    else os.environ[env]
                )
            except argparse.ArgumentTypeError as exc:
                parser.error(str(exc))
        values[name] = default if value is None else value
    if not values["redis_url"]:
        parser.error("--redis-url or TL_REDIS_URL is required")
    return Settings(
        redis_url=values["redis_url"],
        inference_url=values["inference_url"],
        model=values["model"],
        concurrency=values["concurrency"],
        state_dir=Path(values["state_dir"]) if values["state_dir"] else None,
        visibility_timeout_s=values["visibility_timeout"],
        max_deliveries=values["max_deliveries"],
        drain_deadline_s=values["drain_deadline"],
        max_tokens=values["max_tokens"],
        request_timeout_s=values["request_timeout"],
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    try:
        runner = OpenAIRunner(settings)
    except ValueError as exc:
        print(f"tlops watcher: {exc}", file=sys.stderr)
        return 2
    # Threads finishing a job (signing and sending the S3 write) hold the interpreter lock
    # while the next request waits to go out; a shorter switch interval lets it go sooner.
    sys.setswitchinterval(0.0005)
    return Watcher(settings, runner).work()


if __name__ == "__main__":
    sys.exit(main())

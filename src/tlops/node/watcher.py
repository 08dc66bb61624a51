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
- While a job runs, the runner hands its text so far to `_publisher`'s callback
  at a bounded rate; one script writes it as the record's `partial` and answers
  whether the job's owner asked to cancel it (the runner then closes its
  request and stores a `cancelled` result with that text).

A job's result goes to S3 before its status flips to done and the stream entry
is acknowledged, in that order, and the S3 write is conditional (only if no
object exists): a watcher killed between the two leaves the entry pending, and
the next delivery's write is refused and adopts the stored object, so a result
never changes once written. (Not looking first keeps the node's S3 rights to
PutObject and GetObject: without ListBucket, reading a missing key is a 403.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry

from tlops import contract
from tlops.common.control_bucket import ControlBucket
from tlops.common.telemetry import Telemetry
from tlops.contract import JobStatus, records
from tlops.contract.failures import FailureReason, gave_up
from tlops.contract.records import Field
from tlops.contract.results import JobResult
from tlops.node.activity import Activity, idle_of
from tlops.node.backoff import Backoff
from tlops.node.held import HeldJobs
from tlops.node.queue_address import QueueAddress
from tlops.node.runner import (
    Job,
    JobRunner,
    OpenAIRunner,
    Progress,
    Refused,
    Transient,
    cancelled_result,
    failed_result,
    now_ms,
)
from tlops.node.settings import Settings, parse_settings

HEARTBEAT_INTERVAL_S = 5.0  # well inside HEARTBEAT_TTL_SECONDS
_REDIS_ERRORS = (redis_py.ConnectionError, redis_py.TimeoutError)
_FINISHED = sorted(status.value for status in records.FINISHED)

# KEYS: job records. ARGV: started_ms, max_deliveries, held TTL, then the finished statuses.
# Each record is returned as it was; a record that exists, is not finished and has
# deliveries left is picked up (records: queued/running → running, attempts + 1).
_PICK_UP = records.lua(
    """
local started, max_deliveries, held = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local finished = {}
for i = 4, #ARGV do finished[ARGV[i]] = true end
local out = {}
for i, key in ipairs(KEYS) do
  local record = redis.call('HGETALL', key)
  out[i] = record
  if #record > 0 then
    local status, attempts = nil, 0
    for j = 1, #record, 2 do
      if record[j] == '$status' then status = record[j + 1] end
      if record[j] == '$attempts' then attempts = tonumber(record[j + 1]) or 0 end
    end
    if not finished[status] and attempts < max_deliveries then
      redis.call('HSET', key, '$status', '$running', '$started_ts', started)
      redis.call('HINCRBY', key, '$attempts', 1)
      redis.call('EXPIRE', key, held)
    end
  end
end
return out
"""
)


# KEYS: the job's record. ARGV: the text so far, the delivery (the record's attempts).
# The text is written only while this delivery still holds the job (running, same
# attempts): never onto a finished record, one that expired, or a later delivery's.
# Returns 1 when the job's owner asked to cancel it.
_PUBLISH = records.lua(
    """
local record = redis.call('HMGET', KEYS[1], '$status', '$attempts', '$cancel_requested')
if record[1] == '$running' and record[2] == ARGV[2] then
  redis.call('HSET', KEYS[1], '$partial', ARGV[1])
end
if record[3] == '1' then return 1 end
return 0
"""
)


class Ending(enum.StrEnum):
    """How one delivery of a job ended; the value names the log line (`job <value>`)."""

    DONE = "done"  # settled: its result stored
    FAILED = "failed"  # settled: refused, an error result stored
    DEAD = "dead"  # settled: out of deliveries, an error result stored and a dead letter
    CANCELLED = "cancelled"  # settled: its owner cancelled it, its text so far stored
    PENDING = "pending"  # left for redelivery after the visibility timeout
    RETURNED = "returned"  # the same, and the delivery is not counted (it never ran)


_UNSETTLED = (Ending.PENDING, Ending.RETURNED)
# The endings that are not failures, and the status each settles as (the others: failed).
_SETTLED_AS = {Ending.DONE: JobStatus.DONE, Ending.CANCELLED: JobStatus.CANCELLED}


@dataclasses.dataclass
class _Outcome:
    kind: Ending
    job: Job
    result: JobResult | None = None
    reason: str = ""  # recorded on the job: one of FailureReason's fixed sentences
    detail: str = ""  # what actually failed, AWS's words included: the log's only


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
        self.counts = {"done": 0, "failed": 0, "dead": 0, "expired": 0, "cancelled": 0}
        self._work: queue.Queue[Job | None] = queue.Queue()
        self._outcomes: queue.Queue[_Outcome] = queue.Queue()
        self._slots = threading.Condition()
        self._in_flight: set[str] = set()  # stream entry ids delivered here and not yet settled
        self.activity = Activity(settings.state_dir)
        self._drain_until = float("inf")
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._next_heartbeat = 0.0
        self._threads: list[threading.Thread] = []
        self._pick_up_script = self.redis.register_script(_PICK_UP)
        self._publish_script = self.redis.register_script(_PUBLISH)
        self.held: HeldJobs | None = None
        self.queue_address = QueueAddress(None, telemetry=self.log)
        if settings.control_bucket:
            from tlops.common import aws

            bucket = ControlBucket(aws.client("s3"), settings.control_bucket)
            self.held = HeldJobs(self.redis, bucket, telemetry=self.log)
            self.queue_address = QueueAddress(bucket, telemetry=self.log)

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
                # A node that runs uses this queue: a sleep that had begun did not happen.
                self.redis.delete(contract.CLOSING_KEY)
                if self.held is not None:
                    self.held.restore()
                break
            except _REDIS_ERRORS as exc:
                self.log.log("WARNING", "redis unreachable at start", error=repr(exc))
                if not self.queue_address.follow(self.redis):  # a wake's new queue
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
                if self.held is not None and self.held.due():
                    self.held.sweep()
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
        self.activity.flush(force=True)
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
        valid = [(eid, f) for eid, f in entries if contract.is_job_id(f.get(records.ENTRY_ID, ""))]
        started = now_ms()
        # One script reads every record and marks the runnable ones running (atomically, one
        # round trip); what it returns is each record as it was before.
        flat_records = (
            self._pick_up_script(
                keys=[contract.job_key(fields[records.ENTRY_ID]) for _, fields in valid],
                args=[started, self.settings.max_deliveries, self._held_ttl_s, *_FINISHED],
            )
            if valid
            else []
        )  # fmt: skip
        before = [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in flat_records]

        writes = self.redis.pipeline(transaction=False)
        to_run: list[Job] = []
        for entry_id, fields in entries:
            if not contract.is_job_id(fields.get(records.ENTRY_ID, "")):
                writes.xadd(
                    contract.DEAD_LETTER_STREAM,
                    records.dead_letter(
                        job_id=fields.get(records.ENTRY_ID, ""),
                        sub=fields.get(records.ENTRY_SUB, ""),
                        reason="malformed stream entry",
                        deliveries=1,
                    ),
                )
                writes.xack(contract.JOB_STREAM, contract.CONSUMER_GROUP, entry_id)
        for (entry_id, fields), record in zip(valid, before, strict=True):
            job_id = fields[records.ENTRY_ID]
            key = contract.job_key(job_id)
            sub = record.get(Field.SUB) or fields.get(records.ENTRY_SUB, "")
            if not record:
                writes.hset(key, mapping=records.expired(sub=sub, finished_ms=started))
                writes.expire(key, contract.FINISHED_TTL_SECONDS)
                writes.xack(contract.JOB_STREAM, contract.CONSUMER_GROUP, entry_id)
                self.counts["expired"] += 1
                self.log.log("INFO", "job expired before it ran", job_id=job_id)
                continue
            if record.get(Field.STATUS) in _FINISHED:
                writes.xack(contract.JOB_STREAM, contract.CONSUMER_GROUP, entry_id)
                continue
            attempts = int(record.get(Field.ATTEMPTS) or 0)
            job = Job(entry_id, job_id, sub, record, attempts + 1, started)
            if attempts >= self.settings.max_deliveries:
                reason = record.get(Field.ERROR) or FailureReason.LOST
                to_run.append(dataclasses.replace(job, delivery=attempts, dead_reason=reason))
                continue
            to_run.append(job)  # the script marked it running
        if len(writes):
            writes.execute()
        if to_run:
            with self._slots:
                self._in_flight.update(job.entry_id for job in to_run)
            self.activity.mark(started, idle=idle_of(to_run[-1].record))  # newest last
            for job in to_run:
                self._work.put(job)

    # running -----------------------------------------------------------------------
    def _worker(self) -> None:
        while (job := self._work.get()) is not None:
            try:
                self._outcomes.put(self._run(job))
            except Exception as exc:  # a job must never kill its worker thread
                self.log.log("ERROR", "job crashed", job_id=job.job_id, error=repr(exc))
                self._outcomes.put(_Outcome(Ending.PENDING, job, reason=FailureReason.WATCHER_ERROR,
                                            detail=repr(exc)))  # fmt: skip

    def _run(self, job: Job) -> _Outcome:
        if job.record.get(Field.CANCEL_REQUESTED) == "1":  # cancelled while it waited
            return self._cancel_unrun(job)
        if job.dead_reason:
            return self._give_up(job, job.dead_reason, Ending.DEAD)
        if self.stop_event.is_set():  # taken just before a SIGTERM: leave it for redelivery
            return _Outcome(Ending.RETURNED, job)
        # Retry inside this delivery for most of the visibility timeout, then let it lapse:
        # no other watcher takes the entry over while this one still works on it.
        window_end = time.monotonic() + self.settings.visibility_timeout_s * 0.8
        backoff = Backoff(base=0.2, cap=self.settings.backoff_cap_s)
        while True:
            try:
                result = self.runner.run(job, self._publisher(job))
                if result.status is JobStatus.CANCELLED:
                    return _Outcome(Ending.CANCELLED, job, result=result)
                return _Outcome(Ending.DONE, job, result=result)
            except Refused as exc:
                return self._give_up(job, exc.public, Ending.FAILED, detail=str(exc))
            except Transient as exc:
                reason, detail = exc.public, str(exc)
                delay = backoff.next()
                if self.stop_event.is_set() or time.monotonic() + delay >= window_end:
                    break
                self.log.log("WARNING", "job will be retried", job_id=job.job_id, error=reason,
                             detail=detail)  # fmt: skip
                self.stop_event.wait(delay)
        if job.delivery >= self.settings.max_deliveries:
            return self._give_up(job, gave_up(reason, job.delivery), Ending.DEAD, detail=detail)
        return _Outcome(Ending.PENDING, job, reason=reason, detail=detail)

    def _publisher(self, job: Job) -> Progress:
        """The runner's progress callback for this delivery: one round trip per publish."""
        key = contract.job_key(job.job_id)

        def publish(text: str) -> bool:
            try:
                return bool(self._publish_script(keys=[key], args=[text, job.delivery]))
            except redis_py.RedisError as exc:  # the text shows at the next publish, or not
                self.log.log("WARNING", "partial output not published", job_id=job.job_id,
                             error=repr(exc))  # fmt: skip
                return False

        return publish

    def _cancel_unrun(self, job: Job) -> _Outcome:
        """Cancelled before this delivery ran it: settled with the text an earlier delivery
        published, if any; a result an earlier delivery stored stands."""
        result = cancelled_result(job, job.record.get(Field.PARTIAL, ""))
        stored = self.runner.store_failure(job, result)
        if stored is not None and stored.status is JobStatus.DONE:
            return _Outcome(Ending.DONE, job, result=stored)
        return _Outcome(Ending.CANCELLED, job, result=stored or result)

    def _give_up(self, job: Job, reason: str, kind: Ending, *, detail: str = "") -> _Outcome:
        stored = self.runner.store_failure(job, failed_result(job, reason))
        if stored is not None and stored.status is JobStatus.DONE:
            # An earlier delivery stored its result and died before saying so: it stands.
            return _Outcome(Ending.DONE, job, result=stored)
        return _Outcome(kind, job, result=stored, reason=reason, detail=detail)

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
            if outcome.kind in _UNSETTLED:
                if outcome.kind is Ending.PENDING:
                    pipe.hset(key, mapping=records.left_pending(outcome.reason))
                else:
                    pipe.hset(key, mapping=records.returned())
                    pipe.hincrby(key, Field.ATTEMPTS, -1)
                # had the record expired meanwhile, the write above made a new one: bound it
                pipe.expire(key, self._held_ttl_s, nx=True)
                continue
            status = _SETTLED_AS.get(outcome.kind, JobStatus.FAILED)
            error = "" if status in _SETTLED_AS.values() else outcome.reason
            pipe.hset(
                key,
                mapping=records.finished(status, sub=job.sub, finished_ms=finished, error=error),
            )
            if status is JobStatus.CANCELLED and outcome.result is not None:
                # the record keeps all the text there was, as the stored result does
                pipe.hset(key, Field.PARTIAL, outcome.result.output)
            else:  # the output is in S3: text so far no longer means anything
                pipe.hdel(key, Field.PARTIAL)
            pipe.expire(key, contract.FINISHED_TTL_SECONDS)
            if outcome.kind is Ending.DEAD:
                pipe.xadd(
                    contract.DEAD_LETTER_STREAM,
                    records.dead_letter(
                        job_id=job.job_id,
                        sub=job.sub,
                        reason=outcome.reason,
                        deliveries=job.delivery,
                    ),
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
        self.activity.mark()

    def _log_outcome(self, outcome: _Outcome) -> None:
        fields: dict[str, Any] = {"job_id": outcome.job.job_id, "delivery": outcome.job.delivery}
        if outcome.result is not None and outcome.kind is Ending.DONE:
            fields |= {
                "latency_ms": outcome.result.latency_ms,
                "prompt_tokens": outcome.result.usage.get("prompt_tokens", 0),
                "completion_tokens": outcome.result.usage.get("completion_tokens", 0),
            }
        if outcome.reason:
            fields["error"] = outcome.reason
        if outcome.detail:
            fields["detail"] = outcome.detail
        level = "INFO" if outcome.kind in _SETTLED_AS else "WARNING"
        self.log.log(level, f"job {outcome.kind}", **fields)

    # liveness ------------------------------------------------------------------------
    def _tick(self) -> None:
        if time.monotonic() < self._next_heartbeat:
            return
        with self._slots:
            in_flight = len(self._in_flight)
        if in_flight:
            self.activity.mark()  # a long generation is activity too
        beat = {
            "consumer": self.settings.consumer,
            "done": self.counts["done"],
            "failed": self.counts["failed"] + self.counts["dead"],
            "in_flight": in_flight,
            "last_activity_ms": self.activity.last_ms,
            "ts_ms": now_ms(),
        }
        self.redis.set(contract.HEARTBEAT_KEY, json.dumps(beat), ex=contract.HEARTBEAT_TTL_SECONDS)
        self.activity.flush()
        self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL_S


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

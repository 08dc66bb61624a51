"""The jobs held while the stack slept, moved into the queue once it is back.

While the queue does not exist, the router keeps each job as an object under
`held/<sub>/` in the control bucket (tlops.edge.control_link). Once the node
runs with a queue, the watcher moves them (`HeldJobs.sweep`, at its start and
every `SWEEP_EVERY_S` after): each job goes into the stream exactly once, by
its id (one Lua script writes the record, the stream entry and a `held:moved`
mark, or does nothing when the mark or the record exists), and only then is its
object deleted, so a node that stops between the two moves nothing twice. A job
held longer than `HELD_TTL_SECONDS` is recorded `expired` and never runs.

It also puts back what the sleep saved of the old queue (`restore`): the measured
boots, the dead letters and the idempotency keys still alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis as redis_py

from tlops import contract
from tlops.common.bucket_keys import keys
from tlops.common.control_bucket import BucketUnavailable, ControlBucket
from tlops.common.telemetry import Telemetry
from tlops.contract import control, records
from tlops.contract.records import Field

SWEEP_EVERY_S = 30.0
MOST_PER_SWEEP = 200  # held jobs moved in one sweep; the rest wait for the next
MOVED_MARK_TTL_S = 2 * control.HELD_TTL_SECONDS  # outlives any held object it guards

# KEYS: the moved mark, the job record, the stream, the open set, the user's list,
# [the idempotency record]. ARGV: mark TTL, job TTL, job id, sub, held ms, "1" when expired,
# idempotency TTL, fingerprint, the list's length and TTL, then the record's fields and
# values. 1: moved (or expired), 0: done before. Listed either way, as admission lists a job.
_MOVE = records.lua(
    """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -(tonumber(ARGV[9]) + 1))
redis.call('EXPIRE', KEYS[5], ARGV[10])
if ARGV[6] == '1' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[2], '$status', '$expired', '$sub', ARGV[4], '$finished_ts', now)
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[1])
  return 1
end
local fields = {'$ts', ARGV[5]}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], '*', '$entry_id', ARGV[3], '$entry_sub', ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
if KEYS[6] then
  redis.call('HSET', KEYS[6], '$idem_job', ARGV[3], '$idem_fingerprint', ARGV[8])
  redis.call('EXPIRE', KEYS[6], ARGV[7])
end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[1])
return 1
"""
)


class HeldJobs:
    def __init__(
        self,
        redis: redis_py.Redis,
        bucket: ControlBucket,
        *,
        telemetry: Telemetry,
        clock: Callable[[], float] = time.time,
    ):
        self.redis = redis
        self.bucket = bucket
        self.log = telemetry
        self.clock = clock
        self._move = redis.register_script(_MOVE)
        self._next_sweep = 0.0

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.bucket.s3.delete_object(Bucket=self.bucket.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise BucketUnavailable(f"s3://{self.bucket.bucket}/{key}: {exc}") from exc

    def due(self) -> bool:
        return time.monotonic() >= self._next_sweep

    def sweep(self) -> dict[str, int]:
        """Move (or expire) what is held; counts by outcome. S3 failing is logged and
        tried again at the next sweep; Redis failing is raised (the watcher backs off)."""
        self._next_sweep = time.monotonic() + SWEEP_EVERY_S
        counts = {"moved": 0, "expired": 0, "again": 0}
        try:
            found = keys(self.bucket, control.HELD_PREFIX, most=MOST_PER_SWEEP)
        except BucketUnavailable as exc:
            self.log.log("WARNING", "held jobs not listed", reason=str(exc))
            return counts
        for key in found:
            held = control.parse_held_key(key)
            if held is None:
                continue
            try:
                body = self.bucket.get_json(key)
                if body is not None:
                    outcome = self._move_one(held, body)
                    counts[outcome] += 1
                self._delete(key)
            except BucketUnavailable as exc:
                self.log.log("WARNING", "held job not moved", key=key, reason=str(exc))
        if any(counts.values()):
            self.log.log("INFO", "held jobs moved into the queue", **counts)
        return counts

    def _move_one(self, held: control.HeldKey, body: dict[str, Any]) -> str:
        expired = self.now_ms() - held.at_ms > control.HELD_TTL_SECONDS * 1000
        fields = {str(k): str(v) for k, v in (body.get("fields") or {}).items()}
        fields = {k: v for k, v in fields.items() if k in set(Field)}
        fields[Field.STATUS.value] = contract.JobStatus.QUEUED.value
        fields[Field.SUB.value] = held.sub
        idem = body.get("idempotency") if isinstance(body.get("idempotency"), dict) else None
        keys = [
            contract.HELD_MOVED_KEY_PREFIX + held.job_id,
            contract.job_key(held.job_id),
            contract.JOB_STREAM,
            contract.OPEN_JOBS_KEY,
            contract.jobs_of_key(held.sub),
        ]
        if idem and contract.is_idempotency_key(str(idem.get("key", ""))):
            keys.append(contract.idempotency_key(held.sub, str(idem["key"])))
        ttl = contract.FINISHED_TTL_SECONDS if expired else contract.QUEUED_TTL_SECONDS
        moved = self._move(
            keys=keys,
            args=[
                MOVED_MARK_TTL_S, ttl, held.job_id, held.sub, held.at_ms,
                "1" if expired else "0", contract.IDEMPOTENCY_TTL_SECONDS,
                str((idem or {}).get("fingerprint", "")),
                contract.JOBS_LISTED, contract.JOBS_OF_TTL_SECONDS,
                *[part for item in fields.items() for part in item],
            ],
        )  # fmt: skip
        if not moved:
            return "again"
        return "expired" if expired else "moved"

    def restore(self) -> bool:
        """Put back what the last sleep saved of the old queue, once; True when it did."""
        try:
            saved = self.bucket.get_json(control.SURVIVORS_KEY)
        except BucketUnavailable as exc:
            self.log.log("WARNING", "survivors not read", reason=str(exc))
            return False
        if not saved:
            return False
        pipe = self.redis.pipeline(transaction=True)
        times = [t for t in saved.get("boot_times", []) if str(t).isdigit()]
        if times and not self.redis.exists(contract.NODE_BOOT_TIMES_KEY):
            pipe.rpush(contract.NODE_BOOT_TIMES_KEY, *times)
        if not self.redis.exists(contract.DEAD_LETTER_STREAM):
            for letter in saved.get("dead_letters", []):
                if isinstance(letter.get("fields"), dict) and letter["fields"]:
                    pipe.xadd(contract.DEAD_LETTER_STREAM, letter["fields"])
        elapsed = max(0, self.now_ms() - int(saved.get("at_ms", 0)))
        for item in saved.get("idempotency", []):
            left = int(item.get("ttl_ms", 0)) - elapsed
            key = str(item.get("key", ""))
            fresh = key.startswith(contract.IDEMPOTENCY_KEY_PREFIX) and item.get("fields")
            # a key a request since the wake already made is newer: it stays
            if left > 0 and fresh and not self.redis.exists(key):
                pipe.hset(key, mapping=item["fields"])
                pipe.pexpire(key, left)
        pipe.execute()
        try:
            self._delete(control.SURVIVORS_KEY)
        except BucketUnavailable as exc:
            self.log.log("WARNING", "survivors not deleted", reason=str(exc))
        letters = len(saved.get("dead_letters", []))
        self.log.log("INFO", "what the last sleep saved is back", bootTimes=len(times),
                     deadLetters=letters)  # fmt: skip
        return True

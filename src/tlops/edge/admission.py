"""Admission of one `/infer` request: per-user rate limit and enqueue, in one Redis round trip.

HTTP APIs can only throttle per stage or route, so the per-user limit lives
here. A Lua script does everything atomically with Redis' own clock:

1. refuses to run past the caller's deadline (in Redis' clock): a caller that
   gave up waiting has answered 503, and nothing may be queued behind it;
2. with an Idempotency-Key already used by this user, answers the job it
   admitted (same request) or refuses (another request), counting nothing;
3. sliding-window limits on the caller's `sub` (a sorted set of request times):
   at most `burst` requests in any `burst_window_ms`, at most `sustained` in
   any `sustained_window_ms`; a refused request is not counted;
4. the queue caps: at most `per_user` of this user's jobs and `total` jobs in
   all queued or running (`jobs:open`, pruned of finished and vanished records
   as it is counted); a refused request is not counted either;
5. the job record `job:{id}` written only if absent (NX), with its TTL;
6. the job's entry (`id` and `sub`) appended to the `jobs` stream, the job
   added to `jobs:open` and to the user's list (`jobs:of:{sub}`, the newest
   `JOBS_LISTED` kept: `GET /jobs`), and the Idempotency-Key remembered;
7. whether a watcher heartbeat exists (the GPU node is up), so the router can
   skip asking for a wake on the warm path.

While the `queue:closing` mark exists (the stack is falling asleep: the queue is
about to be deleted) it admits nothing and says `closing`; the router then holds
the job in S3 as it does while the stack sleeps, so a request racing the sleep
is held, not queued in a queue that is going.

`limit` runs the same sliding windows alone (`POST /stop`): both scripts are
built from one Lua source for the windows.
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

from tlops import contract
from tlops.contract import records
from tlops.edge.resp import RespClient, Script

# Shared by both scripts: ARGV[1..4] are always the limits.
_WINDOWS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- ms until one more request fits rate_key's windows; 0 when it fits now
local function retry_after(rate_key, now)
  local burst, burst_window = tonumber(ARGV[1]), tonumber(ARGV[2])
  local sustained, sustained_window = tonumber(ARGV[3]), tonumber(ARGV[4])
  redis.call('ZREMRANGEBYSCORE', rate_key, '-inf', now - sustained_window)
  local retry = 0
  local burst_start = '(' .. (now - burst_window)
  local burst_count = redis.call('ZCOUNT', rate_key, burst_start, '+inf')
  if burst_count >= burst then
    -- the request that must leave the window before one more fits
    local oldest = redis.call('ZRANGEBYSCORE', rate_key, burst_start, '+inf', 'WITHSCORES',
                              'LIMIT', burst_count - burst, 1)
    retry = math.max(retry, tonumber(oldest[2]) + burst_window - now)
  end
  local total = redis.call('ZCARD', rate_key)
  if total >= sustained then
    local oldest = redis.call('ZRANGE', rate_key, total - sustained, total - sustained,
                              'WITHSCORES')
    retry = math.max(retry, tonumber(oldest[2]) + sustained_window - now)
  end
  return retry
end

local function count(rate_key, now, member)
  redis.call('ZADD', rate_key, now, member)
  redis.call('PEXPIRE', rate_key, tonumber(ARGV[4]))
end
"""

_ADMIT = Script(
    records.lua(
        _WINDOWS
        + """
local rate_key, job_key, stream, heartbeat = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local open_key, closing_key, listed_key, idem_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local job_ttl, job_id, sub, deadline = tonumber(ARGV[5]), ARGV[6], ARGV[7], tonumber(ARGV[8])
local idem_ttl, request_hash, job_prefix = tonumber(ARGV[9]), ARGV[10], ARGV[11]
local cap_total, cap_user = tonumber(ARGV[12]), tonumber(ARGV[13])
local min_retry, max_retry = tonumber(ARGV[14]), tonumber(ARGV[15])
local listed_most, listed_ttl = tonumber(ARGV[16]), tonumber(ARGV[17])
local finished = {}
for status in string.gmatch(ARGV[18], '[^,]+') do finished[status] = true end

-- The open jobs (queued or running), pruned of those finished or gone. Admission keeps the
-- set within the caps, so this reads at most `cap_total` records (plus any left over from a
-- higher cap). Like the replay below, it reads records not among KEYS (no Redis Cluster).
local function open_jobs(now)
  redis.call('ZREMRANGEBYSCORE', open_key, '-inf', now - 86400000)
  local total, mine, oldest_total, oldest_mine = 0, 0, nil, nil
  local members = redis.call('ZRANGE', open_key, 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local id, at = members[i], tonumber(members[i + 1])
    local state = redis.call('HMGET', job_prefix .. id, '$status', '$sub')
    local status = state[1]
    if (not status) or finished[status] then
      redis.call('ZREM', open_key, id)
    else
      total = total + 1
      oldest_total = oldest_total or at
      if state[2] == sub then
        mine = mine + 1
        oldest_mine = oldest_mine or at
      end
    end
  end
  return total, mine, oldest_total, oldest_mine
end

-- ms until the oldest counted job has surely left the queue (picked up, or expired)
local function cap_retry(oldest, now)
  oldest = oldest or now
  return math.max(min_retry, math.min(oldest + job_ttl * 1000 - now, max_retry))
end

local now = now_ms()
if now > deadline then
  return {'late', 0, now}
end
if idem_key then
  local seen = redis.call('HMGET', idem_key, '$idem_job', '$idem_fingerprint')
  if seen[1] then
    if seen[2] ~= request_hash then
      return {'reused', 0, now}
    end
    -- The first job's record is not among KEYS (its id is only known here). That only
    -- rules out Redis Cluster, which these keys (no common hash slot) rule out already.
    local status = redis.call('HGET', job_prefix .. seen[1], '$status') or ''
    return {'replayed', redis.call('EXISTS', heartbeat), now, seen[1], status}
  end
end

-- The queue is about to be deleted (the stack falls asleep): the job is held elsewhere.
if redis.call('EXISTS', closing_key) == 1 then
  return {'closing', 0, now}
end
local retry = retry_after(rate_key, now)
if retry > 0 then
  return {'limited', retry, now}
end
local capped = cap_total > 0
if capped then
  local total, mine, oldest_total, oldest_mine = open_jobs(now)
  if mine >= cap_user then
    return {'user_full', cap_retry(oldest_mine, now), now}
  end
  if total >= cap_total then
    return {'full', cap_retry(oldest_total, now), now}
  end
end
if redis.call('EXISTS', job_key) == 1 then
  return {'collision', 0, now}
end
count(rate_key, now, job_id)

local fields = {'$ts', now}
for i = 19, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', job_key, unpack(fields))
redis.call('EXPIRE', job_key, job_ttl)
redis.call('XADD', stream, '*', '$entry_id', job_id, '$entry_sub', sub)
-- Open jobs, whether capped or not: the sleep's check counts them too (tlops.edge.sleep).
redis.call('ZADD', open_key, now, job_id)
redis.call('ZADD', listed_key, now, job_id)
redis.call('ZREMRANGEBYRANK', listed_key, 0, -(listed_most + 1))
redis.call('EXPIRE', listed_key, listed_ttl)
if idem_key then
  redis.call('HSET', idem_key, '$idem_job', job_id, '$idem_fingerprint', request_hash)
  redis.call('EXPIRE', idem_key, idem_ttl)
end
return {'queued', redis.call('EXISTS', heartbeat), now, job_id, '$queued'}
"""
    )
)

_LIMIT = Script(
    _WINDOWS
    + """
local now = now_ms()
local retry = retry_after(KEYS[1], now)
if retry > 0 then
  return {'limited', retry}
end
count(KEYS[1], now, ARGV[5])
return {'allowed', 0}
"""
)


class RateLimits(NamedTuple):
    burst: int = 5
    burst_window_ms: int = 1000
    sustained: int = 20
    sustained_window_ms: int = 60_000

    def args(self) -> list[int]:
        return [self.burst, self.burst_window_ms, self.sustained, self.sustained_window_ms]


class QueueCaps(NamedTuple):
    """Jobs queued or running at once: in all, and per user."""

    total: int = contract.QUEUE_CAP_TOTAL
    per_user: int = contract.QUEUE_CAP_PER_USER

    def args(self) -> list[int]:
        shortest, longest = contract.QUEUE_FULL_RETRY_SECONDS
        return [self.total, self.per_user, shortest * 1000, longest * 1000]


NO_CAPS = QueueCaps(total=0, per_user=0)  # admit() without caps counts nothing (tests, benches)


class Idempotency(NamedTuple):
    """The caller's Idempotency-Key and the fingerprint of its request (records.fingerprint)."""

    key: str
    fingerprint: str


class Admitted(enum.StrEnum):
    """What admission did with a request; the values are what the admission script returns
    (and, for a held request, what ControlLink.hold decides)."""

    QUEUED = "queued"
    HELD = "held"  # kept in S3 while the stack sleeps (ControlLink.hold)
    REPLAYED = "replayed"  # the Idempotency-Key's first job, answered again
    REUSED = "reused"  # the key came with another request: nothing written
    LIMITED = "limited"  # over the user's rate: nothing written
    COLLISION = "collision"  # the job id exists (another id is drawn)
    LATE = "late"  # the script ran past the deadline: nothing written
    CLOSING = "closing"  # the queue is about to be deleted (the stack falls asleep)
    USER_FULL = "user_full"  # this user's open jobs at their cap: nothing written
    FULL = "full"  # all users' open jobs at their cap: nothing written


REFUSED_FOR_CAPS = (Admitted.USER_FULL, Admitted.FULL)


class Admission(NamedTuple):
    outcome: Admitted
    retry_after_s: int = 0  # whole seconds until a request would pass, when refused
    node_alive: bool = False  # a watcher heartbeat was present when queued or replayed
    enqueued_at_ms: int = 0
    job_id: str = ""  # the queued or replayed job
    job_status: str = ""  # its record's status ("" once the record is gone)


def admit(
    redis: RespClient,
    *,
    sub: str,
    job_id: str,
    job_fields: dict[str, str],
    limits: RateLimits,
    job_ttl_s: int,
    within_s: float,
    idempotency: Idempotency | None = None,
    caps: QueueCaps | None = None,
) -> Admission:
    """Rate-limit `sub`, hold it to the queue `caps` (None: none) and, if allowed, enqueue the
    job, unless Redis runs the script more than `within_s` seconds from now (its clock).
    Raises resp.RedisUnavailable."""
    flat: list[str] = []
    for name, value in job_fields.items():
        flat += [name, value]
    keys = [
        contract.rate_key(sub),
        contract.job_key(job_id),
        contract.JOB_STREAM,
        contract.HEARTBEAT_KEY,
        contract.OPEN_JOBS_KEY,
        contract.CLOSING_KEY,
        contract.jobs_of_key(sub),
    ]
    if idempotency is not None:
        keys.append(contract.idempotency_key(sub, idempotency.key))
    deadline_ms = math.floor(redis.redis_time_ms() + within_s * 1000)
    outcome, number, now, *admitted = redis.run_script(
        _ADMIT,
        keys,
        [
            *limits.args(),
            job_ttl_s,
            job_id,  # also the rate-window member: unique per request
            sub,  # carried on the stream entry so a job whose record expired can still be owned
            deadline_ms,
            contract.IDEMPOTENCY_TTL_SECONDS,
            "" if idempotency is None else idempotency.fingerprint,
            contract.JOB_KEY_PREFIX,
            *(caps or NO_CAPS).args(),
            contract.JOBS_LISTED,
            listed_ttl_s(job_ttl_s),
            ",".join(sorted(records.FINISHED)),
            *flat,
        ],
    )
    outcome = Admitted(outcome)
    if outcome is Admitted.LIMITED or outcome in REFUSED_FOR_CAPS:
        return Admission(outcome, retry_after_s=max(1, math.ceil(number / 1000)))
    job, status = admitted or ("", "")
    return Admission(
        outcome, node_alive=bool(number), enqueued_at_ms=int(now), job_id=job, job_status=status
    )


def listed_ttl_s(job_ttl_s: int) -> int:
    """How long a user's list (`jobs:of:{sub}`) outlives their newest job: at least as long
    as that job's record may (its queued TTL, then FINISHED_TTL_SECONDS once finished)."""
    return max(contract.JOBS_OF_TTL_SECONDS, job_ttl_s + contract.FINISHED_TTL_SECONDS)


def limit(redis: RespClient, *, key: str, member: str, limits: RateLimits) -> int:
    """Count one request against the windows of `key`: 0 when it passes, else the whole
    seconds until one would (the request is then not counted). Raises RedisUnavailable."""
    outcome, retry_ms = redis.run_script(_LIMIT, [key], [*limits.args(), member])
    return 0 if outcome == "allowed" else max(1, math.ceil(retry_ms / 1000))

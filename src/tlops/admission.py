"""Admission of one `/infer` request: per-user rate limit and enqueue, in one Redis round trip.

HTTP APIs can only throttle per stage or route, so the per-user limit lives
here. A Lua script does everything atomically with Redis' own clock:

1. sliding-window limits on the caller's `sub` (a sorted set of request times):
   at most `burst` requests in any `burst_window_ms`, at most `sustained` in
   any `sustained_window_ms`; a refused request is not counted;
2. the job record `job:{id}` written only if absent (NX), with its TTL;
3. the job's entry (`id` and `sub`) appended to the `jobs` stream;
4. whether a watcher heartbeat exists (the GPU node is up), so the router can
   skip asking EC2 on the warm path.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from tlops import contract
from tlops.resp import RespClient, Script

_ADMIT = Script(
    """
local rate_key, job_key, stream, heartbeat = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local burst, burst_window = tonumber(ARGV[1]), tonumber(ARGV[2])
local sustained, sustained_window = tonumber(ARGV[3]), tonumber(ARGV[4])
local job_ttl, job_id, member, sub = tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

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
if retry > 0 then
  return {'limited', retry, now}
end

if redis.call('EXISTS', job_key) == 1 then
  return {'collision', 0, now}
end
redis.call('ZADD', rate_key, now, member)
redis.call('PEXPIRE', rate_key, sustained_window)

local fields = {'ts', now}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', job_key, unpack(fields))
redis.call('EXPIRE', job_key, job_ttl)
redis.call('XADD', stream, '*', 'id', job_id, 'sub', sub)
return {'queued', redis.call('EXISTS', heartbeat), now}
"""
)


class RateLimits(NamedTuple):
    burst: int = 5
    burst_window_ms: int = 1000
    sustained: int = 20
    sustained_window_ms: int = 60_000


class Admission(NamedTuple):
    outcome: str  # "queued", "limited" or "collision"
    retry_after_s: int = 0  # whole seconds until a request would pass, when limited
    node_alive: bool = False  # a watcher heartbeat was present when queued
    enqueued_at_ms: int = 0


def admit(
    redis: RespClient,
    *,
    sub: str,
    job_id: str,
    job_fields: dict[str, str],
    limits: RateLimits,
    job_ttl_s: int,
) -> Admission:
    """Rate-limit `sub` and, if allowed, enqueue the job. Raises resp.RedisUnavailable."""
    flat: list[str] = []
    for name, value in job_fields.items():
        flat += [name, value]
    outcome, number, now = redis.run_script(
        _ADMIT,
        [
            contract.rate_key(sub),
            contract.job_key(job_id),
            contract.JOB_STREAM,
            contract.HEARTBEAT_KEY,
        ],
        [
            limits.burst,
            limits.burst_window_ms,
            limits.sustained,
            limits.sustained_window_ms,
            job_ttl_s,
            job_id,
            job_id,  # the rate-window member: unique per request
            sub,  # carried on the stream entry so a job whose record expired can still be owned
            *flat,
        ],
    )
    if outcome == "limited":
        return Admission("limited", retry_after_s=max(1, math.ceil(number / 1000)))
    return Admission(outcome, node_alive=bool(number), enqueued_at_ms=int(now))

"""Napping → asleep: the handshake that deletes the queue without losing a job.

`control` deletes the queue but cannot see inside it (it runs outside the VPC);
the scheduled queue probe sees inside it but cannot call ElastiCache. So the
probe decides and control acts:

1. One Lua script (Redis' clock) checks that the stack naps and the queue is idle:
   no watcher heartbeat (the node is down; while one beats, it notes the time, the
   start of the next nap), no boot under way, no job queued or running (the open
   jobs admission keeps, by their records) and nothing delivered and not yet
   acknowledged in the `watchers` group, and the last job and the last heartbeat
   both older than `sleep_after`. Then, in the same script, it sets the `closing`
   mark, which admission honours: from that moment a request is held in S3, not
   queued (tlops.edge.admission), so nothing can slip in behind the check.
2. It copies what should outlive the queue to `survivors.json` (the measured boots
   the ETA comes from, the dead letters, the live idempotency keys); the node puts
   them back after the next wake.
3. It asks control for a deep sleep; control deletes the queue only if the node is
   still stopped then (a wake that started it in between wins).

`force` (`tlops ops sleep --deep`, the scheduled sleep) skips the nap's length and a
boot's record, and lets an idle node be stopped first (control stops it, then checks
it is stopped), but never deletes a queue that holds a job.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

from tlops import contract
from tlops.common.control_bucket import ControlBucket
from tlops.contract import boot as boot_record
from tlops.contract import control, records
from tlops.contract.control import Action
from tlops.edge.resp import RespClient, Script

DEAD_LETTERS_KEPT = 100  # the newest dead letters copied through a sleep
IDEMPOTENCY_KEYS_KEPT = 1000
_SCAN_ROUNDS = 20


class Verdict(enum.StrEnum):
    CLOSING = "closing"  # idle long enough: the mark is set, the sleep asked for
    AWAKE = "awake"  # a watcher beats: the node is up
    BOOTING = "booting"  # a boot is under way
    BUSY = "busy"  # jobs waiting or running
    RECENT = "recent"  # napping, but not yet for `sleep_after`
    NEVER = "never"  # sleep_after is 0: this stack naps, never sleeps


class Tick(NamedTuple):
    verdict: Verdict
    now_ms: int
    detail: int = 0  # BUSY: the backlog; RECENT: ms until the nap is long enough


_TICK = Script(
    records.lua(
        """
local heartbeat, stream, boot, last_awake, closing = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local open_key, job_prefix = KEYS[6], ARGV[#ARGV]
local sleep_after, force, ttl = tonumber(ARGV[1]), ARGV[2] == '1', tonumber(ARGV[3])
local group, stale = ARGV[4], tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if redis.call('EXISTS', heartbeat) == 1 and not force then
  redis.call('SET', last_awake, now)
  return {'awake', now, 0}
end
if not force then
  local phase = redis.call('HGET', boot, ARGV[6])
  local since = tonumber(redis.call('HGET', boot, ARGV[7]) or '0') or 0
  for i = 8, #ARGV - 1 do
    if phase == ARGV[i] and now - since < stale then
      return {'booting', now, 0}
    end
  end
end
-- What waits or runs: the open jobs whose records say queued or running (a record that
-- expired unrun counts for nothing: its stream entry will only ever be marked expired),
-- and the deliveries not acknowledged yet.
local backlog = 0
redis.call('ZREMRANGEBYSCORE', open_key, '-inf', now - 86400000)
for _, id in ipairs(redis.call('ZRANGE', open_key, 0, -1)) do
  local status = redis.call('HGET', job_prefix .. id, '$status')
  if status == '$queued' or status == '$running' then
    backlog = backlog + 1
  elseif not status then
    redis.call('ZREM', open_key, id)
  end
end
if redis.call('EXISTS', stream) == 1 then
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local fields = {}
    for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
    if fields['name'] == group then
      backlog = backlog + (tonumber(fields['pending']) or 0)
    end
  end
end
if backlog > 0 then
  return {'busy', now, backlog}
end
if not force then
  if sleep_after <= 0 then
    return {'never', now, 0}
  end
  local last = tonumber(redis.call('GET', last_awake) or '0') or 0
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #newest > 0 then
    last = math.max(last, tonumber(string.match(newest[1][1], '^(%d+)')) or 0)
  end
  if last == 0 then
    -- first look at a queue nobody used: its nap starts now
    redis.call('SET', last_awake, now)
    return {'recent', now, sleep_after}
  end
  if now - last < sleep_after then
    return {'recent', now, sleep_after - (now - last)}
  end
end
redis.call('SET', closing, now, 'PX', ttl)
return {'closing', now, 0}
"""
    )
)


def tick(redis: RespClient, *, sleep_after_s: int, force: bool = False) -> Tick:
    """Whether the queue may go now; sets the `closing` mark when it may. Raises
    RedisUnavailable."""
    verdict, now, detail = redis.run_script(
        _TICK,
        [
            contract.HEARTBEAT_KEY,
            contract.JOB_STREAM,
            contract.NODE_BOOT_KEY,
            contract.LAST_AWAKE_KEY,
            contract.CLOSING_KEY,
            contract.OPEN_JOBS_KEY,
        ],
        [
            sleep_after_s * 1000,
            "1" if force else "0",
            contract.CLOSING_TTL_SECONDS * 1000,
            contract.CONSUMER_GROUP,
            boot_record.STALE_AFTER_MS,
            boot_record.PHASE,
            boot_record.SINCE_MS,
            *boot_record.BOOTING,
            contract.JOB_KEY_PREFIX,
        ],
    )
    return Tick(Verdict(verdict), int(now), int(detail))


def survivors(redis: RespClient, now_ms: int) -> dict[str, Any]:
    """What outlives the queue: measured boots, the newest dead letters, live idempotency
    keys with what is left of their lifetimes."""
    boot_times = redis.execute("LRANGE", contract.NODE_BOOT_TIMES_KEY, 0, -1) or []
    dead = redis.execute("XREVRANGE", contract.DEAD_LETTER_STREAM, "+", "-", "COUNT",
                         DEAD_LETTERS_KEPT) or []  # fmt: skip
    keys: list[dict[str, Any]] = []
    cursor = "0"
    for _ in range(_SCAN_ROUNDS):
        cursor, found = redis.execute(
            "SCAN", cursor, "MATCH", f"{contract.IDEMPOTENCY_KEY_PREFIX}*", "COUNT", 500
        )
        for key in found:
            if len(keys) >= IDEMPOTENCY_KEYS_KEPT:
                break
            fields = redis.hgetall(key)
            ttl_ms = int(redis.execute("PTTL", key) or 0)
            if fields and ttl_ms > 0:
                keys.append({"key": key, "fields": fields, "ttl_ms": ttl_ms})
        if cursor == "0":
            break
    return {
        "at_ms": now_ms,
        "boot_times": [str(t) for t in boot_times],
        "dead_letters": [
            {"id": entry_id, "fields": dict(zip(flat[::2], flat[1::2], strict=True))}
            for entry_id, flat in reversed(dead)
        ],
        "idempotency": keys,
    }


def fall_asleep(
    redis: RespClient,
    bucket: ControlBucket,
    *,
    sleep_after_s: int,
    force: bool = False,
) -> Tick:
    """The whole handshake (see the module's docstring); the tick's verdict says what it did.
    Raises RedisUnavailable, or BucketUnavailable after the mark was set (the mark then
    lapses after CLOSING_TTL_SECONDS, and the jobs held meanwhile run once a node is up)."""
    looked = tick(redis, sleep_after_s=sleep_after_s, force=force)
    if looked.verdict != Verdict.CLOSING:
        return looked
    bucket.put_json(control.SURVIVORS_KEY, survivors(redis, looked.now_ms))
    bucket.ask(Action.SLEEP, f"closing-{looked.now_ms}", by="queue_health",
               now_ms=looked.now_ms, deep=True, stop_node=force)  # fmt: skip
    return looked

"""The router's side of the node's boot record: `starting instance`, the ETA, `stopped`.

When the router starts the node it writes the first phase of the boot and reads
the measured boot durations in the same round trip (one Lua script, Redis'
clock), and answers the median as the ETA (`tlops.contract.boot`). A Redis
failure here never fails the request: the job is already queued and the node
started, so the configured ETA is answered instead and the miss is logged.

On the cold path this round trip replaces marking the job failed (which only
happens when the start failed), so `RouterConfig.worst_case_s` is unchanged.
"""

from __future__ import annotations

import time
from typing import Any

from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.contract import BootPhase
from tlops.contract import boot as record
from tlops.edge.resp import RedisReplyError, RedisUnavailable, RespClient, Script

# KEYS: node:boot, node:boot_times. ARGV: instance, "1" when this call started it, the phase.
# Returns Redis' now (ms), the boot's started_ms and phase (false when absent), the times.
_START = Script(
    f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], '{record.PHASE}', ARGV[3], '{record.SINCE_MS}', now,
             '{record.STARTED_MS}', now, '{record.INSTANCE}', ARGV[1])
end
local started = redis.call('HGET', KEYS[1], '{record.STARTED_MS}')
local phase = redis.call('HGET', KEYS[1], '{record.PHASE}')
return {{now, started, phase, redis.call('LRANGE', KEYS[2], 0, {contract.BOOT_TIMES_KEPT - 1})}}
"""
)

# KEYS: node:boot. ARGV: instance, the phase. A stop ends whatever boot was under way.
_STOPPED = Script(
    f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], '{record.PHASE}', ARGV[2], '{record.SINCE_MS}', now,
           '{record.INSTANCE}', ARGV[1])
return now
"""
)

_KEYS = [contract.NODE_BOOT_KEY, contract.NODE_BOOT_TIMES_KEY]


def starting(
    redis: RespClient,
    instance_id: str,
    *,
    started: bool,
    fallback_eta_s: int,
    telemetry: Telemetry,
    rid: str,
) -> int:
    """Record `starting instance` when this request started the node; return the ETA (s).

    A boot someone else started (the node pending) gets what is left of the median.
    """
    try:
        now, started_ms, phase, times = redis.run_script(
            _START, _KEYS, [instance_id, "1" if started else "0", BootPhase.STARTING_INSTANCE]
        )
    except (RedisUnavailable, RedisReplyError, ValueError) as exc:
        telemetry.log("WARNING", "boot record not written", requestId=rid, reason=str(exc))
        return fallback_eta_s
    elapsed = 0
    if not started and phase in record.BOOTING and str(started_ms or "").isdigit():
        elapsed = int(now) - int(started_ms)
    return record.eta_seconds(record.parse_times(times or []), fallback_eta_s, elapsed)


def stopped(redis: RespClient, instance_id: str, *, telemetry: Telemetry, rid: str) -> None:
    """Record that the node was stopped: no boot is under way any more."""
    try:
        redis.run_script(_STOPPED, _KEYS[:1], [instance_id, BootPhase.STOPPED])
    except (RedisUnavailable, RedisReplyError) as exc:
        telemetry.log("WARNING", "boot record not written", requestId=rid, reason=str(exc))


def phase_of_queued(redis: RespClient, view: dict[str, Any]) -> None:
    """Add `boot_phase` to a queued job's view while a boot runs (one HGETALL)."""
    if view.get("status") != contract.JobStatus.QUEUED:
        return
    try:
        boot = redis.hgetall(contract.NODE_BOOT_KEY)
    except (RedisUnavailable, RedisReplyError):
        return  # the view without the phase is still true
    phase = record.current_phase(boot, time.time_ns() // 1_000_000)
    if phase is not None:
        view["boot_phase"] = phase

"""What the idle watchdog decides from what it saw: a pure function, so each reason is tested alone.

The node is busy while any job is not yet acknowledged by the `watchers` group
(waiting on the stream or delivered and unfinished) or the watcher's heartbeat
counts a request in flight. Otherwise it has been idle since its last activity,
or since it booted if that came later (a node an operator starts, or whose
activity file is older than its boot, gets its whole idle time), and it is due
to stop once that lasted the idle time: the newest job's `idle`, else the
configured default. A stop already made for the same deadline is not made again.
"""

from __future__ import annotations

import dataclasses
import enum

from tlops.node.activity import Reading


class Decision(enum.StrEnum):
    BUSY = "busy"
    IDLE = "idle"  # not yet: the deadline is ahead
    STOP = "stop"  # due: stop now
    STOPPED = "already stopped"  # due, and this deadline's stop was made


@dataclasses.dataclass(frozen=True)
class Observation:
    """One look at everything that decides, taken within a few milliseconds."""

    queued: int  # jobs the watchers group has not acknowledged (waiting or running)
    in_flight: int  # requests in flight by the watcher's heartbeat (0 without one)
    activity: Reading | None  # None: no activity file (the watcher never wrote one)
    boot_ms: int  # when this machine booted, ms since the epoch
    stopped_deadline_ms: int | None = None  # the deadline the last stop was made for
    watcher: bool = True  # whether a heartbeat exists (for the log)


@dataclasses.dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    deadline_ms: int | None = None
    idle_ms: int | None = None
    limit_ms: int | None = None


def decide(
    seen: Observation, *, now_ms: int, default_idle_minutes: int, minute_s: float = 60.0
) -> Verdict:
    if seen.queued or seen.in_flight:
        watcher = "" if seen.watcher else ", no watcher heartbeat"
        return Verdict(
            Decision.BUSY, f"busy: queued {seen.queued} / in flight {seen.in_flight}{watcher}"
        )
    last_ms = seen.activity.last_activity_ms if seen.activity else 0
    minutes = (seen.activity.idle_minutes if seen.activity else None) or default_idle_minutes
    since_ms = max(last_ms, seen.boot_ms)
    limit_ms = round(minutes * minute_s * 1000)
    deadline_ms = since_ms + limit_ms
    idle_ms = max(0, now_ms - since_ms)
    figures = {"deadline_ms": deadline_ms, "idle_ms": idle_ms, "limit_ms": limit_ms}
    reason = f"idle for {idle_ms / 1000:.1f} s of {limit_ms / 1000:g} s"
    if now_ms < deadline_ms:
        return Verdict(Decision.IDLE, reason, **figures)
    if seen.stopped_deadline_ms == deadline_ms:
        return Verdict(Decision.STOPPED, f"{reason}; stopped already for this deadline", **figures)
    return Verdict(Decision.STOP, reason, **figures)

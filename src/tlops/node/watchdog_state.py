"""What the idle watchdog reads and keeps, besides the activity file.

- The queue as the `watchers` group sees it (jobs not acknowledged yet) and the
  watcher's heartbeat, read from Redis.
- When the machine booted, from the kernel.
- A lock in the watchdog's state dir, so one tick decides at a time.
- The record of its last stop (instance, deadline), so a stop is made and
  counted once per deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis as redis_py

from tlops import contract

LOCK_FILE = "watchdog.lock"
STOP_FILE = "watchdog_stop"


class Doubt(Exception):
    """Something the decision needs could not be read: no stop this tick."""


def unacknowledged(redis: redis_py.Redis) -> int:
    """Jobs on the stream the `watchers` group has not acknowledged: waiting or running."""
    try:
        groups = redis.xinfo_groups(contract.JOB_STREAM)
    except redis_py.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return 0  # no stream: nothing was queued since Redis started
        raise
    group = next((g for g in groups if g.get("name") == contract.CONSUMER_GROUP), None)
    if group is None:  # no watcher made the group yet: every entry waits
        return int(redis.xlen(contract.JOB_STREAM))
    lag = group.get("lag")
    if lag is None:  # Redis cannot count (entries deleted): is any left undelivered?
        after = f"({group['last-delivered-id']}"
        lag = len(redis.xrange(contract.JOB_STREAM, min=after, count=1))
    return int(group.get("pending", 0)) + int(lag)


def heartbeat(redis: redis_py.Redis) -> tuple[bool, int]:
    """Whether a watcher heartbeat exists, and the requests it counts in flight."""
    raw = redis.get(contract.HEARTBEAT_KEY)
    if raw is None:
        return False, 0
    try:
        return True, int(json.loads(raw).get("in_flight", 0))
    except (ValueError, TypeError, AttributeError):
        raise Doubt(f"the watcher heartbeat is unreadable: {str(raw)[:80]!r}") from None


def boot_ms() -> int:
    """When this machine booted (ms since the epoch; 0 where unknown), from the kernel's
    `btime`: whole seconds, the same on every read, so a deadline that counts from the boot
    is the same deadline on every tick."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) * 1000
    except (OSError, ValueError, IndexError):
        pass
    return 0


def last_stop(directory: Path, instance_id: str) -> int | None:
    """The deadline this instance was last stopped for; None if none is on record."""
    try:
        body = json.loads((directory / STOP_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("instance") != instance_id:
        return None
    deadline = body.get("deadline_ms")
    return deadline if isinstance(deadline, int) else None


def record_stop(directory: Path, instance_id: str, deadline_ms: int, stopped_ms: int) -> None:
    """Keep the stop (atomically); raises OSError when it cannot be written."""
    body = {"instance": instance_id, "deadline_ms": deadline_ms, "stopped_ms": stopped_ms}
    temporary = directory / f".{STOP_FILE}.tmp"
    temporary.write_text(json.dumps(body) + "\n")
    temporary.replace(directory / STOP_FILE)


@contextlib.contextmanager
def tick_lock(directory: Path, *, wait_s: float, halt: threading.Event) -> Iterator[None]:
    """Hold the watchdog's lock, waiting up to `wait_s` for a tick that holds it (one
    waiting for its deadline lets go within an interval). Raises Doubt when it cannot."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = (directory / LOCK_FILE).open("a")
    except OSError as exc:
        raise Doubt(f"the lock in {directory} cannot be opened: {exc}") from exc
    with handle:
        give_up = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= give_up or halt.wait(0.02):
                    raise Doubt(f"another tick held the lock for {wait_s:g} s") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

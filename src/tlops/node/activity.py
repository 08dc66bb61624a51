"""The node's last activity and the latest job's idle time, kept in a file the idle watchdog reads.

The watcher marks activity when it picks jobs up, when it settles them, and on
every heartbeat while a job is in flight (a long generation is activity too).
With each pick-up it also records the idle minutes of the newest job taken (the
record's `idle`): how long the node stays up after its last activity.

The file is JSON, `{"last_activity_ms": int, "idle_minutes": int | null}`,
written at most once per heartbeat and only when something changed,
atomically (a temporary file, then a rename), so a reader never sees half of it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

from tlops.contract import IDLE_MAX_MINUTES, IDLE_MIN_MINUTES
from tlops.contract.records import Field

FILE_NAME = "last_activity"


class Unreadable(Exception):
    """The activity file exists but does not say what it must: nothing can be decided from it."""


class Reading(NamedTuple):
    last_activity_ms: int
    idle_minutes: int | None  # None: no job has said (the watchdog's default applies)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def valid_idle(value: object) -> int | None:
    """`value` as idle minutes if it is a whole number in the contract's range, else None."""
    try:
        minutes = int(str(value))
    except ValueError:
        return None
    return minutes if IDLE_MIN_MINUTES <= minutes <= IDLE_MAX_MINUTES else None


def idle_of(record: dict[str, str]) -> int | None:
    """The idle minutes a job record asks for (None when it has none the contract allows)."""
    return valid_idle(record.get(Field.IDLE, ""))


class Activity:
    def __init__(self, state_dir: Path | None):
        self.state_dir = state_dir
        self.last_ms = now_ms()  # starting counts: a fresh node is not idle since the epoch
        self.idle_minutes: int | None = None
        self._written: tuple[int, int | None] | None = None

    def mark(self, at_ms: int | None = None, *, idle: int | None = None) -> None:
        """Activity now (or at `at_ms`); `idle`, when given, is the newest job's idle minutes."""
        self.last_ms = now_ms() if at_ms is None else at_ms
        if idle is not None:
            self.idle_minutes = idle

    def flush(self, *, force: bool = False) -> None:
        """Write the file if anything changed since the last write (always when forced)."""
        current = (self.last_ms, self.idle_minutes)
        if self.state_dir is None or (not force and current == self._written):
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.state_dir / f".{FILE_NAME}.tmp"
        body = {"last_activity_ms": self.last_ms, "idle_minutes": self.idle_minutes}
        temporary.write_text(json.dumps(body) + "\n")
        temporary.replace(self.state_dir / FILE_NAME)
        self._written = current


def read(state_dir: Path) -> Reading | None:
    """What the file in `state_dir` says; None if there is no file.

    Raises Unreadable when the file cannot be read or holds anything but what
    `Activity.flush` writes (a bare number, the format before the idle minutes
    were kept, is read as the last activity with no idle minutes).
    """
    try:
        text = (state_dir / FILE_NAME).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Unreadable(f"cannot read {FILE_NAME}: {exc}") from exc
    try:
        body = json.loads(text)
    except ValueError:
        raise Unreadable(f"{FILE_NAME} is not JSON: {text[:80]!r}") from None
    if isinstance(body, int) and not isinstance(body, bool):
        return Reading(body, None)
    if not isinstance(body, dict):
        raise Unreadable(f"{FILE_NAME} is not an object: {text[:80]!r}")
    last, idle = body.get("last_activity_ms"), body.get("idle_minutes")
    if not isinstance(last, int) or isinstance(last, bool) or last < 0:
        raise Unreadable(f"{FILE_NAME} has no last_activity_ms in ms: {last!r}")
    if idle is not None and (isinstance(idle, bool) or valid_idle(idle) != idle):
        raise Unreadable(
            f"{FILE_NAME} idle_minutes must be {IDLE_MIN_MINUTES}-{IDLE_MAX_MINUTES}: {idle!r}"
        )
    return Reading(last, idle)

"""The node's boot as Redis keeps it, and the ETA the router answers from measured boots.

`node:boot` is a hash: `phase` (a `BootPhase`), `since_ms` (when that phase began),
`instance` (the EC2 instance booting) and `started_ms` (when the boot began: the
router's StartInstances, or the node's own start when nobody called it). Both
times are Redis' clock (`TIME`), so a router in Lambda and a node on EC2 agree.

`node:boot_times` lists the durations of the last boots the router started, in
ms from its StartInstances to the first real completion, newest first, at most
`BOOT_TIMES_KEPT`. The ETA of a cold boot is their median (robust to one slow
boot), the configured ETA until one was measured.

Plain Python: the router imports it on its cold path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tlops.contract import BootPhase

PHASE = "phase"
SINCE_MS = "since_ms"
INSTANCE = "instance"
STARTED_MS = "started_ms"

# A boot in one of these phases is under way.
BOOTING = (BootPhase.STARTING_INSTANCE, BootPhase.STARTING_SERVICES, BootPhase.LOADING_MODEL)
# A phase older than this is a boot that will not finish (the node stopped mid-boot, by the
# watchdog or the budget killer, which do not write the record): a view does not show it.
STALE_AFTER_MS = 15 * 60 * 1000


def median_ms(times_ms: Sequence[int]) -> float | None:
    """The median of the measured boots; None when there is none."""
    ordered = sorted(times_ms)
    if not ordered:
        return None
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def parse_times(values: Sequence[str | bytes | int]) -> list[int]:
    """`node:boot_times` as integers; entries that are not non-negative integers are skipped."""
    times = []
    for value in values:
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text.isdigit():
            times.append(int(text))
    return times


def eta_seconds(times_ms: Sequence[int], fallback_s: int, elapsed_ms: int = 0) -> int:
    """Seconds until the node should take a job: the median boot less what already passed
    since the boot began (a boot someone else started), at least 1; `fallback_s` (the
    configured ETA) stands for the median until a boot was measured."""
    median = median_ms(times_ms)
    total_ms = fallback_s * 1000 if median is None else median
    return max(1, math.ceil((total_ms - max(0, elapsed_ms)) / 1000))


def current_phase(record: Mapping[str, str], now_ms: int) -> str | None:
    """The phase of a boot under way, for a queued job's view; None when no boot runs."""
    phase = record.get(PHASE)
    if phase not in BOOTING:
        return None
    since = record.get(SINCE_MS, "")
    if not since.isdigit() or now_ms - int(since) > STALE_AFTER_MS:
        return None
    return phase

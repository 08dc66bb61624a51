"""The router's way to `control`, and to the jobs it holds while the queue sleeps.

The router lives in the VPC's private subnet and reaches AWS only through the S3
gateway endpoint (free). So it asks control for EC2 steps by writing request
objects to the control bucket, and reads what control recorded (the node's state,
the queue's address, whether the stack sleeps) from the state document there
(tlops.contract.control). Every call is one S3 request, bounded by the router's
client timeouts; the state document is kept for a few seconds per container.

While the stack is asleep there is no Redis: a job is *held* as an object under
`held/<sub>/`, where the node finds it once the queue is back. The caps and the
rate limit hold there too, counted from the names of the held objects (each
carries its time), which costs two listings per held request: one of the user's
own held jobs (rate and per-user cap), one of everyone's (the total cap).
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from tlops.common.bucket_keys import keys
from tlops.common.control_bucket import BucketUnavailable, ControlBucket
from tlops.contract import QUEUE_FULL_RETRY_SECONDS, control
from tlops.contract.boot import median_ms
from tlops.contract.control import Action
from tlops.edge import admission
from tlops.edge.admission import Admitted

__all__ = ["BucketUnavailable", "ControlLink", "HeldAdmission", "held_job_id"]


class HeldAdmission(NamedTuple):
    outcome: Admitted  # HELD, REPLAYED, REUSED, LIMITED, USER_FULL or FULL
    job_id: str = ""
    retry_after_s: int = 0


def held_job_id(sub: str, idempotency_key: str) -> str:
    """The job id a held request with an Idempotency-Key gets: the same for every retry of
    it (so a retry finds its job by name), shaped as a UUIDv4 like every job id."""
    digest = bytearray(hashlib.sha256(f"{sub}\0{idempotency_key}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40  # version 4
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(digest)))


class ControlLink:
    def __init__(
        self,
        s3: Callable[[], Any],
        bucket: str,
        *,
        by: str = "router",
        state_max_age_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ):
        self._s3_factory = s3
        self._bucket: ControlBucket | None = None
        self.bucket_name = bucket
        self.by = by
        self.state_max_age_s = state_max_age_s
        self.clock = clock
        self._state: dict[str, Any] = {}
        self._state_read_at = float("-inf")

    @property
    def bucket(self) -> ControlBucket:
        if self._bucket is None:
            self._bucket = ControlBucket(self._s3_factory(), self.bucket_name)
        return self._bucket

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- asking control -------------------------------------------------------------
    def ask(self, action: Action, name: str, **args: Any) -> bool:
        """Write a request for control (once per name); raises BucketUnavailable."""
        return self.bucket.ask(action, name, by=self.by, now_ms=self.now_ms(), **args)

    def wake(self, reason: str) -> bool:
        """Ask control to wake the stack: at most one request a minute, for the state it is
        recorded in, reaches it."""
        since_ms = self.state().get("since_ms")
        return self.ask(Action.WAKE, control.wake_name(self.now_ms(), since_ms), reason=reason)

    # --- what control recorded ---------------------------------------------------------
    def state(self, *, fresh: bool = False) -> dict[str, Any]:
        """The recorded state, re-read when older than `state_max_age_s` (or `fresh`)."""
        now = time.monotonic()
        if fresh or now - self._state_read_at >= self.state_max_age_s:
            self._state = self.bucket.state()
            self._state_read_at = now
        return self._state

    def forget_state(self) -> None:
        self._state_read_at = float("-inf")

    @staticmethod
    def wake_eta_s(state: dict[str, Any], fallback_s: int) -> int:
        """Seconds until a sleeping stack takes jobs: the queue's creation and the node's
        boot run side by side, so the longer of their medians as measured (control times
        the wakes; the boots come from the queue, saved through the sleep); the configured
        figure until either was measured."""
        medians = [
            median_ms([int(ms) for ms in state.get(key, []) if str(ms).isdigit()])
            for key in ("wakes_ms", "boot_times_ms")
        ]
        measured = [m for m in medians if m is not None]
        return max(1, math.ceil(max(measured) / 1000)) if measured else fallback_s

    # --- held jobs ------------------------------------------------------------------------
    def hold(
        self,
        *,
        sub: str,
        job_id: str,
        fields: dict[str, str],
        limits: admission.RateLimits,
        caps: admission.QueueCaps,
        idempotency: admission.Idempotency | None,
        before_write: Callable[[], Any] | None = None,
    ) -> HeldAdmission:
        """Hold a job while the queue sleeps, under the same limits Redis applies when up.
        `before_write` runs once the job passed them, before it is written (the wake: asked
        first, so that a job held is never one nobody will wake the stack for). Raises
        BucketUnavailable (nothing was held)."""
        now = self.now_ms()
        mine = keys(
            self.bucket, control.held_prefix(sub), most=max(caps.per_user, limits.sustained) + 50
        )
        held = [k for k in (control.parse_held_key(key) for key in mine) if k is not None]
        if idempotency is not None:
            job_id = held_job_id(sub, idempotency.key)
            for key in held:
                if key.job_id == job_id:
                    stored = self.bucket.get_json(control.held_key(sub, key.at_ms, job_id)) or {}
                    same = (
                        stored.get("idempotency", {}).get("fingerprint") == idempotency.fingerprint
                    )
                    return HeldAdmission(Admitted.REPLAYED if same else Admitted.REUSED, job_id)
        retry_ms = _window_retry_ms([k.at_ms for k in held], now, limits)
        if retry_ms:
            return HeldAdmission(Admitted.LIMITED, retry_after_s=max(1, -(-retry_ms // 1000)))
        if caps.total > 0:
            longest = QUEUE_FULL_RETRY_SECONDS[1]
            if len(held) >= caps.per_user:
                return HeldAdmission(Admitted.USER_FULL, retry_after_s=longest)
            everyone = keys(self.bucket, control.HELD_PREFIX, most=caps.total)
            if len(everyone) >= caps.total:
                return HeldAdmission(Admitted.FULL, retry_after_s=longest)
        if before_write is not None:
            before_write()
        body = {
            "id": job_id,
            "sub": sub,
            "held_ms": now,
            "fields": fields,
            "idempotency": None
            if idempotency is None
            else {"key": idempotency.key, "fingerprint": idempotency.fingerprint},
        }
        written = self.bucket.put_json(
            control.held_key(sub, now, job_id), body, only_if_absent=True
        )
        return HeldAdmission(Admitted.HELD if written else Admitted.REPLAYED, job_id)

    def held_job(self, sub: str, job_id: str) -> dict[str, Any] | None:
        """A job of `sub` held under that id, with its `held_ms`; None when there is none."""
        for key in keys(self.bucket, control.held_prefix(sub), most=1000):
            parsed = control.parse_held_key(key)
            if parsed is not None and parsed.job_id == job_id:
                return {"id": job_id, "held_ms": parsed.at_ms}
        return None


def _window_retry_ms(times_ms: list[int], now: int, limits: admission.RateLimits) -> int:
    """ms until one more request fits the sliding windows, from the times of those held (the
    windows admission counts in Redis); 0 when it fits now."""
    retry = 0
    for count, window in (
        (limits.burst, limits.burst_window_ms),
        (limits.sustained, limits.sustained_window_ms),
    ):
        inside = sorted(t for t in times_ms if t > now - window)
        if len(inside) >= count:
            retry = max(retry, inside[len(inside) - count] + window - now)
    return retry

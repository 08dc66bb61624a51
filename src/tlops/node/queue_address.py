"""Where the queue is, for a node that may boot before it exists.

A wake creates the queue and starts the node at once; the node boots in a minute
or two, ElastiCache takes several, and each wake's queue has a new address. So a
program that cannot reach Redis at its start asks the state `control` records
(the control bucket's `state.json`) where the queue is now, at most every
`LOOK_EVERY_S`; when it names another address, the program's client is pointed
there. When the state says the stack sleeps (no queue at all: a sleep that raced
the wake), it asks control for a wake itself. The programs' own bounded retries
(the watcher's backoff, the boot reporter's timeout) bound the wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis as redis_py

from tlops.common.control_bucket import BucketUnavailable, ControlBucket
from tlops.common.telemetry import Telemetry
from tlops.contract import control
from tlops.contract.states import QUEUE_UP_STATUSES, StackState

LOOK_EVERY_S = 15.0


class QueueAddress:
    def __init__(
        self,
        bucket: ControlBucket | None,
        *,
        telemetry: Telemetry,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.bucket = bucket
        self.log = telemetry
        self.clock = clock
        self._next_look = 0.0

    @classmethod
    def from_bucket_name(cls, name: str, *, telemetry: Telemetry) -> QueueAddress:
        if not name:
            return cls(None, telemetry=telemetry)
        from tlops.common import aws

        return cls(ControlBucket(aws.client("s3"), name), telemetry=telemetry)

    def recorded(self) -> str | None:
        """The queue's address as control recorded it, when it is up; None when unknown (or
        not looked at again yet). Asks for a wake when the stack sleeps."""
        if self.bucket is None or self.clock() < self._next_look:
            return None
        self._next_look = self.clock() + LOOK_EVERY_S
        try:
            state = self.bucket.state()
            queue = control.queue_of(state)
            if queue is None and state.get("state") == StackState.ASLEEP:
                now_ms = int(time.time() * 1000)
                asked = self.bucket.ask(
                    control.Action.WAKE, control.wake_name(now_ms, state.get("since_ms")),
                    by="gpu_node", now_ms=now_ms, reason="a node without a queue",
                )  # fmt: skip
                self.log.log("WARNING", "no queue: the stack sleeps", wakeAsked=asked)
                return None
        except BucketUnavailable as exc:
            self.log.log("WARNING", "queue address not read", reason=str(exc))
            return None
        if queue is None or queue.status not in QUEUE_UP_STATUSES or not queue.url:
            return None
        return queue.url

    def follow(self, client: redis_py.Redis) -> bool:
        """Point `client` at the recorded address when it differs; True when it moved."""
        url = self.recorded()
        if url is None:
            return False
        wanted = redis_py.Redis.from_url(url).connection_pool.connection_kwargs
        pool = client.connection_pool
        now = pool.connection_kwargs
        if all(now.get(k) == wanted.get(k) for k in ("host", "port", "db")):
            return False
        pool.connection_kwargs.update({k: wanted[k] for k in ("host", "port", "db") if k in wanted})
        # A connection keeps the address it was made with, even disconnected: close them all
        # and forget them, so that every next command connects to the new address.
        pool.disconnect()
        pool.reset()
        self.log.log("INFO", "the queue moved", host=wanted.get("host"), port=wanted.get("port"))
        return True

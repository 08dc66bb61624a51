"""The HTTP API stage's throttling, as the local gateway applies it.

API Gateway throttles each route with a token bucket: `burst` requests may
pass at once, and the bucket refills at `rate` requests per second. A route's
own `RouteSettings` take precedence over the stage's `DefaultRouteSettings`
(field by field); a route left without a burst or a rate by both is not
throttled. What is refused gets 429 `{"message":"Too Many Requests"}`, as
from API Gateway (which sends no Retry-After either).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

TOO_MANY_REQUESTS = {"message": "Too Many Requests"}


class Limit(NamedTuple):
    burst: int | None = None
    rate: float | None = None  # requests per second

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> Limit:
        """From a stage's route settings (`ThrottlingBurstLimit`, `ThrottlingRateLimit`)."""
        settings = settings or {}
        burst, rate = settings.get("ThrottlingBurstLimit"), settings.get("ThrottlingRateLimit")
        return cls(None if burst is None else int(burst), None if rate is None else float(rate))

    def over(self, default: Limit) -> Limit:
        return Limit(
            default.burst if self.burst is None else self.burst,
            default.rate if self.rate is None else self.rate,
        )


class _Bucket:
    def __init__(self, limit: Limit, clock: Callable[[], float]):
        self.capacity = float(limit.burst or 0)
        self.rate = float(limit.rate or 0)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


class Throttling:
    """One bucket per route key; `allow` takes a token from the route's bucket."""

    def __init__(
        self,
        default: Limit | None = None,
        routes: Mapping[str, Limit] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.default = default or Limit()
        self.routes = dict(routes or {})
        self._clock = clock
        self._buckets: dict[str, _Bucket | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_stage(cls, stage: Mapping[str, Any] | None) -> Throttling:
        """From a stage as `apigatewayv2 get_stages` describes it (None: no throttling)."""
        stage = stage or {}
        return cls(
            Limit.from_settings(stage.get("DefaultRouteSettings")),
            {
                key: Limit.from_settings(settings)
                for key, settings in (stage.get("RouteSettings") or {}).items()
            },
        )

    def limit(self, route_key: str) -> Limit:
        return self.routes.get(route_key, Limit()).over(self.default)

    def allow(self, route_key: str) -> bool:
        with self._lock:
            if route_key not in self._buckets:
                limit = self.limit(route_key)
                known = limit.burst is not None and limit.rate is not None
                self._buckets[route_key] = _Bucket(limit, self._clock) if known else None
            bucket = self._buckets[route_key]
        return bucket is None or bucket.take()

"""Exponential backoff with jitter, for everything on the node that waits on a dependency."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with jitter: waits grow while a dependency stays down.

    Half the delay is fixed and half random, so a retry never comes right away
    (no busy loop) and several watchers do not retry in step.
    """

    def __init__(self, base: float = 0.1, cap: float = 10.0):
        self.base, self.cap, self.failures = base, cap, 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.failures)
        self.failures = min(self.failures + 1, 30)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto

    def reset(self) -> None:
        self.failures = 0

"""Control's configuration: its environment (set by the control role), read once."""

from __future__ import annotations

import os
from typing import NamedTuple

from tlops.control.queue import QueueSpec

# How long one invocation may wait for ElastiCache to finish creating the queue before it
# hands the wait on to the next one (a request it writes itself): inside Lambda's 15 min.
QUEUE_WAIT_S = 780.0
# Continuations of one wake: with QUEUE_WAIT_S each, about an hour and a half of waiting.
WAKE_CONTINUATIONS = 6


class ControlConfig(NamedTuple):
    project: str
    bucket: str  # the control bucket
    # What a wake creates the queue from; None where deploy.yml made no queue (a deployment
    # whose queue is the inventory's own Redis): then a wake only starts the node.
    queue: QueueSpec | None
    # Where the queue answers when that is not the group's endpoint (the stand-in, whose
    # groups serve nothing: the local queue agent serves the current one at this address).
    queue_url: str = ""
    queue_wait_s: float = QUEUE_WAIT_S

    @property
    def queue_prefix(self) -> str:
        return self.queue.id_prefix if self.queue else f"{self.project}-queue"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ControlConfig:
        env = dict(os.environ if env is None else env)
        missing = [
            name
            for name in ("TL_PROJECT", "TL_CONTROL_BUCKET")  # no TL_QUEUE_SPEC: no queue
            if not env.get(name)
        ]
        if missing:
            raise RuntimeError(f"control configuration incomplete, set: {', '.join(missing)}")
        return cls(
            project=env["TL_PROJECT"],
            bucket=env["TL_CONTROL_BUCKET"],
            queue=QueueSpec.from_json(env["TL_QUEUE_SPEC"]) if env.get("TL_QUEUE_SPEC") else None,
            queue_url=env.get("TL_QUEUE_URL", ""),
            queue_wait_s=float(env.get("TL_QUEUE_WAIT_S", str(QUEUE_WAIT_S))),
        )

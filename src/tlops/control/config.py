"""Control's configuration: its environment (set by the control role), read once."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

from tlops.common import settings_table
from tlops.common.settings_table import number, setting
from tlops.control.queue import QueueSpec

# How long one invocation may wait for ElastiCache to finish creating the queue before it
# hands the wait on to the next one (a request it writes itself): inside Lambda's 15 min.
QUEUE_WAIT_S = 780.0
# Continuations of one wake: with QUEUE_WAIT_S each, about an hour and a half of waiting.
WAKE_CONTINUATIONS = 6


# An instance id: i- and 8 or 17 hexadecimal characters
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/resource-ids.html).
_INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")


def _instance_id(text: str) -> str:
    if not _INSTANCE_ID.fullmatch(text):
        raise ValueError(f"is not an EC2 instance id (i- and 8 or 17 hex digits): {text!r}")
    return text


def _queue_spec(text: str) -> QueueSpec:
    try:
        return QueueSpec.from_json(text)
    except TypeError as exc:  # a field missing: ValueError, as every other fault of it
        raise ValueError(f"is not a queue spec as deploy.yml writes it ({exc})") from None


@dataclasses.dataclass(frozen=True)
class ControlConfig:
    project: str = setting(None, "TL_PROJECT", "the Project tag of the node and the queue")
    bucket: str = setting(None, "TL_CONTROL_BUCKET", "the control bucket")
    # What a wake creates the queue from; None where deploy.yml made no queue (a deployment
    # whose queue is the inventory's own Redis): then a wake only starts the node.
    queue: QueueSpec | None = setting(
        None, "TL_QUEUE_SPEC", "the queue a wake creates (JSON); unset: none", None, _queue_spec
    )
    # Where the queue answers when that is not the group's endpoint (the stand-in, whose
    # groups serve nothing: the local queue agent serves the current one at this address).
    queue_url: str = setting(None, "TL_QUEUE_URL", "the queue's address, if not its group's", "")
    queue_wait_s: float = setting(
        None, "TL_QUEUE_WAIT_S", "seconds one invocation waits for a queue", QUEUE_WAIT_S,
        number(float),
    )  # fmt: skip
    # The deployment's node, as the gpu_node role launched it (deploy.yml writes it again
    # when it replaces the node): the only instance control starts, stops or resizes. Another
    # instance tagged like it is refused; unset, control acts on no instance at all.
    node_instance_id: str = setting(
        None, "TL_NODE_INSTANCE_ID", "the node's instance id; unset: no node", "", _instance_id
    )

    @property
    def queue_prefix(self) -> str:
        return self.queue.id_prefix if self.queue else f"{self.project}-queue"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ControlConfig:
        return settings_table.from_env(cls, os.environ if env is None else env, "control")

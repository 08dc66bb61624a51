"""The watcher's settings: one table, read from flags or the environment.

Each setting is a field of `Settings` whose metadata names its flag, its
environment variable and its help. Everything else derives from that table:
the command line (`parse_settings`), the environment a supervisor passes it
(`environment`), and the names the node roles and the local stack write.
A bad value exits 2 naming the flag or the variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tlops import contract
from tlops.common import settings_table
from tlops.common.settings_table import setting

DEFAULT_INFERENCE_URL = "http://127.0.0.1:8000"


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"must be a positive number, got {text!r}") from None
        if not value > 0:
            raise ValueError(f"must be greater than 0, got {text!r}")
        return value

    return parse


@dataclasses.dataclass(frozen=True)
class Settings:
    redis_url: str = setting(
        "--redis-url", "TL_REDIS_URL", "Redis holding the queue (required)", ""
    )
    inference_url: str = setting(
        "--inference-url", "TL_INFERENCE_URL", "OpenAI-compatible server", DEFAULT_INFERENCE_URL
    )
    model: str | None = setting(
        "--model", "TL_MODEL", "model name; default: the first the server lists", None
    )
    # No flag: a key on the command line would show in the process list.
    inference_api_key: str = setting(
        None,
        "TL_INFERENCE_API_KEY",
        "the key the inference server asks for (Authorization: Bearer); empty: none sent",
        "",
    )
    concurrency: int = setting(
        "--concurrency", "TL_WATCHER_CONCURRENCY", "requests in flight", 8, _positive(int)
    )
    state_dir: Path | None = setting(
        "--state-dir",
        "TL_WATCHER_STATE_DIR",
        "where the last-activity file is kept",
        None,
        Path,
    )
    visibility_timeout_s: float = setting(
        "--visibility-timeout",
        "TL_WATCHER_VISIBILITY_TIMEOUT",
        "seconds before an unacknowledged job is delivered again",
        float(contract.VISIBILITY_TIMEOUT_SECONDS),
        _positive(float),
    )
    max_deliveries: int = setting(
        "--max-deliveries",
        "TL_WATCHER_MAX_DELIVERIES",
        "deliveries before a job is dead-lettered",
        contract.MAX_DELIVERIES,
        _positive(int),
    )
    drain_deadline_s: float = setting(
        "--drain-deadline",
        "TL_WATCHER_DRAIN_DEADLINE",
        "seconds to finish in-flight jobs after SIGTERM",
        30.0,
        _positive(float),
    )
    max_tokens: int = setting(
        "--max-tokens", "TL_WATCHER_MAX_TOKENS", "when a job sets none", 128, _positive(int)
    )
    request_timeout_s: float = setting(
        "--request-timeout",
        "TL_WATCHER_REQUEST_TIMEOUT",
        "seconds one inference request may take, and may wait for its next streamed chunk",
        300.0,
        _positive(float),
    )
    partial_interval_s: float = setting(
        "--partial-interval",
        "TL_WATCHER_PARTIAL_INTERVAL",
        "seconds between publishes of a running job's text so far (or --partial-tokens)",
        0.5,
        _positive(float),
    )
    partial_tokens: int = setting(
        "--partial-tokens",
        "TL_WATCHER_PARTIAL_TOKENS",
        "streamed chunks between publishes of a running job's text so far (or "
        "--partial-interval, whichever comes first)",
        32,
        _positive(int),
    )
    control_bucket: str = setting(
        "--control-bucket",
        "TL_CONTROL_BUCKET",
        "bucket of the jobs held while the stack slept; empty: none are looked for",
        "",
    )
    # Not settings an operator sets: identity and pacing of the loop.
    consumer: str = dataclasses.field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}"
    )
    block_ms: int = 1000
    backoff_cap_s: float = 10.0


OPTIONS = settings_table.options(Settings)


def environment(**values: Any) -> dict[str, str]:
    """The environment that configures a watcher with `values` (by field name); unset left out."""
    return settings_table.environment(Settings, "watcher", **values)


def parse_settings(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Flags first, then the environment, then the defaults; a bad value exits 2 naming it."""
    parser = argparse.ArgumentParser(
        prog="python -m tlops.node.watcher",
        description="Take jobs from the Redis stream, run them on the inference server, "
        "store the results in S3.",
    )
    settings_table.add_arguments(parser, Settings)
    args = parser.parse_args(argv)
    return settings_table.read(
        parser, args, os.environ if env is None else env, Settings, required=("redis_url",)
    )

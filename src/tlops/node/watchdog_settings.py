"""The idle watchdog's settings: one table, read from flags or the environment.

As for the watcher (`tlops.node.settings`), each setting is a field whose
metadata names its flag, its environment variable, its help and its parser;
the command line (`parse_settings`) and the environment a cron job or a
supervisor passes (`environment`) both derive from it. A bad value exits 2
naming the flag or the variable. `tlops.node.watchdog` re-exports both.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tlops.common import settings_table
from tlops.common.settings_table import setting
from tlops.contract import IDLE_DEFAULT_MINUTES, IDLE_MAX_MINUTES, IDLE_MIN_MINUTES, names
from tlops.node import imds


def _idle_minutes(text: str) -> int:
    try:
        minutes = int(text)
    except ValueError:
        raise ValueError(f"must be a whole number of minutes, got {text!r}") from None
    if not IDLE_MIN_MINUTES <= minutes <= IDLE_MAX_MINUTES:
        raise ValueError(f"must be {IDLE_MIN_MINUTES}-{IDLE_MAX_MINUTES} minutes, got {minutes}")
    return minutes


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        parsed = urllib.parse.urlsplit(text)
        try:
            parsed.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            parsed = parsed._replace(netloc="")
        if parsed.scheme not in schemes or not parsed.hostname:
            raise ValueError(f"must be a {' or '.join(schemes)} URL, got {text!r}")
        return text

    return parse


def _minute_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"must be a number of seconds, got {text!r}") from None
    if not 0.05 <= seconds <= 60:
        raise ValueError(f"must be from 0.05 to 60 seconds, got {text!r}")
    return seconds


@dataclasses.dataclass(frozen=True)
class WatchdogSettings:
    redis_url: str = setting(
        "--redis-url",
        "TL_REDIS_URL",
        "Redis holding the queue (required)",
        "",
        _url("redis", "rediss"),
    )
    state_dir: Path | None = setting(
        "--state-dir",
        "TL_WATCHER_STATE_DIR",
        "where the watcher writes the last-activity file (required)",
        None,
        Path,
    )
    idle_minutes: int = setting(
        "--idle-minutes",
        "TL_WATCHDOG_IDLE_MINUTES",
        f"idle minutes before the node stops, {IDLE_MIN_MINUTES}-{IDLE_MAX_MINUTES}, "
        "unless the newest job set its own",
        IDLE_DEFAULT_MINUTES,
        _idle_minutes,
    )
    imds_url: str = setting(
        "--imds-url",
        "TL_WATCHDOG_IMDS_URL",
        "the instance metadata service (IMDSv2)",
        imds.DEFAULT_URL,
        imds.parse_url,
    )
    own_state_dir: Path | None = setting(
        "--own-state-dir",
        "TL_WATCHDOG_STATE_DIR",
        "where the watchdog keeps its lock and its last stop; default: the state dir",
        None,
        Path,
    )
    project: str = setting(
        "--project", "TL_PROJECT", "the Project tag, named in the logs", names.PROJECT
    )
    aws_endpoint_url: str | None = setting(
        "--aws-endpoint-url",
        "TL_AWS_ENDPOINT_URL",
        "an AWS stand-in; unset on AWS",
        None,
        _url("http", "https"),
    )
    aws_region: str | None = setting("--aws-region", "TL_AWS_REGION", "the node's region", None)
    minute_s: float = setting(
        "--minute-seconds",
        "TL_WATCHDOG_MINUTE_SECONDS",
        "seconds in one watchdog minute and between two `run` ticks: tests and benchmarks "
        "shrink it; leave it at 60 on a node",
        60.0,
        _minute_seconds,
    )

    @property
    def lock_dir(self) -> Path:
        return self.own_state_dir or self.state_dir or Path(".")


OPTIONS = settings_table.options(WatchdogSettings)
REQUIRED = ("redis_url", "state_dir")


def environment(**values: Any) -> dict[str, str]:
    """The environment that configures a watchdog with `values` (by field name); unset left out."""
    return settings_table.environment(WatchdogSettings, "watchdog", **values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings_table.add_arguments(parser, WatchdogSettings)


def from_arguments(
    parser: argparse.ArgumentParser, args: argparse.Namespace, env: Mapping[str, str]
) -> WatchdogSettings:
    """Flags first, then the environment, then the defaults; a bad value exits 2 naming it."""
    return settings_table.read(parser, args, env, WatchdogSettings, required=REQUIRED)


def parse_settings(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> WatchdogSettings:
    parser = argparse.ArgumentParser(prog="python -m tlops.node.watchdog")
    add_arguments(parser)
    return from_arguments(parser, parser.parse_args(argv), os.environ if env is None else env)

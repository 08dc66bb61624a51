"""What the node's programs share about their settings: one table per program.

A program's settings are the fields of a frozen dataclass, each made with
`setting()`, whose metadata names its flag, its environment variable, its help
and its parser. From that table come the command line (`add_arguments`,
`read`: flags first, then the environment, then the defaults; a bad value
exits 2 naming the flag or the variable) and the environment a supervisor or a
cron job passes (`environment`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def setting(flag: str, env: str, help: str, default: Any, parse: Callable[[str], Any] = str):
    return dataclasses.field(
        default=default, metadata={"flag": flag, "env": env, "help": help, "parse": parse}
    )


def options(table: type) -> tuple[dataclasses.Field, ...]:
    """The fields of `table` that are settings (the others are fixed tunables)."""
    return tuple(field for field in dataclasses.fields(table) if "flag" in field.metadata)


def environment(table: type, what: str, **values: Any) -> dict[str, str]:
    """The environment that configures the program with `values` (by field name); unset
    ones left out, an unknown one refused."""
    names = {field.name: field.metadata["env"] for field in options(table)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise TypeError(f"not {what} settings: {', '.join(unknown)}")
    return {names[name]: str(value) for name, value in values.items() if value is not None}


def add_arguments(parser: argparse.ArgumentParser, table: type) -> None:
    for field in options(table):
        meta = field.metadata
        parser.add_argument(
            meta["flag"], dest=field.name, default=None, help=f"{meta['help']} [{meta['env']}]"
        )


def read(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    env: Mapping[str, str],
    table: type,
    required: Iterable[str] = (),
) -> Any:
    """An instance of `table` from the parsed flags, then `env`, then the defaults."""
    values: dict[str, Any] = {}
    fields = options(table)
    for field in fields:
        meta = field.metadata
        given, source = getattr(args, field.name), meta["flag"]
        if given is None and env.get(meta["env"]):
            given, source = env[meta["env"]], meta["env"]
        if given is None:
            continue
        try:
            values[field.name] = meta["parse"](given)
        except ValueError as exc:
            parser.error(f"{source} {exc}")
    for field in fields:
        if field.name in required and not values.get(field.name):
            parser.error(f"{field.metadata['flag']} or {field.metadata['env']} is required")
    return table(**values)

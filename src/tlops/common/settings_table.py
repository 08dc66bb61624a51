"""What every program's settings share: one table per program, the node's and the Lambdas'.

A program's settings are the fields of a frozen dataclass, each made with
`setting()`, whose metadata names its environment variable, its help, its parser
and, for a program with a command line, its flag. From that table come:

- for the node's programs, the command line (`add_arguments`, `read`: flags first,
  then the environment, then the defaults; a bad value exits 2 naming the flag or
  the variable) and the environment a supervisor or a cron job passes
  (`environment`);
- for the Lambdas, which have no command line, `from_env`: the environment, then
  the defaults; a variable missing or bad raises ConfigError naming it (the
  handler fails its invocation with that message, never with a traceback of a
  parser).

Fields made with plain `dataclasses.field` (or a default) are fixed tunables,
not settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the Lambdas read tables too: argparse stays off their cold start
    import argparse

REQUIRED: Any = dataclasses.MISSING  # a setting's default: none, the variable must be set


class ConfigError(RuntimeError):
    """A program's environment lacks a setting or holds a bad one; the message names it."""


def setting(
    flag: str | None,
    env: str,
    help: str,
    default: Any = REQUIRED,
    parse: Callable[[str], Any] = str,
):
    """A settings field: its flag (None: environment only), variable, help and parser."""
    return dataclasses.field(
        default=default, metadata={"flag": flag, "env": env, "help": help, "parse": parse}
    )


def options(table: type) -> tuple[dataclasses.Field, ...]:
    """The fields of `table` that are settings (the others are fixed tunables)."""
    return tuple(field for field in dataclasses.fields(table) if "env" in field.metadata)


def from_env(table: type, env: Mapping[str, str], what: str) -> Any:
    """An instance of `table` from `env` (an empty variable counts as unset), then the
    defaults. Raises ConfigError naming every required variable that is unset, or the
    first that does not parse."""
    values: dict[str, Any] = {}
    missing: list[str] = []
    for field in options(table):
        name, parse = field.metadata["env"], field.metadata["parse"]
        text = env.get(name, "")
        if not text:
            if field.default is REQUIRED:
                missing.append(name)
            continue
        try:
            values[field.name] = parse(text)
        except ValueError as exc:
            raise ConfigError(f"{what} configuration: {name} {exc}") from None
    if missing:
        raise ConfigError(f"{what} configuration incomplete, set: {', '.join(missing)}")
    return table(**values)


def number(kind: type) -> Callable[[str], Any]:
    """A parser of `kind` (int, float) whose error says what was expected."""

    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ValueError(f"must be {what}, got {text!r}") from None

    return parse


def switch(text: str) -> bool:
    """`true` or `false` (any case), as the roles write a yes/no setting."""
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"must be true or false, got {text!r}")
    return lowered == "true"


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
        if meta["flag"] is None:
            continue
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
        given, source = getattr(args, field.name, None), meta["flag"]  # None: no flag
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

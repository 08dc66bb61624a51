"""A small CloudWatch Logs Insights evaluator, for the subset the project's queries use.

`tlops local logs query NAME` runs a query of `observability/queries/` over the local
stack's JSON logs with this, so the text the observability role saves is the
text tested here. The subset:

    fields a, b, @timestamp
    filter <expression>       and, or, not, ( ), = != < <= > >=, like /regex/ or "text",
                              in [v, ...], ispresent(f)
    stats agg [as name], ... [by f, ...]
                              count(*), count(f), count_distinct(f), sum, avg, min, max,
                              pct(f, N)
    sort f [asc|desc], ...
    limit N

As in Insights, a comparison with a number compares numerically when the field's
value reads as one (the HTTP API writes its numbers as strings), a missing field
makes a comparison false, and `@timestamp` is the event's time (here the line's
`timestamp` field, in ms). Percentiles are nearest-rank; Insights approximates,
so figures may differ in the last digit. Anything else is refused with the word
the evaluator did not understand, not guessed at.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>-?\d+(?:\.\d+)?)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<regex>/(?:[^/\\]|\\.)+/)
    | (?P<op><=|>=|!=|=|<|>|\(|\)|,|\[|\]|\*)
    | (?P<word>[@A-Za-z_][\w.@]*)
    )""",
    re.VERBOSE,
)
_AGGREGATES = ("count", "count_distinct", "sum", "avg", "min", "max", "pct")
DEFAULT_LIMIT = 1000  # what Insights returns when a query sets no limit


class QueryError(ValueError):
    """The evaluator cannot run this query; the message names what it did not understand."""


def tokens(text: str) -> list[tuple[str, str]]:
    out, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise QueryError(f"cannot read the query at: {text[position : position + 20]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        position = match.end()
    return out


class _Reader:
    def __init__(self, text: str):
        self.items = tokens(text)
        self.at = 0

    def peek(self, value: str | None = None) -> bool:
        if self.at >= len(self.items):
            return False
        return value is None or self.items[self.at][1].lower() == value

    def take(self, value: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.items):
            raise QueryError(f"the query ends where {value or 'more'} was expected")
        item = self.items[self.at]
        if value is not None and item[1].lower() != value:
            raise QueryError(f"expected {value!r}, found {item[1]!r}")
        self.at += 1
        return item

    def field(self) -> str:
        kind, value = self.take()
        if kind != "word":
            raise QueryError(f"expected a field name, found {value!r}")
        return value

    def fields(self) -> list[str]:
        names = [self.field()]
        while self.peek(","):
            self.take(",")
            names.append(self.field())
        return names


# --- values -------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _literal(kind: str, text: str) -> Any:
    if kind == "number":
        return float(text)
    if kind == "string":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    raise QueryError(f"expected a value, found {text!r}")


def _compare(left: Any, op: str, right: Any) -> bool:
    if left is None:
        return False
    if isinstance(right, float):
        number = _number(left)
        if number is None:
            return op == "!="
        left = number
    else:
        left = str(left)
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return checks[op](left, right)


# --- filter expressions: or → and → not → comparison ----------------------------------------
Predicate = Callable[[dict[str, Any]], bool]


def _expression(reader: _Reader) -> Predicate:
    terms = [_conjunction(reader)]
    while reader.peek("or"):
        reader.take("or")
        terms.append(_conjunction(reader))
    return terms[0] if len(terms) == 1 else lambda r: any(term(r) for term in terms)


def _conjunction(reader: _Reader) -> Predicate:
    terms = [_negation(reader)]
    while reader.peek("and"):
        reader.take("and")
        terms.append(_negation(reader))
    return terms[0] if len(terms) == 1 else lambda r: all(term(r) for term in terms)


def _negation(reader: _Reader) -> Predicate:
    if reader.peek("not"):
        reader.take("not")
        inner = _negation(reader)
        return lambda r: not inner(r)
    return _comparison(reader)


def _like(name: str, kind: str, pattern: str) -> Predicate:
    if kind == "regex":
        compiled = re.compile(pattern[1:-1])
    elif kind == "string":
        compiled = re.compile(re.escape(_literal(kind, pattern)))
    else:
        raise QueryError(f'like needs /regex/ or "text", found {pattern!r}')

    def test(r: dict[str, Any]) -> bool:
        return r.get(name) is not None and bool(compiled.search(str(r[name])))

    return test


def _comparison(reader: _Reader) -> Predicate:
    if reader.peek("("):
        reader.take("(")
        inner = _expression(reader)
        reader.take(")")
        return inner
    name = reader.field()
    if name.lower() == "ispresent" and reader.peek("("):
        reader.take("(")
        present = reader.field()
        reader.take(")")
        return lambda r: r.get(present) is not None
    negate = False
    if reader.peek("not"):
        reader.take("not")
        negate = True
    kind, op = reader.take()
    if op.lower() == "like":
        test = _like(name, *reader.take())
    elif op.lower() == "in":
        reader.take("[")
        values = [_literal(*reader.take())]
        while reader.peek(","):
            reader.take(",")
            values.append(_literal(*reader.take()))
        reader.take("]")

        def test(r: dict[str, Any]) -> bool:
            return any(_compare(r.get(name), "=", v) for v in values)

    elif kind == "op" and op in ("=", "!=", "<", "<=", ">", ">="):
        value = _literal(*reader.take())

        def test(r: dict[str, Any]) -> bool:
            return _compare(r.get(name), op, value)

    else:
        raise QueryError(f"expected a comparison after {name!r}, found {op!r}")
    return (lambda r: not test(r)) if negate else test


# --- stats --------------------------------------------------------------------------------
def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _aggregate(function: str, argument: str, pct: float, rows: list[dict[str, Any]]) -> Any:
    if function == "count":
        return len(rows) if argument == "*" else sum(r.get(argument) is not None for r in rows)
    if function == "count_distinct":
        return len({str(r[argument]) for r in rows if r.get(argument) is not None})
    numbers = [n for r in rows if (n := _number(r.get(argument))) is not None]
    if function == "pct":
        return _percentile(numbers, pct)
    if not numbers:
        return None
    if function == "sum":
        return sum(numbers)
    if function == "avg":
        return sum(numbers) / len(numbers)
    return min(numbers) if function == "min" else max(numbers)


def _stats(reader: _Reader) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    aggregates = []
    while True:
        function = reader.field().lower()
        if function not in _AGGREGATES:
            raise QueryError(f"unknown aggregate {function!r} (known: {', '.join(_AGGREGATES)})")
        reader.take("(")
        argument = "*" if reader.peek("*") and reader.take("*") else reader.field()
        pct = 0.0
        if function == "pct":
            reader.take(",")
            pct = _literal(*reader.take())
        reader.take(")")
        label = f"{function}({argument})"
        if reader.peek("as"):
            reader.take("as")
            label = reader.field()
        aggregates.append((label, function, argument, pct))
        if not reader.peek(","):
            break
        reader.take(",")
    groups: list[str] = []
    if reader.peek("by"):
        reader.take("by")
        groups = reader.fields()

    def run(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        buckets: dict[tuple, list[dict[str, Any]]] = {}
        for row in rows:
            buckets.setdefault(tuple(row.get(g) for g in groups), []).append(row)
        out = []
        for key, members in buckets.items():
            result = dict(zip(groups, key, strict=True))
            for label, function, argument, pct in aggregates:
                result[label] = _aggregate(function, argument, pct, members)
            out.append(result)
        return out

    return run


def _sort_key(value: Any) -> tuple:
    number = _number(value)
    if value is None:
        return (0, 0.0, "")
    return (1, number, "") if number is not None else (2, 0.0, str(value))


def _sort(reader: _Reader) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    keys = []
    while True:
        name = reader.field()
        descending = False
        if reader.peek("desc") or reader.peek("asc"):
            descending = reader.take()[1].lower() == "desc"
        keys.append((name, descending))
        if not reader.peek(","):
            break
        reader.take(",")

    def run(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for name, descending in reversed(keys):  # stable: the first key sorts last
            rows = sorted(rows, key=lambda r: _sort_key(r.get(name)), reverse=descending)
        return rows

    return run


# --- the pipeline -------------------------------------------------------------------------
def compile_query(text: str) -> Callable[[Iterable[dict[str, Any]]], list[dict[str, Any]]]:
    """The query as a function from log events (dicts) to result rows."""
    steps: list[Callable[[list[dict[str, Any]]], list[dict[str, Any]]]] = []
    shown: list[str] | None = None
    limit = DEFAULT_LIMIT
    for part in _commands(text):
        reader = _Reader(part)
        command = reader.field().lower()
        if command in ("fields", "display"):
            shown = reader.fields()
        elif command == "filter":
            keep = _expression(reader)
            steps.append(lambda rows, keep=keep: [r for r in rows if keep(r)])
        elif command == "stats":
            steps.append(_stats(reader))
            shown = None
        elif command == "sort":
            steps.append(_sort(reader))
        elif command == "limit":
            kind, value = reader.take()
            if kind != "number" or int(float(value)) < 1:
                raise QueryError(f"limit needs a positive number, found {value!r}")
            limit = int(float(value))
        else:
            raise QueryError(f"unknown command {command!r}")
        if reader.peek():
            raise QueryError(f"{command}: did not understand {reader.take()[1]!r}")

    def run(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        # @timestamp is the event's time: our JSON lines carry it as `timestamp` (ms)
        rows = [e if "@timestamp" in e else {**e, "@timestamp": e.get("timestamp")} for e in events]
        for step in steps:
            rows = step(rows)
        if shown is not None:
            rows = [{name: row.get(name) for name in shown} for row in rows]
        return rows[:limit]

    return run


def _commands(text: str) -> list[str]:
    """The query split on `|`, outside quotes and regexes."""
    parts, current, quote, escaped = [], [], "", False
    for char in text:
        if quote:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'/":
            quote = char
            current.append(char)
        elif char == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


# --- the local stack's logs as log groups ----------------------------------------------------
# Locally the gateway's one log holds the access log and, since it runs the handlers
# in-process, their log lines too; each line says which it is.
SOURCES: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "access": ("gateway.log", lambda r: "service" not in r and "route" in r and "status" in r),
    "router": ("gateway.log", lambda r: r.get("service") == "router"),
    "queue_health": ("gateway.log", lambda r: r.get("service") == "queue_health"),
    "watcher": ("watcher.log", lambda r: r.get("service") == "watcher"),
}


def local_events(state_dir: Path, groups: Sequence[str]) -> list[dict[str, Any]]:
    """The JSON lines of the local stack's logs that belong to `groups`, as Insights events:
    their fields, plus `@log` (the group), `@timestamp` (ms) and `@message` (the line)."""
    events = []
    for group in groups:
        name, belongs = SOURCES[group]
        path = state_dir / name
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and belongs(record):
                stamp = record.get("timestamp")
                events.append({**record, "@log": group, "@timestamp": stamp, "@message": line})
    return events

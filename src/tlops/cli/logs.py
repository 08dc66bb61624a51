"""`tlops local logs`: the Logs Insights queries of observability/queries/, run over the
local stand-in's logs (`tlops logs` is its alias).

    tlops local logs list
    tlops local logs query NAME [--param NAME=VALUE ...] [--json]

The observability role saves the same files as CloudWatch query definitions
(`<project>/NAME`), which an account runs in Logs Insights itself; here they run over the
local stack's JSON logs (`$TLOPS_STATE_DIR`: the gateway's access and function lines, the
watcher's), through the evaluator in tlops.local.insights. So it is a `tlops local`
command, with no `--env`: its target is always the stand-in. Exit codes: 0 with the
result (which may be empty), 6 for an unknown query, a missing parameter, or a query the
evaluator cannot run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tlops.cli.session import CliError
from tlops.cli.target import resolve


def _table(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.2f}"
    return str(value)


def _params(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--param takes NAME=VALUE, got {pair!r}")
        values[name] = value
    return values


def cmd_logs(args: argparse.Namespace) -> int:
    from tlops.local import insights
    from tlops.tooling import queries

    try:
        known = queries.load()
    except queries.QueryFileError as exc:
        raise CliError(str(exc)) from None
    if args.logs_action == "list":
        for name, query in known.items():
            params = f"  (--param {', '.join(query.params)}=...)" if query.params else ""
            print(f"{name:20} {query.title} [{', '.join(query.log_groups)}]{params}")
        return 0
    if not args.name:
        args.usage_error("query needs the NAME of a saved query: `tlops logs list` shows them")
    if args.name not in known:
        raise CliError(f"no query {args.name!r}: one of {', '.join(known)}")
    query = known[args.name]
    try:
        run = insights.compile_query(query.filled(_params(args.param)))
    except (queries.QueryFileError, insights.QueryError) as exc:
        raise CliError(str(exc)) from None
    state_dir = resolve(args, local=True).stack.state_dir
    rows = run(insights.local_events(state_dir, query.log_groups))
    if args.json:
        print(json.dumps(rows, default=str))
    elif rows:
        print(_table(rows))
    else:
        print(f"no rows (from the logs in {state_dir})", file=sys.stderr)
    return 0

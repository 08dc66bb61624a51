"""The Logs Insights queries of `observability/queries/`: one `.cwi` file each.

A file starts with header comments, then the query:

    # title: 5xx answers by route, most first
    # logGroups: access
    # params: JOB_ID            (optional: words replaced before the query runs)
    filter status >= 500 | stats count(*) as errors by route

The observability role saves each query as a query definition (the filter
`tlops_queries` calls `definitions`) over the log groups the header names, given
by alias; `tlops local logs query NAME` runs it over the local stack's logs
(tlops.local.insights). One parser, so the two cannot read a file differently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from tlops import checkout

QUERIES_DIR = checkout.ROOT / "observability" / "queries"
LOG_GROUPS = ("access", "router", "queue_health", "watcher")
# Logs that exist on the local stack only: the node's programs write theirs to files on the
# node (supervisord's, rotated), and nothing ships them to CloudWatch Logs
# (docs/decisions.md, "The node's logs stay on the node"). A saved definition leaves them out.
NODE_ONLY = ("watcher",)
_HEADER = re.compile(r"^#\s*(title|logGroups|params)\s*:\s*(.*)$")
_PARAM = re.compile(r"^[A-Z][A-Z0-9_]*$")


class QueryFileError(ValueError):
    """A query file is unusable; the message names the file and what to fix."""


class Query(NamedTuple):
    name: str
    title: str
    log_groups: tuple[str, ...]
    params: tuple[str, ...]
    text: str  # the query without its header

    def filled(self, values: Mapping[str, str]) -> str:
        """The text with each parameter replaced by its value (quotes escaped)."""
        missing = [p for p in self.params if p not in values]
        if missing:
            raise QueryFileError(
                f"query {self.name} needs {', '.join(missing)}: pass "
                + " ".join(f"--param {p}=VALUE" for p in missing)
            )
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            raise QueryFileError(f"query {self.name} has no parameter {unknown[0]}")
        text = self.text
        for param in self.params:
            text = re.sub(rf"\b{param}\b", values[param].replace('"', '\\"'), text)
        return text


def parse(name: str, source: str) -> Query:
    header: dict[str, str] = {}
    body = []
    for line in source.splitlines():
        match = _HEADER.match(line.strip())
        if match and not body:
            header[match.group(1)] = match.group(2).strip()
        elif line.strip().startswith("#"):
            continue
        elif line.strip():
            body.append(line.rstrip())
    groups = tuple(g.strip() for g in header.get("logGroups", "").split(",") if g.strip())
    if not groups:
        raise QueryFileError(f"{name}.cwi: a '# logGroups:' line must name its log groups")
    unknown = [g for g in groups if g not in LOG_GROUPS]
    if unknown:
        raise QueryFileError(
            f"{name}.cwi: unknown log group {unknown[0]!r} (known: {', '.join(LOG_GROUPS)})"
        )
    params = tuple(p.strip() for p in header.get("params", "").split(",") if p.strip())
    for param in params:
        if not _PARAM.match(param):
            raise QueryFileError(f"{name}.cwi: parameter {param!r} must be UPPER_CASE")
    if not body:
        raise QueryFileError(f"{name}.cwi holds no query")
    return Query(name, header.get("title", name), groups, params, "\n".join(body))


def load(directory: Path = QUERIES_DIR) -> dict[str, Query]:
    """Every query of the directory, by name (the file name without `.cwi`)."""
    return {
        path.stem: parse(path.stem, path.read_text()) for path in sorted(directory.glob("*.cwi"))
    }


def definitions(
    directory: Path | str, log_groups: Mapping[str, str], prefix: str
) -> list[dict[str, object]]:
    """What the role saves: name `<prefix>/<query>`, the text, the log groups' real names.
    The node's own logs are not in CloudWatch: a query over them alone is not saved."""
    out = []
    for query in load(Path(directory)).values():
        shipped = [g for g in query.log_groups if g not in NODE_ONLY]
        if not shipped:
            continue
        missing = [g for g in shipped if not log_groups.get(g)]
        if missing:
            raise QueryFileError(f"{query.name}: no log group name given for {missing[0]!r}")
        out.append(
            {
                "name": f"{prefix}/{query.name}",
                "query_string": query.text,
                "log_group_names": sorted(log_groups[g] for g in shipped),
            }
        )
    return out

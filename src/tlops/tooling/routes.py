"""The route table, read from openapi.yaml: the one place routes are written down.

Each operation of openapi.yaml that carries `x-tlops-function` is a route of
the HTTP API: its method and path make the route key, the extension names the
Lambda function behind it, and a non-empty `security` puts the JWT authorizer
in front of it. Three things follow from that one table:

- the router role's HTTP API (the `tlops.stack.tlops_routes` filter);
- `tlops.edge.routes`, the router's dispatch and the local gateway's default
  routes: its table is generated here (`make routes`, or
  `python -m tlops.tooling.routes --write`) because the router cannot afford to
  parse YAML on a cold start; `--check` fails when it drifts (a test runs it);
- the local gateway on the stand-in, which serves what the router role deployed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tlops import checkout
from tlops.tooling import generated

OPENAPI = checkout.ROOT / "openapi.yaml"
ROUTES_MODULE = Path(__file__).resolve().parents[1] / "edge" / "routes.py"
FUNCTION = "x-tlops-function"
BEGIN = "# --- generated from openapi.yaml by `make routes`; do not edit by hand ---\n"
END = "# --- end of the generated table ---\n"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


class RouteTableError(ValueError):
    """openapi.yaml does not describe a usable route table; the message says where."""


def load_spec(path: Path = OPENAPI) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text())


def routes_from_openapi(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every routed operation as {method, path, operation, function, authorized}, sorted."""
    default_security = spec.get("security") or []
    routes = []
    for path, item in (spec.get("paths") or {}).items():
        for method, operation in item.items():
            if method not in _METHODS or FUNCTION not in operation:
                continue
            where = f"{method.upper()} {path}"
            function = operation[FUNCTION]
            if not isinstance(function, str) or not function.isidentifier():
                raise RouteTableError(f"{where}: {FUNCTION} must name a function, got {function!r}")
            if not operation.get("operationId"):
                raise RouteTableError(
                    f"{where}: an operationId is needed (the router dispatches on it)"
                )
            security = operation.get("security", default_security)
            routes.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "operation": operation["operationId"],
                    "function": function,
                    "authorized": bool(security),
                }
            )
    if not routes:
        raise RouteTableError(f"no operation carries {FUNCTION}")
    return sorted(routes, key=lambda r: (r["path"], r["method"]))


def http_api_routes(spec: dict[str, Any]) -> list[dict[str, str]]:
    """The routes in tl_http_api's shape: route_key, integration, authorization."""
    return [
        {
            "route_key": f"{r['method']} {r['path']}",
            "integration": r["function"],
            "authorization": "jwt" if r["authorized"] else "none",
        }
        for r in routes_from_openapi(spec)
    ]


def render(routes: list[dict[str, Any]]) -> str:
    lines = [BEGIN, "ROUTES: tuple[Route, ...] = (\n"]
    for r in routes:
        lines.append(
            f'    Route("{r["method"]}", "{r["path"]}", "{r["operation"]}", '
            f'"{r["function"]}", authorized={r["authorized"]}),\n'
        )
    lines += [")\n", END]
    return "".join(lines)


def regenerated(module_text: str, spec: dict[str, Any]) -> str:
    """`module_text` with its generated block replaced by the table from `spec`."""
    head, begin, rest = module_text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise RouteTableError(f"{ROUTES_MODULE} lost its generated-block markers")
    return head + render(routes_from_openapi(spec)) + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlops.tooling.routes", description=__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite tlops/edge/routes.py")
    action.add_argument("--check", action="store_true", help="exit 1 when it differs")
    args = parser.parse_args(argv)
    wanted = regenerated(ROUTES_MODULE.read_text(), load_spec())
    return generated.write_or_check(
        ROUTES_MODULE, wanted, write=args.write, source="openapi.yaml", target="routes"
    )


if __name__ == "__main__":
    sys.exit(main())

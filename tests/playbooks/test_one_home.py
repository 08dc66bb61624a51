"""Ideas that ansible-core or the Lambda cold start make us write twice are held equal here.

- `module_defaults` cannot be shared between playbooks (no include carries it),
  so every cloud playbook repeats the same block; the copies must not drift.
- The router dispatches on a table generated from openapi.yaml (it cannot
  parse YAML on a cold start); the generated table must be openapi.yaml's, and
  the router role must build its HTTP API from the same file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tlops.edge import routes
from tlops.edge.router import Router
from tlops.tooling import routes as route_table

REPO = Path(__file__).resolve().parents[2]
CLOUD_PLAYBOOKS = sorted(
    path
    for path in (REPO / "playbooks").glob("*.yml")
    if "module_defaults" in path.read_text() and yaml.safe_load(path.read_text())
)


def module_defaults(path: Path) -> list[dict]:
    return [play["module_defaults"] for play in yaml.safe_load(path.read_text())]


def test_there_are_several_cloud_playbooks_to_compare():
    assert {"deploy.yml", "teardown.yml", "status.yml"} <= {p.name for p in CLOUD_PLAYBOOKS}


@pytest.mark.parametrize("playbook", CLOUD_PLAYBOOKS, ids=lambda p: p.name)
def test_module_defaults_are_the_same_in_every_cloud_playbook(playbook: Path):
    reference = module_defaults(REPO / "playbooks" / "deploy.yml")[0]
    for block in module_defaults(playbook):
        assert block == reference, f"{playbook.name}: module_defaults differ from deploy.yml's"


def test_every_custom_module_gets_the_connection_defaults():
    reference = module_defaults(REPO / "playbooks" / "deploy.yml")[0]
    modules = {path.stem for path in (REPO / "library").glob("tl_*.py")}
    assert modules <= set(reference), f"missing: {sorted(modules - set(reference))}"


def test_the_generated_route_table_is_openapi_yamls():
    module = route_table.ROUTES_MODULE.read_text()
    assert route_table.regenerated(module, route_table.load_spec()) == module, (
        "src/tlops/edge/routes.py differs from openapi.yaml: run `make routes`"
    )
    assert route_table.main(["--check"]) == 0


def test_the_check_fails_when_the_table_drifts(tmp_path, monkeypatch):
    drifted = tmp_path / "routes.py"
    text = route_table.ROUTES_MODULE.read_text()
    drifted.write_text(text.replace('"/ping"', '"/pong"'))
    monkeypatch.setattr(route_table, "ROUTES_MODULE", drifted)
    assert route_table.main(["--check"]) == 1


def test_the_router_serves_exactly_its_routes_in_the_table():
    served = routes.of_function("router")
    assert served, "no route of openapi.yaml names the router"
    for operation in served.values():
        assert callable(getattr(Router, routes.method_name(operation), None)), operation


def test_the_router_role_reads_its_routes_from_openapi_yaml():
    configure = (REPO / "roles/router/tasks/configure.yml").read_text()
    assert "tlops_routes" in configure
    assert "route_key:" not in configure, "routes spelled in the role: take them from openapi.yaml"
    spec = route_table.load_spec()
    keys = {r["route_key"] for r in route_table.http_api_routes(spec)}
    assert keys == {route.key for route in routes.ROUTES}


def test_a_routed_operation_without_an_id_is_refused():
    spec = {"paths": {"/x": {"get": {"x-tlops-function": "router"}}}}
    with pytest.raises(route_table.RouteTableError, match="operationId"):
        route_table.routes_from_openapi(spec)

"""Ideas that ansible-core or the Lambda cold start make us write twice are held equal here.

- `module_defaults` cannot be shared between playbooks (no include carries it),
  so every cloud playbook repeats the same block; the copies must not drift. The
  custom modules take it through one entry, the action group `group/tlops.stack.aws`
  of the collection's meta/runtime.yml, which must list every module it holds.
- The router dispatches on a table generated from openapi.yaml (it cannot
  parse YAML on a cold start); the generated table must be openapi.yaml's, and
  the router role must build its HTTP API from the same file.
- The shared names live in tlops.contract.names; the cloud roles read the file
  generated from it (playbooks/group_vars/all/names.yml), and the spellings that
  cannot come from a variable (the node roles' defaults, which Molecule runs
  alone; Packer's HCL; access.yml, read by Python too) must equal the Python ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tlops.contract import names
from tlops.edge import routes
from tlops.edge.router import Router
from tlops.tooling import names as names_file
from tlops.tooling import routes as route_table

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "collections" / "ansible_collections" / "tlops" / "stack"
GROUP = "group/tlops.stack.aws"
CUSTOM_MODULES = sorted(path.stem for path in (COLLECTION / "plugins" / "modules").glob("tl_*.py"))
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml"))
CLOUD_PLAYBOOKS = sorted(
    path
    for path in PLAYBOOKS
    if "module_defaults" in path.read_text() and yaml.safe_load(path.read_text())
)
INCLUDES = {f"{prefix}{verb}_{what}" for prefix in ("", "ansible.builtin.")
            for verb in ("import", "include") for what in ("tasks", "role")}  # fmt: skip


def module_defaults(path: Path) -> list[dict]:
    return [play["module_defaults"] for play in yaml.safe_load(path.read_text())]


def _tasks_and_roles(node, base: Path, tasks: list, roles: set) -> None:
    """The tasks under `node`, and the roles it names (`roles:`, include/import_role)."""
    if isinstance(node, list):
        for item in node:
            _tasks_and_roles(item, base, tasks, roles)
        return
    if not isinstance(node, dict):
        return
    tasks.append(node)
    for key, value in node.items():
        if key == "roles":
            roles.update(r if isinstance(r, str) else r.get("role", r.get("name")) for r in value)
        elif key in INCLUDES and key.endswith("_role"):
            roles.add(value["name"])
        elif key in INCLUDES and isinstance(value, str) and "{{" not in value:
            # a tasks file's own imports are found beside it (Ansible looks there first)
            included = base / value
            _tasks_and_roles(yaml.safe_load(included.read_text()), included.parent, tasks, roles)
        elif key in {"pre_tasks", "tasks", "post_tasks", "handlers", "block", "rescue", "always"}:
            _tasks_and_roles(value, base, tasks, roles)


def custom_modules_called(play: dict) -> set[str]:
    """The tl_* modules a play's tasks call, its roles' (every task file) included."""
    tasks: list[dict] = []
    roles: set[str] = set()
    _tasks_and_roles(play, REPO / "playbooks", tasks, roles)
    seen: set[str] = set()
    while roles - seen:
        role = (roles - seen).pop()
        seen.add(role)
        for path in sorted((REPO / "roles" / role / "tasks").glob("*.yml")):
            _tasks_and_roles(yaml.safe_load(path.read_text()), path.parent, tasks, roles)
    names = {key.removeprefix("tlops.stack.") for task in tasks for key in task}
    return names & set(CUSTOM_MODULES)


def all_plays():
    for path in PLAYBOOKS:
        for play in yaml.safe_load(path.read_text()) or []:
            yield path, play


def test_there_are_several_cloud_playbooks_to_compare():
    assert {"deploy.yml", "teardown.yml", "status.yml"} <= {p.name for p in CLOUD_PLAYBOOKS}


@pytest.mark.parametrize("playbook", CLOUD_PLAYBOOKS, ids=lambda p: p.name)
def test_module_defaults_are_the_same_in_every_cloud_playbook(playbook: Path):
    reference = module_defaults(REPO / "playbooks" / "deploy.yml")[0]
    for block in module_defaults(playbook):
        assert block == reference, f"{playbook.name}: module_defaults differ from deploy.yml's"


def test_the_action_group_lists_exactly_the_collections_modules():
    runtime = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())
    group = runtime["action_groups"]["aws"]
    assert CUSTOM_MODULES, "tlops.stack holds no tl_* module"
    assert sorted(group) == CUSTOM_MODULES, (
        f"meta/runtime.yml's aws group: missing {sorted(set(CUSTOM_MODULES) - set(group))}, "
        f"unknown {sorted(set(group) - set(CUSTOM_MODULES))}"
    )


@pytest.mark.parametrize("playbook", CLOUD_PLAYBOOKS, ids=lambda p: p.name)
def test_the_custom_modules_get_the_connection_through_their_group(playbook: Path):
    for block in module_defaults(playbook):
        assert block.get(GROUP) == block["group/amazon.aws.aws"], (
            f"{playbook.name}: {GROUP} must carry amazon.aws' connection options"
        )
        named = sorted(key for key in block if key.removeprefix("tlops.stack.") in CUSTOM_MODULES)
        assert not named, f"{playbook.name}: {named} named one by one; the group covers them"


def test_every_play_that_calls_a_custom_module_has_the_group():
    calling = []
    for path, play in all_plays():
        called = custom_modules_called(play)
        if called:
            calling.append(path.name)
            assert GROUP in play.get("module_defaults", {}), (
                f"{path.name}, play {play.get('name')!r}: calls {sorted(called)} without {GROUP}"
            )
    assert {"deploy.yml", "teardown.yml", "verify.yml", "bake_ami.yml"} <= set(calling)


def test_the_custom_modules_are_called_by_their_fqcn():
    bare = []
    for path, play in all_plays():
        tasks: list[dict] = []
        _tasks_and_roles(play, REPO / "playbooks", tasks, set())
        bare += [f"{path.name}: {key}" for task in tasks for key in task if key in CUSTOM_MODULES]
    for path in sorted((REPO / "roles").glob("*/tasks/*.yml")):
        tasks = []
        _tasks_and_roles(yaml.safe_load(path.read_text()), path.parent, tasks, set())
        bare += [f"{path.relative_to(REPO)}: {key}" for task in tasks for key in task
                 if key in CUSTOM_MODULES]  # fmt: skip
    assert not bare, f"call them as tlops.stack.<name>: {bare}"


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


# --- the shared names ------------------------------------------------------------------
def test_the_generated_names_file_is_tlops_contract_names():
    assert names_file.main(["--check"]) == 0, "run `make names`"
    loaded = yaml.safe_load(names_file.NAMES_FILE.read_text())["tlops_names"]
    assert loaded == names.for_yaml()
    assert isinstance(loaded["ubuntu_owner"], str)  # an account id, never a number


def test_the_names_check_fails_when_the_file_drifts(monkeypatch, tmp_path):
    drifted = tmp_path / "names.yml"
    drifted.write_text(names_file.rendered().replace("TLFIF", "TLFIF2"))
    monkeypatch.setattr(names_file, "NAMES_FILE", drifted)
    assert names_file.main(["--check"]) == 1


def hcl_value(path: Path, key: str, after: str = "") -> str:
    """The quoted value of the first `key = "..."` line of an HCL file (after the line that
    starts with `after`, when given)."""
    lines = path.read_text().splitlines()
    if after:
        lines = lines[next(i for i, line in enumerate(lines) if line.startswith(after)) :]
    for line in lines:
        left, _, right = line.partition("=")
        if left.strip() == key and right.strip().startswith('"'):
            return right.strip().strip('"')
    raise AssertionError(f'{path.name}: no {key} = "..."')


def role_default(role: str, name: str):
    return yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())[name]


def spec_default(role: str, name: str):
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"][name]["default"]


@pytest.mark.parametrize(
    ("where", "spelled", "expected"),
    [
        ("supervisor defaults",
         lambda: role_default("supervisor", "supervisor_deployment_parameter"),
         names.NODE_SETTINGS_PARAMETER),
        ("supervisor argument_specs",
         lambda: spec_default("supervisor", "supervisor_deployment_parameter"),
         names.NODE_SETTINGS_PARAMETER),
        ("supervisor key default",
         lambda: role_default("supervisor", "supervisor_deployment_key_parameter"),
         names.NODE_INFERENCE_KEY_PARAMETER),
        ("supervisor key argument_specs",
         lambda: spec_default("supervisor", "supervisor_deployment_key_parameter"),
         names.NODE_INFERENCE_KEY_PARAMETER),
        ("packer owner", lambda: hcl_value(REPO / "packer" / "locals.pkr.hcl", "canonical_owner"),
         names.UBUNTU_OWNER),
        ("packer Role tag", lambda: hcl_value(REPO / "packer" / "locals.pkr.hcl", "Role"),
         names.NODE_ROLE),
        ("packer image name", lambda: hcl_value(REPO / "packer" / "variables.pkr.hcl", "default",
                          'variable "source_ami_name"'),
         names.UBUNTU_IMAGE_NAME),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)  # fmt: skip
def test_a_literal_spelling_of_a_shared_name_is_the_python_one(where, spelled, expected):
    assert spelled() == expected, f"{where} spells it differently from tlops.contract.names"


def test_access_yml_names_the_project_namespace_and_the_node_role():
    text = (REPO / "access.yml").read_text()
    namespaces = {line.split("cloudwatch:namespace:")[1].strip(" }")
                  for line in text.splitlines() if "cloudwatch:namespace:" in line}  # fmt: skip
    assert namespaces == {names.METRIC_NAMESPACE}
    assert f"Role: {names.NODE_ROLE}}}" in text
    assert f"Role: {names.BAKE_ROLE}}}" in text  # the killer's leave to terminate a bake


def test_no_role_or_playbook_spells_a_generated_name_again():
    """Outside the generated file, the cloud side reads tlops_names: the namespace, the
    image owner and the parameter paths appear nowhere else in playbooks/ and the cloud
    roles (comments and READMEs aside)."""
    node_roles = {"cuda", "idle_watchdog", "nginx_tls", "supervisor", "vllm", "watcher"}
    spelled = (names.METRIC_NAMESPACE, names.UBUNTU_OWNER, names.LATEST_IMAGE_PARAMETER,
               names.NODE_SETTINGS_PARAMETER, names.NODE_INFERENCE_KEY_PARAMETER)  # fmt: skip
    found = []
    for path in [*(REPO / "playbooks").rglob("*.yml"), *(REPO / "roles").rglob("*")]:
        if not path.is_file() or path.suffix not in (".yml", ".j2", ".json"):
            continue
        if path == names_file.NAMES_FILE or "argument_specs" in path.name:
            continue
        if (
            path.is_relative_to(REPO / "roles")
            and path.relative_to(REPO / "roles").parts[0] in node_roles
        ):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
            found += [f"{path.relative_to(REPO)}:{number}" for name in spelled if name in code]
    assert not found, f"spelled again instead of read from tlops_names: {found}"

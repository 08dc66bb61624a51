"""Every role's argument spec matches its defaults: the spec is what preflight validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
SPECCED = sorted(path.parent.parent for path in ROLES.glob("*/meta/argument_specs.yml"))


def test_the_cloud_roles_have_specs() -> None:
    assert {"network", "storage", "gpu_node"} <= {role.name for role in SPECCED}


@pytest.mark.parametrize("role", SPECCED, ids=lambda role: role.name)
def test_spec_matches_defaults(role: Path) -> None:
    defaults = yaml.safe_load((role / "defaults/main.yml").read_text()) or {}
    specs = yaml.safe_load((role / "meta/argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"]["options"]
    assert set(options) == set(defaults), f"{role.name}: spec and defaults list other variables"
    for name, option in options.items():
        assert name.startswith(role.name + "_"), f"{name} is not prefixed with {role.name}_"
        assert option.get("description"), f"{name} has no description"
        assert option.get("default") == defaults[name], f"{name}: spec default differs"
    for entry, spec in specs.items():  # other entry points reuse main's definitions
        for name, option in (spec.get("options") or {}).items():
            assert option == options[name], f"{role.name}:{entry} redefines {name}"

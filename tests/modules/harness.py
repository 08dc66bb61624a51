"""Run a tlops.stack module in-process, the way Ansible would, and return its JSON result.

The module's arguments are fed through `ansible.module_utils.basic._ANSIBLE_ARGS`
(what AnsiballZ does), its exit is caught, and its stdout parsed. The repository's
`collections/` is put on the import path: `ansible_collections` is a namespace package
(amazon.aws comes from the venv's), so the modules and their code import as they do
under ansible-playbook, `ansible_collections.tlops.stack.plugins.module_utils.tl_aws`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ansible.module_utils import basic
from ansible.module_utils.common import warnings

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "collections"
COLLECTION = COLLECTIONS / "ansible_collections" / "tlops" / "stack"
MODULES_DIR = COLLECTION / "plugins" / "modules"
UTILS_DIR = COLLECTION / "plugins" / "module_utils"
PACKAGE = "ansible_collections.tlops.stack.plugins"
if str(COLLECTIONS) not in sys.path:
    sys.path.append(str(COLLECTIONS))


def module_names() -> list[str]:
    """Every tl_* module of the collection, by its short name."""
    return sorted(path.stem for path in MODULES_DIR.glob("tl_*.py"))


def code(name: str) -> ModuleType:
    """A module's code, as the module imports it: `code("tl_budget.validate")`."""
    return importlib.import_module(f"{PACKAGE}.module_utils.{name}")


def filter_function(plugin: str, name: str):
    """A filter of the collection, as Ansible finds it: `filter_function("tlops_cidrs", ...)`."""
    return getattr(importlib.import_module(f"{PACKAGE}.filter.{plugin}"), name)


def load(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.modules.{name}")


class ModuleFailed(AssertionError):
    def __init__(self, result: dict[str, Any]):
        super().__init__(result.get("msg", result))
        self.result = result


def warned(result: dict[str, Any], text: str) -> bool:
    """Whether one of the module's warnings contains `text`."""
    for warning in result.get("warnings", []):
        message = warning["event"]["msg"] if isinstance(warning, dict) else str(warning)
        if text in message:
            return True
    return False


def run_module(
    name: str, args: dict[str, Any], *, check: bool = False, diff: bool = True
) -> dict[str, Any]:
    """The module's result; raises ModuleFailed (with `.result`) when it failed."""
    payload = {
        "ANSIBLE_MODULE_ARGS": {
            **args,
            "_ansible_check_mode": check,
            "_ansible_diff": diff,
            "_ansible_module_name": name,
        }
    }
    # ansible-core keeps warnings process-wide; each run starts with none, as it would
    # in its own process under ansible-playbook.
    warnings._global_warnings.clear()
    warnings._global_deprecations.clear()
    basic._ANSIBLE_ARGS = json.dumps(payload).encode()
    basic._ANSIBLE_PROFILE = "legacy"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        load(name).main()
    basic._ANSIBLE_ARGS = None
    text = out.getvalue()
    try:
        result = json.loads(text[text.index("{") :])
    except ValueError as exc:
        raise AssertionError(f"{name} printed no JSON result: {text!r}") from exc
    if result.get("failed"):
        raise ModuleFailed(result)
    return result


__all__ = [
    "ModuleFailed",
    "code",
    "filter_function",
    "load",
    "module_names",
    "run_module",
    "warned",
]

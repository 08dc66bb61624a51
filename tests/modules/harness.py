"""Run a library/ module in-process, the way Ansible would, and return its JSON result.

The module's arguments are fed through `ansible.module_utils.basic._ANSIBLE_ARGS`
(what AnsiballZ does), its exit is caught, and its stdout parsed. The repository's
module_utils/ is added to `ansible.module_utils` so `ansible.module_utils.tl_aws`
resolves as it does under ansible-playbook.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import ansible.module_utils
from ansible.module_utils import basic
from ansible.module_utils.common import warnings

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(REPO / "module_utils"))

_loaded: dict[str, ModuleType] = {}


def load(name: str) -> ModuleType:
    if name not in _loaded:
        spec = importlib.util.spec_from_file_location(name, REPO / "library" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded[name] = module
    return _loaded[name]


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


__all__ = ["ModuleFailed", "load", "run_module", "warned"]

"""Every custom module documents itself the way ansible-doc renders, with examples and return."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .harness import REPO, load, module_names

MODULES = module_names()
ANSIBLE_DOC = Path(sys.executable).with_name("ansible-doc")


def test_there_are_modules_to_check():
    assert MODULES, "tlops.stack holds no tl_* module"


@pytest.mark.parametrize("name", MODULES)
def test_ansible_doc_renders(name: str):
    done = subprocess.run(
        [str(ANSIBLE_DOC), "--json", f"tlops.stack.{name}"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)[f"tlops.stack.{name}"]
    assert doc["doc"]["short_description"]
    assert doc["examples"].strip()
    assert doc["return"], f"{name} has no RETURN"
    assert "endpoint_url" in doc["doc"]["options"], "amazon.aws connection fragments missing"


@pytest.mark.parametrize("name", MODULES)
def test_documented_options_match_the_argument_spec(name: str, monkeypatch):
    module = load(name)
    documented = set(yaml.safe_load(module.DOCUMENTATION)["options"])
    captured: dict = {}

    class Stop(Exception):
        pass

    def capture(**kwargs):
        captured.update(kwargs["argument_spec"])
        raise Stop

    monkeypatch.setattr(module, "AnsibleAWSModule", capture)
    with pytest.raises(Stop):
        module.main()
    assert set(captured) == documented

"""The node's programs run on Python 3.11 (Ubuntu 22.04's and Debian 12's), the rest on 3.12.

The watcher role installs the package into a 3.11 venv on an instance, so everything the
node imports must at least compile there: the vLLM venv's interpreter is a 3.11.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tlops.local import vllm
from tlops.local.services import ServiceError

SRC = Path(__file__).resolve().parents[2] / "src" / "tlops"
NODE_PACKAGES = ("node", "contract", "common")


def python311() -> Path:
    try:
        python = vllm.vllm_python()
    except ServiceError:
        pytest.fail("no vLLM venv: `make test` installs it (`make vllm`); it is the 3.11 here")
    version = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    assert version == "3.11", f"the vLLM venv runs Python {version}, not the node's 3.11"
    return python


def test_the_nodes_modules_compile_on_python_3_11(tmp_path):
    python = python311()
    done = subprocess.run(
        [str(python), "-m", "compileall", "-q", "-f",
         *(str(SRC / name) for name in NODE_PACKAGES)],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PYTHONPYCACHEPREFIX": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

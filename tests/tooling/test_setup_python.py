"""Setup without the Python it needs says how to get it, and makes nothing (issue 22: a
fresh machine without Python 3.12 or 3.11 used to stop at "command not found")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("target", "variable", "version"),
    [("venv", "PYTHON312", "3.12"), ("vllm", "PYTHON311", "3.11")],
)
@pytest.mark.parametrize("interpreter", ["/nonexistent/python", "/bin/false"])
def test_a_missing_interpreter_is_named_with_the_ways_to_get_it(
    tmp_path: Path, target: str, variable: str, version: str, interpreter: str
) -> None:
    venv = tmp_path / "venv"
    made = venv if target == "venv" else tmp_path / "vllm"
    goal = f"{made}/bin/python" if target == "venv" else f"{made}/.installed"
    if target == "vllm":  # the control venv counts as made: only the 3.11 one is asked for
        (venv / "bin").mkdir(parents=True)
        (venv / "bin/python").symlink_to(sys.executable)
        (tmp_path / "uv-stamp").touch()
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), goal, f"{variable}={interpreter}",
         f"VENV={venv}", f"BIN={venv}/bin", f"VLLM_VENV={tmp_path}/vllm",
         f"VLLM_STAMP={tmp_path}/vllm/.installed", f"UV_STAMP={tmp_path}/uv-stamp"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"Python {version} is needed" in said
    for way in (f"uv python install {version}", f"pyenv install {version}", f"{variable}="):
        assert way in said, said
    assert "command not found" not in said
    assert not made.exists()

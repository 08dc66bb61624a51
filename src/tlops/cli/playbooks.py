"""Running the repository's playbooks from Python: a thin wrapper around ansible-playbook.

`tlops demo` and the tests run `deploy.yml` and `teardown.yml` exactly as an
operator types them, from the checkout, with the venv's ansible-playbook; the
local stack's endpoints reach the local inventory through the environment
(`tlops local env`), so a stack on other ports is found as well.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tlops import checkout
from tlops.cli.session import CliError

if TYPE_CHECKING:
    from tlops.local.stack import LocalStack


def ansible_playbook() -> Path:
    binary = Path(sys.executable).with_name("ansible-playbook")
    if not binary.exists():
        raise CliError(f"{binary} is missing: run `make setup` (it installs ansible)")
    return binary


def run(
    name: str,
    *,
    env: Mapping[str, str] | None = None,
    extra_vars: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    capture: bool = False,
    timeout: float = 1800,
) -> subprocess.CompletedProcess:
    """`ansible-playbook playbooks/<name>` from the checkout; its output streams unless captured."""
    command = [str(ansible_playbook()), f"playbooks/{name}", *args]
    for key, value in (extra_vars or {}).items():
        command += ["-e", f"{key}={value}"]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        command,
        cwd=checkout.ROOT,
        env={**os.environ, "PATH": path, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=capture,
        text=True,
        timeout=timeout,
        check=False,
    )


def deploy_local(stack: LocalStack) -> dict:
    """`deploy.yml` against a running local stack, quietly; the deploy outputs it wrote.
    Raises CliError with the playbook's last lines when it fails."""
    done = run("deploy.yml", env=stack.env(), capture=True)
    if done.returncode != 0:
        raise CliError(f"deploy.yml failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")
    outputs = stack.outputs()
    if not outputs.get("user_pool_id"):
        raise CliError(f"deploy.yml wrote no outputs to {stack.state_dir}")
    return outputs

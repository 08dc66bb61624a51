"""The node's supervisord as the local stack sees it: where it is and what its programs do.

Its configuration is the supervisor role's (playbooks/node.yml writes it); nothing here
writes one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tlops.local.services import ServiceError

# The node's programs, as the node roles name them (the idle watchdog only on the local node).
SUPERVISOR_PROGRAMS = ("vllm", "nginx", "watcher", "boot", "idle-watchdog")


def supervisord_binary() -> str:
    binary = shutil.which("supervisord") or shutil.which("supervisord", path="/usr/bin")
    if binary is None:
        raise ServiceError("supervisord is not installed: run `make setup`")
    return binary


def supervisor_states(config: Path) -> dict[str, str]:
    """Each program's state (RUNNING, STARTING, BACKOFF, ...) as supervisorctl reports it."""
    binary = shutil.which("supervisorctl") or shutil.which("supervisorctl", path="/usr/bin")
    if binary is None:
        return {}
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [binary, "-c", str(config), "status"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {}
    states = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in SUPERVISOR_PROGRAMS:
            states[parts[0]] = parts[1]
    return states

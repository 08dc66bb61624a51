"""Local stacks for tests: on free ports under a test's own state directory, deployed the
way an operator does (deploy.yml, for real), and checks that their processes are gone."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tlops.local.stack
from tlops.local.stack import DEFAULT_PORTS, LocalStack, free_port

PORT_NAMES = tuple(DEFAULT_PORTS)  # read before any test patches DEFAULT_PORTS


def free_ports() -> dict[str, int]:
    return {name: free_port() for name in PORT_NAMES}


def patch_stack_env(mp: pytest.MonkeyPatch, state_dir: Path) -> dict[str, int]:
    """Point `LocalStack()` at `state_dir` and free ports; whatever `up` and `token` put in
    os.environ (the stand-in's endpoint and dummy keys) is undone with `mp`."""
    ports = free_ports()
    mp.setattr(tlops.local.stack, "DEFAULT_PORTS", ports)
    mp.setenv("TLOPS_STATE_DIR", str(state_dir))
    for name, value in LocalStack(state_dir=state_dir, ports=ports).aws_env().items():
        mp.setenv(name, value)
    return ports


def new_stack(state_dir: Path, *, inference: bool = False) -> LocalStack:
    """A stack object on free ports under `state_dir` (nothing started yet)."""
    return LocalStack(state_dir=state_dir, ports=free_ports(), inference=inference)


@contextlib.contextmanager
def stack_env(stack: LocalStack) -> Iterator[None]:
    """TLOPS_STATE_DIR for the stack; `up` points os.environ at its stand-in, undo that after."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLOPS_STATE_DIR", str(stack.state_dir))
        for name, value in stack.aws_env().items():
            mp.setenv(name, value)  # recorded now, so the originals come back on exit
        yield


def pid_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once `pid` and its process group no longer exist (zombies of ours are reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            try:
                os.killpg(pid, 0)  # each service leads its own session, so pgid == pid
            except ProcessLookupError:
                return True
        time.sleep(0.05)
    return False

"""What the scenarios' testinfra checks share: the container, its address, supervisord.

Molecule runs each scenario's `tests/` with pytest on the controller. The `host`
fixture here replaces testinfra's own: it drives the scenario's one container
with `podman exec` (testinfra's podman backend) instead of one Ansible run per
command, which is what testinfra does with Molecule's podman inventory.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import testinfra
import yaml

# The node's supervisord, as the supervisor role's defaults place it.
SUPERVISORCTL = "/usr/bin/supervisorctl -c /etc/tlops/supervisord.conf"


def _instance_name() -> str:
    """The one host of the scenario's inventory (molecule.yml's platform)."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        raise pytest.UsageError("run these checks through molecule (MOLECULE_INVENTORY_FILE unset)")
    hosts: list[str] = []

    def walk(group: dict) -> None:
        hosts.extend((group.get("hosts") or {}).keys())
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(yaml.safe_load(Path(inventory).read_text()).get("all", {}))
    names = sorted(set(hosts))
    if len(names) != 1:
        raise pytest.UsageError(f"expected one instance in {inventory}, found {names}")
    return names[0]


@pytest.fixture(scope="session")
def instance() -> str:
    return _instance_name()


@pytest.fixture(scope="session")
def host(instance: str):
    return testinfra.get_host(f"podman://{instance}")


@pytest.fixture(scope="session")
def address(instance: str) -> str:
    """The container's own address on podman's network: what a client off the node reaches."""
    out = subprocess.run(
        ["podman", "inspect", "--format", "{{json .NetworkSettings}}", instance],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    settings = json.loads(out)
    ip = settings.get("IPAddress") or next(
        (
            net["IPAddress"]
            for net in (settings.get("Networks") or {}).values()
            if net.get("IPAddress")
        ),
        "",
    )
    assert ip, f"{instance} has no address on podman's network: {settings}"
    return ip


@pytest.fixture(scope="session")
def supervisor(host) -> Callable[[], dict[str, str]]:
    """`supervisorctl status` as {program: state} (it exits 3 when one is not RUNNING)."""

    def states() -> dict[str, str]:
        result = host.run(f"{SUPERVISORCTL} status")
        assert result.rc in (0, 3), result.stderr or result.stdout
        return {
            parts[0]: parts[1]
            for parts in (line.split() for line in result.stdout.splitlines())
            if len(parts) >= 2
        }

    return states


@pytest.fixture(scope="session")
def eventually() -> Callable[..., object]:
    """`eventually(check, within_s=...)`: call `check` until it returns something true or the
    time is up; returns its last value (the caller asserts on it)."""

    def poll(check: Callable[[], object], *, within_s: float, every_s: float = 0.5) -> object:
        deadline = time.monotonic() + within_s
        while True:
            value = check()
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(every_s)

    return poll

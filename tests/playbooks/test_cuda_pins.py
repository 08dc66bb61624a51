"""The cuda role's checks of its pins, on this machine, with `apt-cache` played by a script.

What the bake installs with apt (the running kernel's headers, the pinned driver and CUDA
runtime) is checked against `apt-cache madison` before anything is installed, and the
preflight refuses a driver branch that cannot run the CUDA the node's torch wheel needs.
No apt, no GPU: a fake `apt-cache` on PATH answers from a table and records each question.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.playbooks.role_play import Run, include, play

pytestmark = pytest.mark.integration

KERNEL = "6.8.0-1029-aws"
UBUNTU = {
    "ansible_distribution": "Ubuntu",
    "ansible_distribution_version": "22.04",
    "ansible_distribution_major_version": "22",
    "ansible_kernel": KERNEL,
}
DEBIAN = {
    "ansible_distribution": "Debian",
    "ansible_distribution_version": "12.7",
    "ansible_distribution_major_version": "12",
    "ansible_kernel": "6.1.0-26-cloud-amd64",
}
NVIDIA = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64  Packages"
ARCHIVE = "http://eu-west-1.ec2.archive.ubuntu.com/ubuntu jammy-updates/main amd64 Packages"


def madison(package: str, *versions: str, source: str = NVIDIA) -> str:
    return "".join(f"{package:>24} | {version} | {source}\n" for version in versions)


# What apt offers on a bake instance where every pin is right.
HEADERS = f"linux-headers-{KERNEL}"
OFFERED = {
    HEADERS: madison(HEADERS, "6.8.0-1029.31~22.04.1", source=ARCHIVE),
    "cuda-drivers-580": madison("cuda-drivers-580", "580.95.05-1", "580.82.07-1", "580.65.06-1"),
    "cuda-cudart-12-8": madison("cuda-cudart-12-8", "12.8.90-1", "12.8.57-1"),
}


def fake_apt_cache(tmp_path: Path, offered: dict[str, str]) -> dict[str, str]:
    """A PATH whose `apt-cache madison PKG` prints offered[PKG] and logs PKG."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "offered.json").write_text(json.dumps(offered))
    script = bin_dir / "apt-cache"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{tmp_path}/asked.log"\n'
        f'exec python3 -c \'import json, sys; print(json.load(open("{tmp_path}/offered.json"))'
        '.get(sys.argv[2], ""), end="")\' "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def asked(tmp_path: Path) -> list[str]:
    log = tmp_path / "asked.log"
    return log.read_text().splitlines() if log.exists() else []


SHOW_APT_NAMES = {
    "name": "Show what install.yml installs",
    "ansible.builtin.debug": {"var": "_cuda_apt_names"},
}


def check_pins(
    tmp_path: Path, offered: dict[str, str], *, check: bool = False, **variables: Any
) -> Run:
    return play(
        tmp_path,
        [include("cuda", "pins", public=True), SHOW_APT_NAMES],
        variables={**UBUNTU, **variables},
        env=fake_apt_cache(tmp_path, offered),
        check=check,
    )


def test_the_pins_pass_when_apt_offers_them(tmp_path: Path) -> None:
    run = check_pins(tmp_path, OFFERED)
    assert run.rc == 0, run.failure() or run.stdout[-3000:]
    assert asked(tmp_path) == [
        f"madison {HEADERS}", "madison cuda-drivers-580", "madison cuda-cudart-12-8"
    ]  # fmt: skip
    # the same list install.yml hands apt: the headers by name, the rest at their pins
    (shown,) = run.results("Show what install.yml installs")
    assert shown["_cuda_apt_names"] == [
        HEADERS, "cuda-drivers-580=580.95.05-1", "cuda-cudart-12-8=12.8.90-1"
    ]  # fmt: skip


def test_a_driver_pin_apt_does_not_offer_fails_naming_what_it_offers(tmp_path: Path) -> None:
    offered = {**OFFERED, "cuda-drivers-580": madison(
        "cuda-drivers-580", "580.95.05-0ubuntu1", "580.82.07-0ubuntu1")}  # fmt: skip
    run = check_pins(tmp_path, offered)
    assert run.rc != 0
    failure = run.failure()
    assert "cuda-drivers-580=580.95.05-1 is not in the package lists (ubuntu2204" in failure
    assert "apt offers 580.95.05-0ubuntu1, 580.82.07-0ubuntu1" in failure
    assert "set cuda_driver_version (cuda_driver_versions.ubuntu2204) to one of them" in failure


def test_missing_kernel_headers_fail_naming_the_running_kernel(tmp_path: Path) -> None:
    run = check_pins(tmp_path, {**OFFERED, HEADERS: ""})
    assert run.rc != 0
    failure = run.failure()
    assert f"{HEADERS} is not in the package lists" in failure
    assert "no version of it" in failure and "running kernel" in failure


def test_each_distribution_is_checked_at_its_own_pin(tmp_path: Path) -> None:
    pins = {"ubuntu2204": "580.95.05-1", "debian12": "580.95.05-2"}
    offered = {**OFFERED, "linux-headers-6.1.0-26-cloud-amd64": madison(
        "linux-headers-6.1.0-26-cloud-amd64", "6.1.112-1")}  # fmt: skip
    run = check_pins(tmp_path, offered, **DEBIAN, cuda_driver_versions=pins)
    assert run.rc != 0
    assert "cuda-drivers-580=580.95.05-2 is not in the package lists (debian12" in run.failure()
    assert "cuda_driver_versions.debian12" in run.failure()


@pytest.mark.parametrize("case", ["plan", "no GPU"])
def test_a_plan_or_a_node_without_a_gpu_asks_apt_nothing(tmp_path: Path, case: str) -> None:
    if case == "plan":
        run = check_pins(tmp_path, {}, check=True)
    else:
        run = check_pins(tmp_path, {}, cuda_install_driver=False)
    assert run.rc == 0, run.failure()
    assert asked(tmp_path) == []


def preflight(tmp_path: Path, **variables: Any) -> Run:
    return play(tmp_path, [include("cuda", "preflight")], variables={**UBUNTU, **variables})


def test_the_default_driver_branch_runs_the_cuda_the_node_needs(tmp_path: Path) -> None:
    run = preflight(tmp_path)
    assert run.rc == 0, run.failure()


def test_a_driver_branch_too_old_for_the_torch_wheel_is_refused(tmp_path: Path) -> None:
    # R570 runs CUDA up to 12.8; the torch of vLLM's pin is a CUDA 13.0 build.
    run = preflight(tmp_path, cuda_driver_branch="570", cuda_driver_version="570.195.03-1",
                    cuda_driver_versions={"ubuntu2204": "570.195.03-1"})  # fmt: skip
    assert run.rc != 0
    failure = run.failure()
    assert "Driver branch 570 runs CUDA up to 12.8, but the node needs CUDA 13.0" in failure
    assert "set cuda_driver_branch to one of 580" in failure


def test_a_distribution_without_a_driver_pin_is_refused(tmp_path: Path) -> None:
    run = preflight(tmp_path, cuda_driver_versions={"debian12": "580.95.05-1"})
    assert run.rc != 0
    assert "No driver version for ubuntu2204: cuda_driver_versions names debian12" in run.failure()

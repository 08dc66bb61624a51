"""resize.yml and rollback.yml against a real moto server, with their bad input.

Neither needs a whole deploy: resize.yml needs the tagged node, rollback.yml a function with
two versions, both arranged here directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.modules.harness import run_module
from tlops.contract import resize as spec
from tlops.local.services import MotoProcess

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=3)]

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")
REGION = "eu-west-1"
STAND_IN = {"aws_access_key_id": "standin-key-id", "aws_secret_access_key": "standin-secret"}


def run_playbook(name: str, endpoint: str, state_dir: Path, *extra: str) -> dict[str, Any]:
    env = {**os.environ, "TLOPS_STATE_DIR": str(state_dir), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_DEPRECATION_WARNINGS": "false"}  # fmt: skip
    command = [str(PLAYBOOK_BIN), f"playbooks/{name}", "-e", f"aws_endpoint_url={endpoint}"]
    done = subprocess.run(
        [*command, *extra], check=False, cwd=REPO, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
    return {"rc": done.returncode, "out": done.stdout + done.stderr}


def client(endpoint: str, service: str):
    return boto3.Session(region_name=REGION, **STAND_IN).client(service, endpoint_url=endpoint)


@pytest.fixture
def stand_in(moto_server: str) -> str:
    MotoProcess.reset_url(moto_server)
    return moto_server


def tagged_node(endpoint: str, *, running: bool) -> str:
    amis = json.loads((REPO / "src/tlops/local/ubuntu_amis.json").read_text())
    ec2 = client(endpoint, "ec2")
    tags = [{"Key": "Project", "Value": "tinyllama"}, {"Key": "Role", "Value": "gpu"}]
    instance = ec2.run_instances(
        ImageId=amis[0]["ami_id"], InstanceType="g4dn.xlarge", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    if not running:
        ec2.stop_instances(InstanceIds=[instance])
    return instance


def node(endpoint: str, instance: str) -> tuple[str, str]:
    found = client(endpoint, "ec2").describe_instances(InstanceIds=[instance])
    described = found["Reservations"][0]["Instances"][0]
    return described["State"]["Name"], described["InstanceType"]


# --- resize.yml ---------------------------------------------------------------------------
def test_the_playbook_offers_what_the_api_offers():
    import yaml

    [play] = yaml.safe_load((REPO / "playbooks/resize.yml").read_text())
    assert tuple(play["vars"]["resize_actions"]) == spec.ACTIONS
    assert tuple(play["vars"]["resize_instance_types"]) == spec.INSTANCE_TYPES


def test_resize_a_running_node_and_back_and_stop_it(stand_in, tmp_path):
    instance = tagged_node(stand_in, running=True)
    small = run_playbook("resize.yml", stand_in, tmp_path,
                         "-e", "resize_action=resize", "-e", "resize_target=t3.small")  # fmt: skip
    assert small["rc"] == 0, small["out"][-3000:]
    assert node(stand_in, instance) == ("running", "t3.small")
    assert f"{instance}: running, t3.small" in small["out"]
    stopped = run_playbook("resize.yml", stand_in, tmp_path, "-e", "resize_action=stop")
    assert stopped["rc"] == 0, stopped["out"][-3000:]
    assert node(stand_in, instance) == ("stopped", "t3.small")
    back = run_playbook("resize.yml", stand_in, tmp_path,
                        "-e", "resize_action=start", "-e", "resize_target=g4dn.xlarge")  # fmt: skip
    assert back["rc"] == 0, back["out"][-3000:]
    assert node(stand_in, instance) == ("running", "g4dn.xlarge")
    assert client(stand_in, "ec2").describe_addresses()["Addresses"] == []  # nothing billing


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["-e", "resize_action=grow"], "resize_action must be one of start, stop, resize"),
        (["-e", "resize_action=resize"], "required when"),
        (["-e", "resize_action=start", "-e", "resize_target=p5.48xlarge"], "'p5.48xlarge'"),
        ([], "(got '')"),
    ],
)
def test_resize_bad_input_fails_naming_the_variable(stand_in, tmp_path, extra, named):
    instance = tagged_node(stand_in, running=True)
    failed = run_playbook("resize.yml", stand_in, tmp_path, *extra)
    assert failed["rc"] != 0 and named in failed["out"], failed["out"][-2000:]
    assert node(stand_in, instance) == ("running", "g4dn.xlarge")


def test_resize_without_a_node_says_so(stand_in, tmp_path):
    failed = run_playbook("resize.yml", stand_in, tmp_path, "-e", "resize_action=start")
    assert failed["rc"] != 0 and "Found 0 instances tagged" in failed["out"]


# --- rollback.yml ---------------------------------------------------------------------------
def two_versions(endpoint: str, tmp_path: Path) -> None:
    iam = client(endpoint, "iam")
    trust = (REPO / "roles/router/files/lambda_trust.json").read_text()
    arn = iam.create_role(RoleName="tinyllama-router", AssumeRolePolicyDocument=trust)["Role"][
        "Arn"
    ]
    args = {
        "endpoint_url": endpoint,
        "region": REGION,
        "access_key": "standin-key-id",
        "secret_key": "standin-secret",
        "name": "tinyllama-router",
        "role_arn": arn,
        "source": str(REPO / "lambda_src/router"),
        "tags": {"Project": "tinyllama"},
    }
    for value in ("1", "2"):
        run_module("tl_lambda", {**args, "environment": {"TL_RELEASE": value}})


def prod_version(endpoint: str) -> str:
    alias = client(endpoint, "lambda").get_alias(FunctionName="tinyllama-router", Name="prod")
    return alias["FunctionVersion"]


def test_rollback_points_prod_at_the_previous_version(stand_in, tmp_path):
    two_versions(stand_in, tmp_path)
    assert prod_version(stand_in) == "2"
    planned = run_playbook("rollback.yml", stand_in, tmp_path, "-e", "function=router", "--check")
    assert planned["rc"] == 0, planned["out"][-3000:]
    assert prod_version(stand_in) == "2"  # --check moved nothing
    done = run_playbook("rollback.yml", stand_in, tmp_path, "-e", "function=router")
    assert done["rc"] == 0, done["out"][-3000:]
    assert prod_version(stand_in) == "1"
    assert "prod points at version 1 (was 2)" in done["out"]
    again = run_playbook("rollback.yml", stand_in, tmp_path, "-e", "function=router")
    assert again["rc"] != 0 and "nothing to roll back to" in again["out"]


def test_rollback_of_an_unknown_function_names_the_variable(stand_in, tmp_path):
    failed = run_playbook("rollback.yml", stand_in, tmp_path, "-e", "function=frontend")
    assert failed["rc"] != 0
    assert (
        "function must be one of router, queue_health, eip_watch (got 'frontend')"
        in (failed["out"])
    )

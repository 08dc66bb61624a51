"""The names the code, the roles, Packer and the policies must spell alike: one home.

Python imports them from here. The cloud roles read them as `tlops_names.<name>` from
`playbooks/group_vars/all/names.yml`, generated from this module (`make names`,
tlops.tooling.names); tests/playbooks/test_one_home.py fails when that file, or a
spelling the node roles, Packer or access.yml keep as a literal, has drifted. Plain
Python: every Lambda imports it.
"""

from __future__ import annotations

from typing import Any

from tlops.contract.states import NODE_LIVE_STATES

# The Project tag's default value: every resource a deployment makes carries
# Project=<project>, and teardown, the killer and the checks find them by it alone.
PROJECT = "tinyllama"
PROJECT_TAG = "Project"
ROLE_TAG = "Role"
# The Role tag of the GPU node (EC2 instance, its volumes and image), of the queue's
# ElastiCache groups, and of a bake's build instance and its volume (Packer's run tags).
NODE_ROLE = "gpu"
# The shapes the node may take (POST /resize offers them; control's policy starts it in no
# other): a cheap one to keep it warm without a GPU, and the T4.
NODE_SHAPES = ("t3.small", "g4dn.xlarge")
QUEUE_ROLE = "queue"
BAKE_ROLE = "bake"

# The CloudWatch namespace of every metric the project sends (EMF lines and
# PutMetricData). It is the design documents' short name for the project ("tl-fif" in
# their resource names; they never expand it), kept so that their alarms and the
# dashboard read as written there.
METRIC_NAMESPACE = "TLFIF"

# SSM parameters the deployment shares between its parts, under the same prefix.
PARAMETER_PREFIX = "/tl-fif"
LATEST_IMAGE_PARAMETER = f"{PARAMETER_PREFIX}/latest_ami_id"  # the baked node image
NODE_SETTINGS_PARAMETER = f"{PARAMETER_PREFIX}/node_settings"  # the node's programs' settings
# The key vLLM asks of every request (a SecureString, made once by deploy.yml, never rewritten).
NODE_INFERENCE_KEY_PARAMETER = f"{PARAMETER_PREFIX}/node_inference_key"

# The image the node is baked from: Canonical's Ubuntu 22.04 LTS for x86_64 (AWS, "Find
# an Ubuntu AMI": Canonical's AWS account id 099720109477 owns its official images).
UBUNTU_OWNER = "099720109477"
UBUNTU_IMAGE_NAME = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"


def tag_filters(project: str, role: str | None = None) -> list[dict[str, Any]]:
    """EC2-style Filters for what carries Project=<project> (and Role=<role>)."""
    filters: list[dict[str, Any]] = [{"Name": f"tag:{PROJECT_TAG}", "Values": [project]}]
    if role is not None:
        filters.append({"Name": f"tag:{ROLE_TAG}", "Values": [role]})
    return filters


def for_yaml() -> dict[str, Any]:
    """What playbooks/group_vars/all/names.yml holds (`tlops_names`): every name above, and
    the node's live EC2 states (contract.states) and the shapes it may take (POST /resize
    and control's policy)."""
    return {
        "node_live_states": list(NODE_LIVE_STATES),
        "node_shapes": list(NODE_SHAPES),
        "project": PROJECT,
        "project_tag": PROJECT_TAG,
        "role_tag": ROLE_TAG,
        "node_role": NODE_ROLE,
        "queue_role": QUEUE_ROLE,
        "bake_role": BAKE_ROLE,
        "metric_namespace": METRIC_NAMESPACE,
        "latest_image_parameter": LATEST_IMAGE_PARAMETER,
        "node_settings_parameter": NODE_SETTINGS_PARAMETER,
        "node_inference_key_parameter": NODE_INFERENCE_KEY_PARAMETER,
        "ubuntu_owner": UBUNTU_OWNER,
        "ubuntu_image_name": UBUNTU_IMAGE_NAME,
    }

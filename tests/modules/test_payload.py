"""Each module runs as ansible-core ships it: its module_utils package in the AnsiballZ payload.

The harness imports the collection from the checkout; only a real `ansible` run shows that
ansible-core finds a module by its FQCN (tlops.stack.tl_<name>, through ansible.cfg's
collections_path) and its package (plugins/module_utils/tl_<name>/) and sends it along.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import REPO, module_names

ANSIBLE = Path(sys.executable).with_name("ansible")
ABSENT = {
    "tl_budget": {"name": "tl-payload", "state": "absent", "tags": {"Project": "tinyllama"}},
    # no such bucket on an empty stand-in: its notification is gone with it, no change
    "tl_bucket_notification": {"bucket": "tl-payload", "id": "tl-payload", "state": "absent"},
    "tl_cognito": {"pool_name": "tl-payload", "state": "absent", "tags": {"Project": "tinyllama"}},
    "tl_dashboard": {"name": "tl-payload", "state": "absent", "tags": {"Project": "tinyllama"}},
    "tl_elasticache": {
        "replication_group_id": "tl-payload",
        "state": "absent",
        "tags": {"Project": "tinyllama"},
    },
    "tl_http_api": {"name": "tl-payload", "state": "absent", "tags": {"Project": "tinyllama"}},
    # reads only: on an empty stand-in the report is empty
    "tl_idle_cost": {"project": "tl-payload"},
    # reads only: on the stand-in it finds no EC2 quota and says so
    "tl_gpu_quota": {"launch": ["g4dn.xlarge"], "project": "tl-payload"},
    "tl_lambda": {"name": "tl-payload", "state": "absent", "tags": {"Project": "tinyllama"}},
    # reads only: no such group, so no interface in it
    "tl_lambda_enis": {"security_group_ids": ["sg-0123456789abcdef0"], "wait_timeout": 0},
    # builds the wrapper tests' template, which makes nothing (the null builder, no machine)
    "tl_packer": {"template_dir": str(REPO / "tests/tooling/fixtures/tiny")},
    "tl_metric_alarm": {"name": "tl-payload", "state": "absent", "tags": {"Project": "tinyllama"}},
    # reads only: every zone of the stand-in offers it
    "tl_offering_zones": {"instance_type": "g4dn.xlarge"},
    "tl_query_definition": {
        "name": "tinyllama/tl-payload",
        "state": "absent",
        "tags": {"Project": "tinyllama"},
    },
    "tl_schedule": {
        "name": "tinyllama-payload",
        "state": "absent",
        "tags": {"Project": "tinyllama"},
    },
    # changes nothing anyway: on an empty stand-in every component is reported not deployed
    "tl_verify": {"project": "tl-payload", "reply_bucket": "tl-payload", "fail_on_missing": False},
    # no such VPC on an empty stand-in: nothing to delete
    "tl_vpc_delete": {"vpc_ids": ["vpc-0123456789abcdef0"], "tags": {"Project": "tinyllama"}},
}


def test_every_module_is_tried():
    assert sorted(ABSENT) == module_names()


@pytest.mark.parametrize("name", sorted(ABSENT))
def test_the_module_runs_from_its_payload(name, aws_args, tmp_path):
    args = json.dumps({**aws_args, **ABSENT[name]})
    done = subprocess.run(
        [str(ANSIBLE), "localhost", "-m", f"tlops.stack.{name}", "-a", args],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path), "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "localhost | SUCCESS" in done.stdout, done.stdout

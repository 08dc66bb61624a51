"""deploy.yml against a real moto server: the plan, the deploy, and again.

The life cycle's first half (the second, status and teardown, is test_deploy_teardown.py's;
a module of its own, so the slow tier's workers run the two side by side): the plan
(--check) of an empty account shows what it would create and creates nothing → deploy →
resources and tags → deploy again changes nothing → the plan changes nothing → teardown
without confirmation does nothing → a running node is left be → an EIP of an earlier
design is released. Untagged look-alikes are seeded first: deploy adopts none of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tlops.local.services import MotoProcess

from .stand_in import (
    PROJECT,
    Account,
    assert_deployed,
    changed,
    changed_tasks,
    run_playbook,
    seed_look_alikes,
)

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=8)]


@pytest.mark.slow
def test_deploy_then_deploy_and_plan_again_change_nothing(moto_server: str, tmp_path: Path) -> None:
    MotoProcess.reset_url(moto_server)
    account = Account(moto_server)
    seed_look_alikes(account)  # deploy must adopt none of them (assert_deployed counts)

    def play(name: str, *args: str) -> dict[str, Any]:
        # as on an account: no suffix pinned, so the first deploy draws one (assert_deployed)
        return run_playbook(name, moto_server, *args, "-e", "tlops_new_name_suffix=",
                            state_dir=tmp_path)  # fmt: skip

    empty_plan = play("deploy.yml", "--check", "--diff")
    assert {
        "network : Create the VPC",
        "storage : Show that the plan would create the buckets",
        "observability : Show that the plan would create the alert topic",
    } <= set(changed_tasks(empty_plan))
    assert not account.tagged("vpcs") and not account.instances(
        {"Name": "tag:Project", "Values": ["tinyllama"]}
    )

    first = play("deploy.yml")
    assert changed(first) > 0
    assert_deployed(account, tmp_path)
    named = json.loads((tmp_path / "outputs.json").read_text())

    second = play("deploy.yml")
    assert changed(second) == 0, changed_tasks(second)
    assert json.loads((tmp_path / "outputs.json").read_text()) == named  # the same names

    before = account.dump()
    plan = play("deploy.yml", "--check", "--diff")
    assert changed(plan) == 0, changed_tasks(plan)
    assert account.dump() == before

    unconfirmed = play("teardown.yml", "-e", "teardown_level=all")
    assert changed(unconfirmed) == 0
    assert "teardown_confirmation=yes" in unconfirmed["stdout"]
    assert account.dump() == before

    # The router would start the node: a deploy leaves a running node be.
    (node,) = account.instances({"Name": "tag:Project", "Values": ["tinyllama"]})
    account.ec2.start_instances(InstanceIds=[node["InstanceId"]])
    assert changed(play("deploy.yml")) == 0

    # An EIP of an earlier design (the node once had one) is released by any deploy.
    legacy = account.ec2.allocate_address(Domain="vpc")["AllocationId"]
    account.ec2.create_tags(Resources=[legacy], Tags=[PROJECT, {"Key": "Role", "Value": "gpu"}])
    account.ec2.associate_address(AllocationId=legacy, InstanceId=node["InstanceId"])
    released = play("deploy.yml")
    assert changed_tasks(released) == ["gpu_node : Release the node's tagged EIPs"]
    assert not account.tagged("addresses")

"""teardown.yml and status.yml against a real moto server, after a deploy of their own.

The life cycle's second half (the first, plan → deploy → deploy again → plan, is
test_deploy_plan.py's; a module of its own, so the slow tier's workers run the two side by
side): status and the idle cost of a running node → teardown idle stops it and releases
its address → the budget's kill line stops what costs and nothing else → teardown all keeps
the baked image, which the report prices → teardown all with teardown_images=yes → nothing
tagged remains and the untagged look-alikes are intact → again changes nothing.
Each ansible-playbook run costs seconds, so the bad-input cases stop in preflight.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tlops.local.services import MotoProcess, free_port

from .stand_in import (
    ACCOUNT_ID,
    NODE_SETTINGS,
    PROJECT,
    Account,
    assert_look_alikes_intact,
    assert_report_lists,
    changed,
    changed_tasks,
    idle_cost,
    run_playbook,
    seed_look_alikes,
    tlops,
)

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=8)]


@pytest.mark.slow
def test_teardown_idle_then_all_leaves_nothing_of_ours(moto_server: str, tmp_path: Path) -> None:
    MotoProcess.reset_url(moto_server)
    account = Account(moto_server)
    seeded = seed_look_alikes(account)

    def play(name: str, *args: str) -> dict[str, Any]:
        return run_playbook(name, moto_server, *args, state_dir=tmp_path)

    def operator(*argv: str) -> subprocess.CompletedProcess:
        return tlops(moto_server, *argv, state_dir=tmp_path)

    assert changed(play("deploy.yml")) > 0

    # The router would start the node; an EIP of an earlier design may still be on it.
    (node,) = account.instances({"Name": "tag:Project", "Values": ["tinyllama"]})
    account.ec2.start_instances(InstanceIds=[node["InstanceId"]])
    legacy = account.ec2.allocate_address(Domain="vpc")["AllocationId"]
    account.ec2.create_tags(Resources=[legacy], Tags=[PROJECT, {"Key": "Role", "Value": "gpu"}])
    account.ec2.associate_address(AllocationId=legacy, InstanceId=node["InstanceId"])
    assert len(account.tagged("addresses")) == 1

    status = idle_cost(play("status.yml"))
    assert any("running" in row["item"] and row["eur_month"] > 100 for row in status["rows"])
    assert status["state"] == "awake"
    assert_report_lists(status, account)  # every tagged resource, by id, and nothing else
    cost = operator("cost", "--json")
    assert cost.returncode == 0, cost.stdout[-2000:] + cost.stderr[-2000:]
    assert json.loads(cost.stdout)["idle_cost"]["rows"] == status["rows"]  # the same project

    confirm = ("-e", "teardown_confirmation=yes")
    idle = play("teardown.yml", *confirm)
    assert changed(idle) > 0
    (node,) = account.instances({"Name": "tag:Project", "Values": ["tinyllama"]})
    assert node["State"]["Name"] == "stopped"
    assert not account.tagged("addresses")
    report = idle_cost(idle)
    costing = [row["item"] for row in report["rows"] if row["eur_month"] > 0]
    assert costing and all("volume" in item for item in costing), report
    assert report["total_eur_month"] == round(30 * 0.081, 2)  # 30 GiB of gp3 (prices.yml)
    assert report["state"] == "asleep"
    assert_report_lists(report, account)
    assert changed(play("teardown.yml", *confirm)) == 0

    # The node runs again with an address, and the budget passes its kill line: the killer
    # leaves its mark (no wake until the next deploy) and stops what costs, and nothing else
    # (the queue went with teardown idle already).
    account.ec2.start_instances(InstanceIds=[node["InstanceId"]])
    address = account.ec2.allocate_address(Domain="vpc")["AllocationId"]
    account.ec2.create_tags(Resources=[address], Tags=[PROJECT, {"Key": "Role", "Value": "gpu"}])
    account.ec2.associate_address(AllocationId=address, InstanceId=node["InstanceId"])
    breach = operator("ops", "budget-breach", "--percent", "106", "--json")
    assert breach.returncode == 0, breach.stdout[-2000:] + breach.stderr[-2000:]
    killed = {(a["kind"], a["outcome"]) for a in json.loads(breach.stdout)["actions"]}
    assert killed == {("mark-killed", "done"), ("stop-instance", "done"),
                      ("release-address", "done")}  # fmt: skip
    (node,) = account.instances({"Name": "tag:Project", "Values": ["tinyllama"]})
    assert node["State"]["Name"] == "stopped" and not account.tagged("addresses")
    (twin,) = account.ec2.describe_instances(InstanceIds=[seeded["instance"]])["Reservations"]
    assert twin["Instances"][0]["State"]["Name"] == "running"  # Role=gpu of someone else
    assert account.ec2.describe_addresses(AllocationIds=[seeded["address"]])["Addresses"]
    again = operator("ops", "budget-breach", "--percent", "106", "--json")
    assert json.loads(again.stdout)["actions"] == []  # a repeated notification changes nothing

    # A baked image, tagged as Packer tags it and its snapshot, and someone else's.
    ec2 = account.ec2
    baked = [{"ResourceType": "image", "Tags": [PROJECT, {"Key": "Role", "Value": "gpu"}]}]
    image = ec2.create_image(
        InstanceId=node["InstanceId"], Name="tinyllama-gpu-1", TagSpecifications=baked
    )["ImageId"]
    (mapping,) = ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"]
    snapshot, gib = mapping["Ebs"]["SnapshotId"], mapping["Ebs"]["VolumeSize"]
    ec2.create_tags(Resources=[snapshot], Tags=[PROJECT])
    theirs = ec2.create_image(InstanceId=seeded["instance"], Name="tinyllama-gpu-old")["ImageId"]

    everything = play("teardown.yml", *confirm, "-e", "teardown_level=all")
    assert changed(everything) > 0
    kept = idle_cost(everything)  # the image stays, priced, and so does the parameter naming it
    assert [row["item"] for row in kept["rows"]] == [
        f"image {image} (tinyllama-gpu-1, available)", f"snapshot {snapshot} of {image} ({gib} GiB)"
    ]  # fmt: skip
    assert kept["total_eur_month"] == round(gib * 0.046, 2)  # prices.yml's ebs_snapshot_gb_month
    assert kept["state"] == "not deployed"
    parameters = account.ssm.describe_parameters()["Parameters"]
    assert [p["Name"] for p in parameters] == ["/tl-fif/latest_ami_id"]

    images = play("teardown.yml", *confirm, "-e", "teardown_level=all", "-e", "teardown_images=yes")
    assert changed(images) > 0
    assert idle_cost(images) == {**kept, "rows": [], "total_eur_month": 0.0}
    assert [i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]] == [theirs]
    ours = [{"Name": "tag:Project", "Values": ["tinyllama"]}]
    assert not ec2.describe_snapshots(OwnerIds=["self"], Filters=ours)["Snapshots"]
    assert ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]  # the other image's
    for kind in ("vpcs", "subnets", "security_groups", "route_tables", "internet_gateways",
                 "addresses", "launch_templates", "vpc_endpoints"):  # fmt: skip
        assert not account.tagged(kind), kind
    assert not account.instances({"Name": "tag:Project", "Values": ["tinyllama"]})
    assert not [b for b, tags in account.bucket_tags().items() if tags.get("Project")]
    assert "tinyllama-gpu" not in {r["RoleName"] for r in account.iam.list_roles()["Roles"]}
    assert not account.ssm.describe_parameters()["Parameters"]
    assert not account.lam.list_functions()["Functions"]
    assert not account.sns.list_topics()["Topics"]
    assert not account.budgets.describe_budgets(AccountId=ACCOUNT_ID).get("Budgets")
    assert not account.events.list_rules()["Rules"]
    assert not {"tinyllama-budget-killer", "tinyllama-cost-summary"} & {
        r["RoleName"] for r in account.iam.list_roles()["Roles"]
    }
    assert not (tmp_path / "outputs.json").exists()
    assert_look_alikes_intact(account, seeded)

    # Again changes nothing; a parameter of that name that is not tagged as the project's is
    # someone else's.
    account.ssm.put_parameter(Name=NODE_SETTINGS, Value="{}", Type="String")
    again = play("teardown.yml", *confirm, "-e", "teardown_level=all", "-e", "teardown_images=yes")
    assert changed(again) == 0, changed_tasks(again)
    assert account.ssm.get_parameter(Name=NODE_SETTINGS)["Parameter"]["Value"] == "{}"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"storage_reply_expiry_days": "a week"}, "storage_reply_expiry_days"),
        ({"network_node_ingress_cidrs": {"office": 1}}, "network_node_ingress_cidrs"),
        ({"gpu_node_seed_ami": "perhaps"}, "gpu_node_seed_ami"),
        ({"enable_redis": "sometimes"}, "enable_redis"),
        ({"router_timeout_s": "long"}, "router_timeout_s"),
        ({"auth_callback_ports": ["any"]}, "auth_callback_ports"),
        ({"router_log_retention_days": 13}, "router_log_retention_days"),
        ({"aws_region": "Ireland"}, "aws_region"),
        ({"guardrails_budget_amount": -5}, "guardrails_budget_amount"),
        ({"guardrails_budget_amount": "twenty"}, "guardrails_budget_amount"),
        ({"guardrails_alert_emails": ["ops at example"]}, "guardrails_alert_emails"),
        ({"guardrails_kill_percent": 50}, "guardrails_kill_percent"),
    ],
)
def test_bad_settings_fail_in_preflight(moto_server: str, extra: dict, named: str) -> None:
    MotoProcess.reset_url(moto_server)
    report = run_playbook("deploy.yml", moto_server, "-e", json.dumps(extra))
    assert report["rc"] != 0
    assert named in report["stdout"]
    assert not Account(moto_server).tagged("vpcs")  # failed before any change
    failed = [
        task["task"]["name"]
        for play in report["plays"]
        for task in play["tasks"]
        if task["hosts"].get("localhost", {}).get("failed")
    ]
    assert failed and "network" not in failed[0]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"gpu_node_redis_url": "redis://:secret@queue:6379"}, "gpu_node_redis_url"),
        ({"gpu_node_redis_url": ""}, "gpu_node_redis_url"),
        ({"gpu_node_settings_parameter": "tl-fif/node_settings"}, "gpu_node_settings_parameter"),
        # control may start the node only as t3.small or g4dn.xlarge (issue 20, item 3)
        ({"gpu_node_instance_type": "g5.xlarge"}, "gpu_node_instance_type"),
    ],
)
def test_bad_node_settings_fail_in_the_roles_preflight(
    moto_server: str, extra: dict, named: str
) -> None:
    """The node's settings are checked where the queue's URL is known (after the queue role):
    the gpu_node role's preflight names the variable, and nothing is written to SSM."""
    MotoProcess.reset_url(moto_server)
    report = run_playbook(
        "deploy.yml", moto_server, "--tags", "gpu_node_preflight", "-e", json.dumps(extra)
    )
    assert report["rc"] != 0
    assert named in report["stdout"]
    assert not Account(moto_server).ssm.describe_parameters()["Parameters"]


def test_unreachable_endpoint_fails_before_any_change() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    report = run_playbook("deploy.yml", nowhere)
    assert report["rc"] != 0
    assert "aws_endpoint_url" in report["stdout"] and "not reachable" in report["stdout"]

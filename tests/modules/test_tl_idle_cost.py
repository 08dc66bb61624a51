"""tl_idle_cost against the stand-in: the report of tlops.cost.idle, as status.yml and
teardown.yml print it, in check mode and not, changing nothing; and the failures that say
what to fix (a price table that is not one, a Python without the tlops package).

The arithmetic itself is tested in tests/cost/test_idle_cost.py.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest
import yaml

from .harness import REPO, ModuleFailed, load, run_module

PROJECT = {"Key": "Project", "Value": "tinyllama"}


def napping(aws) -> str:
    """A stopped node (no launch template: the fallback sizes its root at 0) and the queue."""
    amis = json.loads(resources.files("tlops.local").joinpath("ubuntu_amis.json").read_text())
    ec2 = aws("ec2")
    instance = ec2.run_instances(
        ImageId=next(a["ami_id"] for a in amis if a["architecture"] == "x86_64"),
        InstanceType="g4dn.xlarge", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [PROJECT, {"Key": "Role", "Value": "gpu"}]}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    ec2.stop_instances(InstanceIds=[instance])
    aws("elasticache").create_replication_group(
        ReplicationGroupId="tinyllama-queue", ReplicationGroupDescription="the queue",
        Engine="redis", CacheNodeType="cache.t4g.micro", NumCacheClusters=1, Tags=[PROJECT],
    )  # fmt: skip
    return instance


@pytest.mark.parametrize("check", [True, False], ids=["check", "apply"])
def test_the_report_and_its_lines(aws_args, aws, check):
    instance = napping(aws)
    found = run_module("tl_idle_cost", {**aws_args, "project": "tinyllama"}, check=check)
    assert found["changed"] is False
    assert found["state"] == "napping"
    assert [row["item"] for row in found["rows"]] == [
        f"instance {instance} (g4dn.xlarge, stopped)",
        f"root volume of {instance} (0 GiB gp3)",
        "queue tinyllama-queue (cache.t4g.micro x 1, available)",
    ]
    assert found["total_eur_month"] == 11.8  # one cache.t4g.micro, prices.yml
    lines = found["lines"]
    assert lines[0].startswith(
        "Idle cost report for Project=tinyllama (EUR/month; prices recorded "
    )
    assert lines[1].startswith("state: napping (the queue bills by the hour")
    assert lines[-1] == "     11.80  total"
    assert {"recorded", "bills_while_idle"} <= set(found)


def test_another_project_sees_nothing(aws_args, aws):
    napping(aws)
    found = run_module("tl_idle_cost", {**aws_args, "project": "someone-else"})
    assert (found["rows"], found["state"]) == ([], "not deployed")
    assert found["lines"][2:] == ["      0.00  nothing tagged remains", "      0.00  total"]


def test_a_price_table_of_its_own(aws_args, aws, tmp_path):
    napping(aws)
    prices = yaml.safe_load((REPO / "playbooks/vars/prices.yml").read_text())
    prices["prices"]["recorded"] = "2030-01-01"
    prices["prices"]["resources"]["elasticache_t4g_micro_month"]["eur"] = 20.0
    table = tmp_path / "prices.yml"
    table.write_text(yaml.safe_dump(prices))
    found = run_module("tl_idle_cost", {**aws_args, "project": "tinyllama",
                                        "prices_file": str(table)})  # fmt: skip
    assert (found["recorded"], found["total_eur_month"]) == ("2030-01-01", 20.0)
    del prices["prices"]["resources"]["elasticache_t4g_micro_month"]
    table.write_text(yaml.safe_dump(prices))
    unpriced = run_module("tl_idle_cost", {**aws_args, "project": "tinyllama",
                                           "prices_file": str(table)})  # fmt: skip
    assert unpriced["rows"][-1]["note"] == "no price for cache.t4g.micro in vars/prices.yml"
    del prices["prices"]["resources"]["ebs_gp3_gib_month"]
    table.write_text(yaml.safe_dump(prices))
    with pytest.raises(ModuleFailed, match=r"prices_file: .* has no price 'ebs_gp3_gib_month'"):
        run_module("tl_idle_cost", {**aws_args, "project": "tinyllama",
                                    "prices_file": str(table)})  # fmt: skip


@pytest.mark.parametrize(
    "text",
    ["[1, 2]", "prices: {recorded: today}", "prices: [unclosed"],
    ids=["list", "short", "yaml"],
)
def test_a_file_that_is_no_price_table_is_named(aws_args, tmp_path, text):
    table = tmp_path / "prices.yml"
    table.write_text(text)
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_idle_cost", {**aws_args, "project": "tinyllama",
                                    "prices_file": str(table)})  # fmt: skip
    assert "prices_file" in failed.value.result["msg"] and str(table) in failed.value.result["msg"]


def test_a_missing_file_is_named(aws_args, tmp_path):
    with pytest.raises(ModuleFailed, match=r"prices_file: .*absent\.yml is not a price table"):
        run_module("tl_idle_cost", {**aws_args, "project": "tinyllama",
                                    "prices_file": str(tmp_path / "absent.yml")})  # fmt: skip


def test_without_the_tlops_package_it_says_which_python(aws_args, monkeypatch):
    monkeypatch.setattr(load("tl_idle_cost"), "idle", None)
    with pytest.raises(ModuleFailed, match=r"needs the tlops package.*\.venv"):
        run_module("tl_idle_cost", {**aws_args, "project": "tinyllama"})

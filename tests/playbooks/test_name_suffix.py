"""playbooks/tasks/name_suffix.yml against a real moto server: the public names' suffix.

The buckets' names and the hosted-UI domain are public (anyone may probe them), so they carry
no account id: a new deployment draws a random suffix, the deploy outputs keep it, and a
deployment whose outputs are lost finds it again in its tagged reply bucket (so one made
before the suffix keeps its names). The task file runs in a play of its own, then the names
the storage and auth roles derive from it are read back.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.playbooks.role_play import Run, play
from tests.playbooks.stand_in import REGION, REPO, Account
from tlops.local.services import MotoProcess

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=1)]

ACCOUNT = "123456789012"  # the stand-in's account id, which no public name may carry
OURS = {"Project": "tinyllama", "Role": "storage"}


def names(tmp_path: Path, endpoint: str, *, check: bool = False) -> Run:
    """The suffix, then the names the roles' defaults make of it."""
    tasks: list[dict[str, Any]] = [
        {"name": "Find the suffix",
         "ansible.builtin.include_tasks": str(REPO / "playbooks/tasks/name_suffix.yml")},
        *[{"name": f"Read the {role} role's defaults",
           "ansible.builtin.include_vars": str(REPO / f"roles/{role}/defaults/main.yml")}
          for role in ("storage", "auth")],
        {"name": "Show the names", "ansible.builtin.debug": {"msg": {
            "suffix": "{{ tlops_name_suffix }}",
            "reply_bucket": "{{ storage_reply_bucket_name }}",
            "control_bucket": "{{ storage_control_bucket_name }}",
            "domain_prefix": "{{ auth_domain_prefix }}"}}},
    ]  # fmt: skip
    variables = {"tlops_outputs_dir": str(tmp_path), "tlops_name_suffix": None}
    return play(tmp_path, tasks, variables=variables, endpoint=endpoint, check=check)


def shown(run: Run) -> dict[str, str]:
    assert run.rc == 0, run.failure() or run.stdout[-3000:] + run.stderr[-2000:]
    (result,) = run.results("Show the names")
    return result["msg"]


def bucket(account: Account, name: str, tags: dict[str, str] | None) -> None:
    account.s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    if tags:
        tag_set = [{"Key": k, "Value": v} for k, v in tags.items()]
        account.s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tag_set})


def test_a_new_deployment_draws_a_random_suffix_and_the_plan_creates_nothing(
    moto_server: str, tmp_path: Path
) -> None:
    MotoProcess.reset_url(moto_server)
    first = shown(names(tmp_path, moto_server, check=True))
    second = shown(names(tmp_path, moto_server, check=True))
    for found in (first, second):
        # S3 bucket names and Cognito prefix domains: lowercase letters and digits fit both
        assert re.fullmatch(r"[a-z0-9]{10}", found["suffix"]), found
        assert found == {
            "suffix": found["suffix"],
            "reply_bucket": f"tinyllama-replies-{found['suffix']}",
            "control_bucket": f"tinyllama-control-{found['suffix']}",
            "domain_prefix": f"tinyllama-{found['suffix']}",
        }
        assert not any(re.search(r"\d{12}", name) for name in found.values()), found
        # Cognito refuses these words in a prefix domain
        assert not re.search("aws|amazon|cognito", found["domain_prefix"]), found
    assert first["suffix"] != second["suffix"]  # drawn, not derived from the account
    assert not Account(moto_server).s3.list_buckets()["Buckets"]


@pytest.mark.parametrize("suffix", ["k3jd8s9f2q", ACCOUNT])
def test_with_the_outputs_lost_the_tagged_reply_bucket_gives_the_suffix_again(
    moto_server: str, tmp_path: Path, suffix: str
) -> None:
    """A deployment whose outputs are gone keeps its names; one made before the suffix
    (its buckets end with the account id) keeps those."""
    MotoProcess.reset_url(moto_server)
    account = Account(moto_server)
    bucket(account, "tinyllama-replies-lookalike", None)  # untagged: someone else's
    bucket(account, "tinyllama-replies-theirs", {"Project": "someone-else", "Role": "storage"})
    bucket(account, f"tinyllama-replies-{suffix}", OURS)
    assert shown(names(tmp_path, moto_server)) == {
        "suffix": suffix,
        "reply_bucket": f"tinyllama-replies-{suffix}",
        "control_bucket": f"tinyllama-control-{suffix}",
        "domain_prefix": f"tinyllama-{suffix}",
    }


def test_the_deploy_outputs_suffix_comes_first(moto_server: str, tmp_path: Path) -> None:
    MotoProcess.reset_url(moto_server)
    (tmp_path / "outputs.json").write_text(json.dumps({"name_suffix": "x7k2m9p4qz"}))
    assert shown(names(tmp_path, moto_server))["reply_bucket"] == "tinyllama-replies-x7k2m9p4qz"


def test_a_bad_recorded_suffix_and_two_reply_buckets_fail_naming_what(
    moto_server: str, tmp_path: Path
) -> None:
    MotoProcess.reset_url(moto_server)
    (tmp_path / "outputs.json").write_text(json.dumps({"name_suffix": "Not_A-Suffix"}))
    bad = names(tmp_path, moto_server)
    assert bad.rc != 0 and "name_suffix" in bad.failure() and "Not_A-Suffix" in bad.failure()

    (tmp_path / "outputs.json").unlink()
    account = Account(moto_server)
    bucket(account, "tinyllama-replies-one1", OURS)
    bucket(account, "tinyllama-replies-two2", OURS)
    two = names(tmp_path, moto_server)
    assert two.rc != 0
    assert "tinyllama-replies-one1" in two.failure() and "tinyllama-replies-two2" in two.failure()

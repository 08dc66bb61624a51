"""The budget topics' policy as the guardrails role renders it: only AWS Budgets may publish,
and only for the project's own budget; nobody else is granted a publish.

Rendered by Ansible's own templar from the role's defaults and vars, as deploy.yml does.
The expected values are AWS's: the Cost Management guide's topic policy for budget
notifications (https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-sns-policy.html)
and the budget ARN it names as the source
(https://docs.aws.amazon.com/cost-management/latest/userguide/cross-service-confused-deputy-prevention.html).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from tests.support.role_templates import trusted
from tlops.checkout import ROOT

ROLE = ROOT / "roles" / "guardrails"
ACCOUNT = "123456789012"
KILL_TOPIC = f"arn:aws:sns:eu-west-1:{ACCOUNT}:tinyllama-budget-kill"
BUDGET_ARN = f"arn:aws:budgets::{ACCOUNT}:budget/tinyllama-monthly"


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    loader = DataLoader()
    files = [ROOT / "playbooks" / "group_vars" / "all" / "names.yml",
             ROLE / "defaults" / "main.yml", ROLE / "vars" / "main.yml"]  # fmt: skip
    variables = {
        **{k: trusted(v) for path in files for k, v in loader.load_from_file(str(path)).items()},
        "project_tag": "tinyllama",
        "aws_region": "eu-west-1",
        "aws_account_id": ACCOUNT,
        "playbook_dir": str(ROOT / "playbooks"),
        "ansible_check_mode": False,
        # as the kill topic's task sets it
        "_guardrails_topic_arn": trust_as_template("{{ _guardrails_topic_arns.kill }}"),
    }
    source = (ROLE / "templates" / "budget_topic_policy.json.j2").read_text()
    rendered = Templar(loader=loader, variables=variables).template(trust_as_template(source))
    return json.loads(rendered)


def publishers(policy: dict[str, Any]) -> list[dict[str, Any]]:
    def actions(statement: dict[str, Any]) -> list[str]:
        named = statement["Action"]
        return [a.lower() for a in ([named] if isinstance(named, str) else named)]

    publish = {"sns:publish", "sns:*", "*"}
    return [s for s in policy["Statement"] if s["Effect"] == "Allow" and publish & set(actions(s))]


def test_only_budgets_publishes_and_only_for_the_projects_budget(policy):
    [allowed] = publishers(policy)
    assert allowed["Principal"] == {"Service": "budgets.amazonaws.com"}
    assert allowed["Resource"] == KILL_TOPIC
    assert allowed["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": BUDGET_ARN},
    }


def test_no_other_principal_is_granted_a_publish(policy):
    budgets = {"Service": "budgets.amazonaws.com"}
    others = [s for s in policy["Statement"] if s["Principal"] != budgets]
    assert others  # the account still manages its topic
    assert not publishers({"Statement": others})

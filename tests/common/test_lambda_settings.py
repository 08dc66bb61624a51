"""The Lambdas read their environment through the same kind of settings table as the
node's programs: a variable that is missing or bad is named, never a bare ValueError."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from tlops import contract
from tlops.common import settings_table
from tlops.common.settings_table import ConfigError
from tlops.control.config import ControlConfig
from tlops.edge.eip_watch import EipWatchSettings
from tlops.edge.queue_health import QueueHealthSettings
from tlops.edge.router_config import RouterConfig
from tlops.guard.killer import KillerConfig
from tlops.guard.summary import SummaryConfig

ROUTER_ENV = {
    "TL_REDIS_URL": "redis://queue:6379/0",
    "TL_JWT_ISSUER": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_pool/",
    "TL_JWT_AUDIENCE": "client",
    "TL_REPLY_BUCKET": "replies",
    "TL_CONTROL_BUCKET": "control",
}
KILLER_ENV = {"TL_PROJECT": "p", "TL_BUDGET_NAME": "b", "TL_ACCOUNT_ID": "1"}
SUMMARY_ENV = {
    "TL_PROJECT": "p",
    "TL_COST_TOPIC_ARN": "arn:aws:sns:r:1:t",
    "TL_BUDGET_AMOUNT": "20",
    "TL_BUDGET_UNIT": "USD",
}
CONTROL_ENV = {"TL_PROJECT": "p", "TL_CONTROL_BUCKET": "control"}
TABLES = [
    (RouterConfig, ROUTER_ENV, "router"),
    (KillerConfig, KILLER_ENV, "budget killer"),
    (SummaryConfig, SUMMARY_ENV, "cost summary"),
    (ControlConfig, CONTROL_ENV, "control"),
]


@pytest.mark.parametrize(("table", "env", "what"), TABLES, ids=lambda v: getattr(v, "__name__", ""))
def test_every_required_variable_missing_is_named(table, env, what):
    with pytest.raises(ConfigError) as refused:
        table.from_env({})
    assert str(refused.value) == f"{what} configuration incomplete, set: {', '.join(env)}"
    assert table.from_env(env)  # and with them all it reads


@pytest.mark.parametrize(
    ("table", "env", "variable"),
    [
        (RouterConfig, ROUTER_ENV, "TL_RATE_BURST"),
        (RouterConfig, ROUTER_ENV, "TL_QUEUE_CAP_PER_USER"),
        (KillerConfig, KILLER_ENV, "TL_KILL_PERCENT"),
        (SummaryConfig, SUMMARY_ENV, "TL_BUDGET_AMOUNT"),
        (ControlConfig, CONTROL_ENV, "TL_QUEUE_WAIT_S"),
        (ControlConfig, CONTROL_ENV, "TL_QUEUE_SPEC"),
        (RouterConfig, ROUTER_ENV, "TL_JWKS"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(table, env, variable):
    with pytest.raises(ConfigError, match=f"configuration: {variable} "):
        table.from_env({**env, variable: "twenty"})


def test_the_router_derives_what_it_did_before():
    config = RouterConfig.from_env({**ROUTER_ENV, "TL_RATE_BURST": "7", "TL_QUEUE_CAP_TOTAL": "9"})
    assert config.issuer.endswith("eu-west-1_pool")  # the trailing / dropped
    assert config.jwks_url == config.issuer + "/.well-known/jwks.json"
    assert (config.limits.burst, config.limits.sustained) == (7, 20)
    assert (config.caps.total, config.caps.per_user) == (9, contract.QUEUE_CAP_PER_USER)
    assert config.jwks is None and config.project == "tinyllama"


def test_an_empty_variable_counts_as_unset(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # the killer's region without one
    config = KillerConfig.from_env({**KILLER_ENV, "TL_KILL_PERCENT": "", "TL_AWS_REGION": ""})
    assert (config.kill_percent, config.region) == (105.0, "eu-west-1")


def test_every_lambda_setting_names_a_distinct_variable():
    for table in (*(t for t, _, _ in TABLES), QueueHealthSettings, EipWatchSettings):
        variables = [f.metadata["env"] for f in settings_table.options(table)]
        assert len(variables) == len(set(variables)), table.__name__
        assert all(v.startswith("TL_") for v in variables), table.__name__
        assert dataclasses.is_dataclass(table)


def test_reading_a_table_adds_no_command_line_parser_to_a_cold_start():
    """The tables' flags are the node's; a Lambda reading its environment through them must
    not pay argparse's import on every cold start."""
    code = (
        "import sys; import tlops.edge.router, tlops.edge.queue_health, tlops.control.actions, "
        "tlops.guard.killer, tlops.guard.summary, tlops.edge.eip_watch; "
        "print('argparse' in sys.modules)"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "False"

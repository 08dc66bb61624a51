"""`tlops.cli.target`: which deployment a command talks to, and how it reads AWS there.

The stand-in is the target only when named (`--env local`, a loopback `--api-url`, the
environment `tlops local env` exports); a local stack that is up, deployed and answering
(`StandingStack`: what the CLI once adopted) never changes what a command against an
account reads. Each flag wins over its environment variable. Nothing is written to
os.environ, and nothing of `tlops.local` is loaded until the stand-in is the target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doubles.standing_stack import StandingStack
from tlops.cli import main, session, target
from tlops.cli.exits import ExitCode
from tlops.cli.target import resolve
from tlops.common import aws

DEV = {
    "project": "tinyllama-dev",
    "region": "eu-central-1",
    "api_url": "https://dev-api.example.com",
    "hosted_ui_url": "https://dev.auth.example.com",
    "client_id": "devclient",
}
# What `eval "$(tlops local env)"` leaves in a shell (its keys, its endpoints).
STAND_IN_EXPORTS = {
    "TL_AWS_REGION": "eu-west-1",
    "TL_REDIS_URL": "redis://127.0.0.1:6390/0",
    "TL_PROJECT": "tinyllama",
    "AWS_ACCESS_KEY_ID": "standin-key-id",
    "AWS_SECRET_ACCESS_KEY": "standin-secret",
}
CLEARED = (
    *("TL_API_URL", "TL_AWS_ENDPOINT_URL", "TL_AWS_REGION", "TL_REDIS_URL", "TL_PROJECT"),
    *("TL_TOKEN", "TL_HOSTED_UI_URL", "TL_CLIENT_ID", "AWS_REGION", "AWS_DEFAULT_REGION"),
    *("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
)


@pytest.fixture
def shell(tmp_path, monkeypatch) -> Path:
    """A shell with no AWS credentials and nothing named; deploy outputs under tmp_path,
    the stand-in's state in tmp_path/stack. Clients are made afresh (the factory keeps
    one per settings for the process, with the credentials it found then)."""
    aws._client.cache_clear()
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TLOPS_STATE_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws" / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata probe
    dev = tmp_path / "xdg" / "tlops" / "dev" / "outputs.json"
    dev.parent.mkdir(parents=True)
    dev.write_text(json.dumps(DEV))
    return tmp_path


@pytest.fixture
def standing(shell) -> Iterator[StandingStack]:
    """A local stack that is up and deployed, as the CLI once adopted it unasked."""
    with StandingStack(shell / "stack") as stack:
        assert stack.adopted_by_the_old_cli()
        yield stack


def args(**given: str | None) -> argparse.Namespace:
    return argparse.Namespace(**given)


def exports(stack: StandingStack, monkeypatch) -> None:
    """`eval "$(tlops local env)"` in this shell."""
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", stack.moto_url)
    monkeypatch.setenv("TL_API_URL", stack.api_url)
    for name, value in STAND_IN_EXPORTS.items():
        monkeypatch.setenv(name, value)


# --- the stand-in only when named -------------------------------------------------------
def test_a_stack_that_nothing_names_is_never_adopted(standing):
    found = resolve(args())
    assert not found.stand_in and found.env is None
    assert (found.api_url, found.endpoint_url, found.stack) == (None, None, None)
    assert found.client("lambda").meta.endpoint_url == "https://lambda.eu-west-1.amazonaws.com"
    assert standing.requests == []  # not even looked at


def test_env_names_an_account_over_a_shell_that_names_the_stand_in(standing, monkeypatch):
    exports(standing, monkeypatch)
    dev = resolve(args(env="dev"))
    assert not dev.stand_in and dev.endpoint_url is None and dev.credentials is None
    assert (dev.api_url, dev.region, dev.project) == (
        DEV["api_url"],
        "eu-central-1",
        DEV["project"],
    )
    assert dev.redis_url is None  # the shell's TL_REDIS_URL is the stand-in's
    assert dev.client("ce").meta.endpoint_url.startswith("https://ce.")
    assert dev.client("lambda").meta.endpoint_url == "https://lambda.eu-central-1.amazonaws.com"
    remote = resolve(args(api_url="https://api.example.com"))  # a remote API flag: an account
    assert not remote.stand_in and remote.endpoint_url is None
    assert standing.requests == []


def test_env_local_is_the_stand_in_and_its_own_stack(standing, monkeypatch):
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # --env local wins
    monkeypatch.setenv("TL_API_URL", "https://elsewhere.example.com")
    local = resolve(args(env="local"))
    assert local.stand_in and local.env == "local"
    assert (local.endpoint_url, local.api_url) == (standing.moto_url, standing.api_url)
    assert local.credentials == ("standin-key-id", "standin-secret")
    assert local.client("s3").meta.endpoint_url == standing.moto_url
    assert local.own_stack() is not None  # its gateway is the API: stand-in tokens go there


def test_env_local_with_the_stack_down_says_to_bring_it_up(shell):
    (shell / "stack").mkdir()
    (shell / "stack" / "outputs.json").write_text(json.dumps({"user_pool_id": "p"}))
    with pytest.raises(session.CliError, match=r"--env local: the local stack is not up"):
        resolve(args(env="local"))


def test_the_environment_names_the_stand_in_and_a_loopback_flag_does(standing, monkeypatch):
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", standing.moto_url)
    named = resolve(args())
    assert named.stand_in and named.endpoint_url == standing.moto_url
    assert named.api_url == standing.api_url  # named, and up: its gateway
    monkeypatch.delenv("TL_AWS_ENDPOINT_URL")
    flagged = resolve(args(api_url=standing.api_url))
    assert flagged.stand_in and flagged.endpoint_url == standing.moto_url


def test_resolve_writes_nothing_to_the_environment(standing, monkeypatch):
    exports(standing, monkeypatch)
    before = dict(os.environ)
    for given in (args(), args(env="dev"), args(env="local"), args(region="us-east-1")):
        resolve(given).client("sts")
    assert dict(os.environ) == before


# --- each flag over its variable --------------------------------------------------------
def test_api_url_flag_then_env_outputs_then_tl_api_url(shell, monkeypatch):
    monkeypatch.setenv("TL_API_URL", "https://from-the-shell.example.com")
    assert resolve(args()).api_url == "https://from-the-shell.example.com"
    assert resolve(args(env="dev")).api_url == DEV["api_url"]
    flag = "https://flag.example.com"
    assert resolve(args(env="dev", api_url=flag)).api_url == flag


def test_region_flag_then_env_outputs_then_tl_aws_region_then_aws_region(shell, monkeypatch):
    assert resolve(args()).region == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert resolve(args()).region == "us-west-2"
    monkeypatch.setenv("TL_AWS_REGION", "ap-south-1")
    assert resolve(args()).region == "ap-south-1"
    assert resolve(args(env="dev")).region == "eu-central-1"
    flagged = resolve(args(env="dev", region="sa-east-1"))
    assert flagged.region == "sa-east-1"
    assert flagged.client("lambda").meta.region_name == "sa-east-1"


def test_the_stand_ins_region_flag_wins_too(standing, monkeypatch):
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", standing.moto_url)
    monkeypatch.setenv("TL_AWS_REGION", "us-east-1")
    assert resolve(args()).region == "us-east-1"
    assert resolve(args(region="eu-north-1")).region == "eu-north-1"


def test_profile_flag_over_aws_profile_and_the_shells_keys(shell, monkeypatch):
    (shell / "aws").mkdir()
    (shell / "aws" / "credentials").write_text(
        "[flagged]\naws_access_key_id = KEY-OF-FLAG\naws_secret_access_key = s1\n"
        "[shell]\naws_access_key_id = KEY-OF-SHELL\naws_secret_access_key = s2\n"
    )

    def key(found: target.Target) -> str:
        return found.client("sts")._request_signer._credentials.access_key

    monkeypatch.setenv("AWS_PROFILE", "shell")
    assert resolve(args(env="dev")).profile is None  # boto3 reads AWS_PROFILE itself
    assert key(resolve(args(env="dev"))) == "KEY-OF-SHELL"
    assert key(resolve(args(env="dev", profile="flagged"))) == "KEY-OF-FLAG"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "standin-key-id")  # an explicit profile wins
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "standin-secret")
    assert key(resolve(args(env="dev", profile="flagged"))) == "KEY-OF-FLAG"
    with pytest.raises(session.CliError, match="placeholder keys"):
        resolve(args(env="local", profile="flagged"))


# --- what a command against an account reads --------------------------------------------
def test_cost_env_reads_the_account_and_says_what_to_fix_without_credentials(
    standing, monkeypatch, capsys
):
    exports(standing, monkeypatch)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # no credentials for the account at all
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert main(["cost", "--env", "dev"]) == ExitCode.SETUP
    err = capsys.readouterr().err
    assert "no usable AWS credentials for deployment dev (region eu-central-1)" in err
    assert "AWS_PROFILE" in err and "--profile NAME" in err and "--env local" in err
    assert "deploy.yml" not in err
    assert standing.requests == []  # the stand-in was not read


def test_env_outputs_missing_says_which_deploy_writes_them(shell):
    with pytest.raises(session.CliError) as missing:
        resolve(args(env="prod"))
    assert "ansible-playbook -i inventories/prod playbooks/deploy.yml" in str(missing.value)
    with pytest.raises(session.CliError, match="not an environment name"):
        resolve(args(env="../etc"))


# --- nothing of the stand-in is loaded before it is the target --------------------------
LOADED = """
import sys
import tlops.cli.target
from tlops.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print([m for m in sys.modules if m.startswith("tlops.local")])
"""


@pytest.mark.parametrize("argv", [["infer", "--help"], ["cost", "--help"], ["--help"]])
def test_help_loads_no_stand_in_module(argv, shell):
    env = {**os.environ, "TL_AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # even when named
    done = subprocess.run([sys.executable, "-c", LOADED, *argv], env=env, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    assert "usage: tlops" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_stand_ins_outputs_name_no_hosted_ui_to_log_in_with(standing, capsys, monkeypatch):
    """Its outputs carry a hosted-UI address moto does not serve: never opened."""
    assert main(["login", "--env", "local"]) == ExitCode.SETUP
    assert "tlops token --user NAME" in capsys.readouterr().err
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", standing.moto_url)
    monkeypatch.setenv("TL_API_URL", "https://api.example.com")  # not its gateway: no token
    assert main(["infer", "hi"]) == ExitCode.SETUP
    assert "no token for https://api.example.com: log in" in capsys.readouterr().err

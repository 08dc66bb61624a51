"""Stand-in users (`tlops token --user NAME --group admins`) against moto's Cognito."""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
from pathlib import Path

import pytest

from tests.support.gateway_fixtures import jwt_claims
from tlops.common import aws
from tlops.local import users

pytestmark = pytest.mark.integration


@pytest.fixture
def pool(aws_stand_in) -> dict[str, str]:
    """A pool, its app client and its `admins` group, as deploy.yml's auth role makes them."""
    idp = aws.client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="tinyllama-users")["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="cli",
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    idp.create_group(UserPoolId=pool_id, GroupName="admins")
    return {"pool_id": pool_id, "client_id": client_id}


def test_a_user_put_in_admins_gets_it_in_its_token(pool):
    token = users.id_token(**pool, username="alice", groups=["admins"])
    assert jwt_claims(token)["cognito:groups"] == ["admins"]


def test_a_user_without_groups_has_none(pool):
    claims = jwt_claims(users.id_token(**pool, username="bob"))
    assert "admins" not in claims.get("cognito:groups", [])


def test_memberships_add_up_and_a_second_add_is_harmless(pool):
    users.id_token(**pool, username="carol", groups=["admins"])
    again = users.id_token(**pool, username="carol", groups=["admins"])
    later = users.id_token(**pool, username="carol")
    assert jwt_claims(again)["cognito:groups"] == ["admins"]
    assert jwt_claims(later)["cognito:groups"] == ["admins"]


def test_a_group_the_pool_lacks_is_named(pool):
    with pytest.raises(users.UnknownGroup, match="'operators'"):
        users.id_token(**pool, username="dave", groups=["operators"])


@pytest.fixture
def stack_state(pool, aws_stand_in, tmp_path, monkeypatch) -> Path:
    """What `tlops token` reads of the local stack: it is up on the stand-in's port, and
    deploy.yml made the pool. The shell names nothing and holds no keys: the stand-in's
    are handed to its client."""
    port = urllib.parse.urlsplit(aws_stand_in).port
    (tmp_path / "stack.json").write_text(json.dumps({"pids": {"moto": 1}, "ports": {"moto": port}}))
    (tmp_path / "outputs.json").write_text(
        json.dumps({"user_pool_id": pool["pool_id"], "client_id": pool["client_id"]})
    )
    monkeypatch.setenv("TLOPS_STATE_DIR", str(tmp_path))
    for name in ("TL_AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    return tmp_path


def test_tlops_token_takes_repeated_groups(stack_state, capsys):
    from tlops.cli import build_parser, local

    args = build_parser().parse_args(["token", "--user", "erin", "--group", "admins"])
    assert args.group == ["admins"]
    assert build_parser().parse_args(["token", "--user", "erin"]).group == []
    before = dict(os.environ)
    assert local.cmd_token(args) == 0
    assert jwt_claims(capsys.readouterr().out.strip())["cognito:groups"] == ["admins"]
    assert dict(os.environ) == before  # the stand-in's keys were never exported


def test_tlops_token_names_a_missing_group_and_what_makes_it(stack_state):
    from tlops.cli import local
    from tlops.cli.session import CliError
    from tlops.cli.target import resolve

    with pytest.raises(CliError, match=r"no group 'auditors'.*deploy\.yml's auth role"):
        local.local_token(resolve(argparse.Namespace(), local=True), "frank", ("auditors",))

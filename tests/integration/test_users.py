"""Stand-in users (`tlops token --user NAME --group admins`) against moto's Cognito."""

from __future__ import annotations

import pytest

from tlops.common import aws
from tlops.local import users

from .gateway_fixtures import jwt_claims

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


class RunningStack:
    """What `tlops token` reads of the local stack: it is up, and deploy.yml made the pool."""

    def __init__(self, pool: dict[str, str], aws_env: dict[str, str]):
        self._pool, self._aws_env = pool, aws_env

    def load(self) -> dict:
        return {"pids": {"moto": 1}}

    def outputs(self) -> dict[str, str]:
        return {"user_pool_id": self._pool["pool_id"], "client_id": self._pool["client_id"]}

    def aws_env(self) -> dict[str, str]:
        return self._aws_env


def test_tlops_token_takes_repeated_groups(pool, aws_stand_in, capsys, monkeypatch):
    from tlops.cli import build_parser, local

    args = build_parser().parse_args(["token", "--user", "erin", "--group", "admins"])
    assert args.group == ["admins"]
    assert build_parser().parse_args(["token", "--user", "erin"]).group == []
    stack = RunningStack(pool, {"TL_AWS_ENDPOINT_URL": aws_stand_in})
    monkeypatch.setattr(local, "LocalStack", lambda: stack)
    assert local.cmd_token(args) == 0
    assert jwt_claims(capsys.readouterr().out.strip())["cognito:groups"] == ["admins"]


def test_tlops_token_names_a_missing_group_and_what_makes_it(pool, aws_stand_in):
    from tlops.cli import local
    from tlops.cli.session import CliError

    stack = RunningStack(pool, {"TL_AWS_ENDPOINT_URL": aws_stand_in})
    with pytest.raises(CliError, match=r"no group 'auditors'.*deploy\.yml's auth role"):
        local.local_token(stack, "frank", ("auditors",))

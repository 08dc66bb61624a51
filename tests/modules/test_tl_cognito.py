"""tl_cognito: the stand-in's life cycle, real sign-in with the returned ids, bad input,
tag-scoped deletion, and the AWS-only paths (full-configuration updates, tagging) via a Stubber."""

from __future__ import annotations

import copy
import datetime as dt

import jwt
import pytest
from ansible.module_utils.common import warnings

from .conftest import ACCOUNT_ID, REGION, STUB_ARGS
from .harness import ModuleFailed, warned
from .harness import run_module as _run_module

POOL = "tinyllama-users"
TAGS = {"Project": "tinyllama", "Role": "auth"}
CALLBACK = "http://127.0.0.1:8765/callback"
CLIENT = {"name": "tinyllama-cli", "callback_urls": [CALLBACK]}
PREFIX = "tl-dev-users"
PASSWORD = "Correct-Horse-42-battery"

# The stub credentials are no_log and Ansible masks their value wherever it appears in the
# output; the conftest's "x" would mask every x in ids and URLs.
AWS_ARGS = {**STUB_ARGS, "access_key": "stub-access-key", "secret_key": "stub-secret-key"}


def run_module(name, args, **kwargs):
    """The harness's run_module with ansible's process-wide warning store emptied first
    (in-process runs would otherwise see the warnings of every earlier run)."""
    warnings._global_warnings.clear()
    warnings._global_deprecations.clear()
    return _run_module(name, args, **kwargs)


def cognito_args(base, **over):
    return {**base, "pool_name": POOL, "client": CLIENT, "tags": TAGS, **over}


def pools(aws, name=POOL):
    listed = aws("cognito-idp").list_user_pools(MaxResults=60)["UserPools"]
    return [p["Id"] for p in listed if p["Name"] == name]


def the_client(aws, pool_id):
    idp = aws("cognito-idp")
    (summary,) = idp.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    return idp.describe_user_pool_client(UserPoolId=pool_id, ClientId=summary["ClientId"])[
        "UserPoolClient"
    ]


def group_names(aws, pool_id):
    return sorted(
        g["GroupName"] for g in aws("cognito-idp").list_groups(UserPoolId=pool_id)["Groups"]
    )


# --- the stand-in ---------------------------------------------------------------------------
def test_life_cycle_on_the_stand_in(aws_args, aws):
    idp = aws("cognito-idp")
    args = cognito_args(aws_args, domain_prefix=PREFIX)

    planned = run_module("tl_cognito", args, check=True)
    assert planned["changed"] is True
    assert planned["user_pool_id"] is None
    assert planned["diff"]["after"]["client"]["callback_urls"] == [CALLBACK]
    assert pools(aws) == []

    made = run_module("tl_cognito", args)
    assert made["changed"] is True
    assert not made.get("warnings")  # everything read back as planned
    (pool_id,) = pools(aws)
    assert made["user_pool_id"] == pool_id
    pool = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    assert made["user_pool_arn"] == pool["Arn"]
    assert pool["UserPoolTags"] == TAGS
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] == 12
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert pool.get("DeletionProtection", "INACTIVE") == "INACTIVE"
    assert idp.get_user_pool_mfa_config(UserPoolId=pool_id)["MfaConfiguration"] == "OFF"
    client = the_client(aws, pool_id)
    assert made["client_id"] == client["ClientId"]
    assert "ClientSecret" not in client
    assert client["CallbackURLs"] == [CALLBACK]
    assert client["AllowedOAuthFlows"] == ["code"]
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    assert client["SupportedIdentityProviders"] == ["COGNITO"]
    assert client["PreventUserExistenceErrors"] == "ENABLED"
    assert sorted(client["AllowedOAuthScopes"]) == ["email", "openid", "profile"]
    assert sorted(client["ExplicitAuthFlows"]) == [
        "ALLOW_REFRESH_TOKEN_AUTH",
        "ALLOW_USER_SRP_AUTH",
    ]
    assert client["IdTokenValidity"] == 60
    assert client["RefreshTokenValidity"] == 30
    assert client["TokenValidityUnits"]["IdToken"] == "minutes"
    (admins,) = idp.list_groups(UserPoolId=pool_id)["Groups"]
    assert (admins["GroupName"], admins["Description"]) == ("admins", "may call admin routes")
    assert (
        idp.describe_user_pool_domain(Domain=PREFIX)["DomainDescription"]["UserPoolId"] == pool_id
    )
    issuer = f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}"
    assert made["issuer"] == issuer
    assert made["jwks_url"] == f"{issuer}/.well-known/jwks.json"
    assert (
        made["endpoint_jwks_url"] == f"{aws_args['endpoint_url']}/{pool_id}/.well-known/jwks.json"
    )
    assert made["groups"] == ["admins"]
    assert made["domain"] == PREFIX
    assert made["hosted_ui_url"] == f"https://{PREFIX}.auth.{REGION}.amazoncognito.com"
    assert made["diff"]["before"] == {}

    again = run_module("tl_cognito", args)
    assert again["changed"] is False
    assert again["client_id"] == made["client_id"]
    assert not again.get("warnings")
    assert again["diff"]["before"] == again["diff"]["after"]

    moved = ["http://localhost:9000/callback", "https://app.example.com/callback"]
    changed = run_module("tl_cognito", {**args, "client": {**CLIENT, "callback_urls": moved}})
    assert changed["changed"] is True
    assert changed["diff"]["before"]["client"]["callback_urls"] == [CALLBACK]
    assert changed["diff"]["after"]["client"]["callback_urls"] == moved
    assert changed["client_id"] == made["client_id"]  # updated in place
    assert not changed.get("warnings")
    client = the_client(aws, pool_id)
    assert client["CallbackURLs"] == moved
    assert client["IdTokenValidity"] == 60  # the full configuration was carried
    assert client["AllowedOAuthFlows"] == ["code"]
    args = {**args, "client": {**CLIENT, "callback_urls": moved}}

    groups = [{"name": "admins", "description": "may call admin routes"}, {"name": "ops"}]
    grown = run_module("tl_cognito", {**args, "groups": groups})
    assert grown["changed"] is True
    assert grown["groups"] == ["admins", "ops"]
    assert not grown.get("warnings")  # everything read back as planned
    assert group_names(aws, pool_id) == ["admins", "ops"]
    assert run_module("tl_cognito", {**args, "groups": groups})["changed"] is False

    retagged = run_module(
        "tl_cognito", {**args, "tags": {**TAGS, "Role": "identity", "Owner": "me"}}
    )
    assert retagged["changed"] is True
    assert retagged["diff"]["after"]["tags"] == {**TAGS, "Role": "identity", "Owner": "me"}
    assert warned(retagged, "does not implement Cognito TagResource")  # the stand-in's gap, said
    assert not warned(retagged, "did not apply")  # and the fallback really wrote them
    pool = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    assert pool["UserPoolTags"] == {**TAGS, "Role": "identity", "Owner": "me"}
    # the fallback carried the full configuration: nothing else was reset
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] == 12
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True

    kept = run_module("tl_cognito", {**args, "tags": {"Project": "tinyllama"}, "purge_tags": False})
    assert kept["changed"] is False
    purged = run_module("tl_cognito", {**args, "tags": {"Project": "tinyllama"}})
    assert purged["changed"] is True
    assert purged["diff"]["before"]["tags"] == {**TAGS, "Role": "identity", "Owner": "me"}
    assert idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]["UserPoolTags"] == {
        "Project": "tinyllama"
    }
    assert group_names(aws, pool_id) == ["admins", "ops"]  # not listed, not purged by default

    removal = {**aws_args, "pool_name": POOL, "state": "absent", "tags": {"Project": "tinyllama"}}
    assert run_module("tl_cognito", removal, check=True)["changed"] is True
    assert pools(aws) == [pool_id]
    gone = run_module("tl_cognito", removal)
    assert gone["changed"] is True
    assert gone["diff"]["before"]["pool_name"] == POOL
    assert pools(aws) == []
    assert idp.describe_user_pool_domain(Domain=PREFIX)["DomainDescription"] == {}
    assert run_module("tl_cognito", removal)["changed"] is False


def test_check_mode_on_an_existing_pool_writes_nothing(aws_args, aws):
    run_module("tl_cognito", cognito_args(aws_args))
    (pool_id,) = pools(aws)
    planned = run_module(
        "tl_cognito",
        cognito_args(aws_args, password_minimum_length=16, groups=[{"name": "ops"}]),
        check=True,
    )
    assert planned["changed"] is True
    assert planned["diff"]["after"]["password_minimum_length"] == 16
    pool = aws("cognito-idp").describe_user_pool(UserPoolId=pool_id)["UserPool"]
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] == 12
    assert group_names(aws, pool_id) == ["admins"]


def test_the_returned_ids_sign_a_user_in(aws_args, aws):
    flows = ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_ADMIN_USER_PASSWORD_AUTH"]
    out = run_module(
        "tl_cognito", cognito_args(aws_args, client={**CLIENT, "explicit_auth_flows": flows})
    )
    idp = aws("cognito-idp")
    pool_id, client_id = out["user_pool_id"], out["client_id"]
    idp.admin_create_user(UserPoolId=pool_id, Username="ada", MessageAction="SUPPRESS")
    idp.admin_set_user_password(
        UserPoolId=pool_id, Username="ada", Password=PASSWORD, Permanent=True
    )
    answer = idp.admin_initiate_auth(
        UserPoolId=pool_id,
        ClientId=client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "ada", "PASSWORD": PASSWORD},
    )
    token = answer["AuthenticationResult"]["IdToken"]
    key = jwt.PyJWKClient(out["endpoint_jwks_url"]).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=client_id, issuer=out["issuer"]
    )
    assert claims["token_use"] == "id"
    assert claims["cognito:username"] == "ada"


def test_mfa_optional_and_a_longer_password(aws_args, aws):
    args = cognito_args(aws_args, mfa="OPTIONAL", password_minimum_length=14)
    out = run_module("tl_cognito", args)
    idp = aws("cognito-idp")
    mfa = idp.get_user_pool_mfa_config(UserPoolId=out["user_pool_id"])
    assert mfa["MfaConfiguration"] == "OPTIONAL"
    assert mfa["SoftwareTokenMfaConfiguration"] == {"Enabled": True}
    assert run_module("tl_cognito", args)["changed"] is False
    off = run_module("tl_cognito", {**args, "mfa": "OFF"})
    assert off["diff"]["before"]["mfa"] == "OPTIONAL"
    assert off["diff"]["after"]["mfa"] == "OFF"
    assert idp.get_user_pool_mfa_config(UserPoolId=out["user_pool_id"])["MfaConfiguration"] == "OFF"
    pool = idp.describe_user_pool(UserPoolId=out["user_pool_id"])["UserPool"]
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] == 14


def test_deletion_protection_blocks_absent_until_turned_off(aws_args, aws):
    # The stand-in would delete a protected pool anyway: the refusal is the module's own.
    protected = run_module("tl_cognito", cognito_args(aws_args, deletion_protection=True))
    pool_id = protected["user_pool_id"]
    pool = aws("cognito-idp").describe_user_pool(UserPoolId=pool_id)["UserPool"]
    assert pool["DeletionProtection"] == "ACTIVE"
    removal = {**aws_args, "pool_name": POOL, "state": "absent", "tags": TAGS}
    with pytest.raises(ModuleFailed, match="deletion protection on; turn it off first"):
        run_module("tl_cognito", removal)
    assert pools(aws) == [pool_id]
    unprotected = run_module("tl_cognito", cognito_args(aws_args, deletion_protection=False))
    assert unprotected["diff"]["before"]["deletion_protection"] is True
    assert unprotected["diff"]["after"]["deletion_protection"] is False
    assert run_module("tl_cognito", removal)["changed"] is True
    assert pools(aws) == []


def test_groups_are_purged_only_when_asked(aws_args, aws):
    out = run_module("tl_cognito", cognito_args(aws_args))
    idp = aws("cognito-idp")
    idp.create_group(UserPoolId=out["user_pool_id"], GroupName="stray")
    assert run_module("tl_cognito", cognito_args(aws_args))["changed"] is False
    described = [{"name": "admins", "description": "admin routes", "precedence": 1}]
    purged = run_module("tl_cognito", cognito_args(aws_args, groups=described, purge_groups=True))
    assert purged["changed"] is True
    assert purged["groups"] == ["admins"]
    (admins,) = idp.list_groups(UserPoolId=out["user_pool_id"])["Groups"]
    assert (admins["Description"], admins["Precedence"]) == ("admin routes", 1)


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/callback", "http://localhost/callback", "http://example.com/callback"]
)
def test_a_callback_url_without_port_is_refused(aws_args, aws, url):
    with pytest.raises(ModuleFailed, match=r"client\.callback_urls.*needs its port"):
        run_module("tl_cognito", cognito_args(aws_args, client={**CLIENT, "callback_urls": [url]}))
    assert pools(aws) == []


def test_an_unknown_auth_flow_is_refused(aws_args, aws):
    client = {**CLIENT, "explicit_auth_flows": ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_MAGIC"]}
    with pytest.raises(ModuleFailed, match="explicit_auth_flows") as failed:
        run_module("tl_cognito", cognito_args(aws_args, client=client))
    assert "ALLOW_MAGIC" in failed.value.result["msg"]
    assert pools(aws) == []


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        ("TL-Users", "lower-case"),
        ("-tl-users", "hyphen"),
        ("tl_users", "lower-case"),
        ("my-aws-users", "contains aws"),
        ("amazonian", "contains amazon"),
        ("tl-cognito", "contains cognito"),
    ],
)
def test_a_bad_domain_prefix_is_refused(aws_args, aws, prefix, why):
    with pytest.raises(ModuleFailed, match="domain_prefix") as failed:
        run_module("tl_cognito", cognito_args(aws_args, domain_prefix=prefix))
    assert why in failed.value.result["msg"]
    assert pools(aws) == []


@pytest.mark.parametrize(
    ("over", "named"),
    [
        ({"client": {**CLIENT, "logout_urls": ["http://localhost/bye"]}}, "client.logout_urls"),
        ({"client": {**CLIENT, "id_token_validity_minutes": 2}}, "id_token_validity_minutes"),
        ({"client": {**CLIENT, "refresh_token_validity_days": 0}}, "refresh_token_validity_days"),
        ({"client": {**CLIENT, "oauth_scopes": []}}, "client.oauth_scopes"),
        ({"password_minimum_length": 5}, "password_minimum_length"),
        ({"groups": [{"name": "a"}, {"name": "a"}]}, "groups"),
        ({"groups": [{"name": "a", "precedence": -1}]}, "precedence"),
    ],
)
def test_other_bad_input_fails_naming_the_option(stubbed, over, named):
    stubbed("cognito-idp")  # nothing queued: any call would fail the test
    with pytest.raises(ModuleFailed, match=named):
        run_module("tl_cognito", cognito_args(AWS_ARGS, **over))


def test_absent_needs_tags(stubbed):
    stubbed("cognito-idp")
    with pytest.raises(ModuleFailed, match="state=absent needs tags with at least Project"):
        run_module("tl_cognito", {**AWS_ARGS, "pool_name": POOL, "state": "absent"})


# --- look-alikes, duplicates, secrets, domains ---------------------------------------------
def test_an_untagged_look_alike_is_never_deleted(aws_args, aws):
    idp = aws("cognito-idp")
    other = idp.create_user_pool(PoolName=POOL, UserPoolTags={"Project": "someone-else"})
    removal = {**aws_args, "pool_name": POOL, "state": "absent", "tags": {"Project": "tinyllama"}}
    out = run_module("tl_cognito", removal)
    assert out["changed"] is False
    assert warned(out, f"{other['UserPool']['Id']} named {POOL} was not deleted")
    assert pools(aws) == [other["UserPool"]["Id"]]


def test_absent_beside_a_look_alike_deletes_only_the_tagged_pool(aws_args, aws):
    idp = aws("cognito-idp")
    ours = run_module("tl_cognito", cognito_args(aws_args))["user_pool_id"]
    theirs = idp.create_user_pool(PoolName=POOL)["UserPool"]["Id"]
    removal = {**aws_args, "pool_name": POOL, "state": "absent", "tags": {"Project": "tinyllama"}}
    out = run_module("tl_cognito", removal)
    assert out["changed"] is True
    assert warned(out, f"{theirs} named {POOL} was not deleted")
    assert pools(aws) == [theirs]
    assert ours not in pools(aws)


def test_two_tagged_pools_of_one_name_are_not_guessed_between(aws_args, aws):
    idp = aws("cognito-idp")
    first = idp.create_user_pool(PoolName=POOL, UserPoolTags=TAGS)["UserPool"]["Id"]
    second = idp.create_user_pool(PoolName=POOL, UserPoolTags=TAGS)["UserPool"]["Id"]
    with pytest.raises(ModuleFailed, match="user pools are named") as failed:
        run_module("tl_cognito", cognito_args(aws_args))
    assert first in failed.value.result["msg"] and second in failed.value.result["msg"]
    removal = {**aws_args, "pool_name": POOL, "state": "absent", "tags": TAGS}
    with pytest.raises(ModuleFailed, match="will not guess") as failed:
        run_module("tl_cognito", removal)
    assert first in failed.value.result["msg"] and second in failed.value.result["msg"]
    assert sorted(pools(aws)) == sorted([first, second])


def test_an_existing_client_with_a_secret_must_be_replaced(aws_args, aws):
    idp = aws("cognito-idp")
    pool_id = idp.create_user_pool(PoolName=POOL, UserPoolTags=TAGS)["UserPool"]["Id"]
    secret = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName=CLIENT["name"], GenerateSecret=True
    )["UserPoolClient"]
    with pytest.raises(ModuleFailed, match="has a client secret") as failed:
        run_module("tl_cognito", cognito_args(aws_args))
    assert "cannot remove a secret" in failed.value.result["msg"]
    assert secret["ClientSecret"] not in str(failed.value.result)
    assert idp.list_groups(UserPoolId=pool_id)["Groups"] == []  # failed before writing anything


def test_a_pool_with_another_domain_is_not_given_a_second(aws_args, aws):
    out = run_module("tl_cognito", cognito_args(aws_args, domain_prefix=PREFIX))
    with pytest.raises(ModuleFailed, match=f"already has the hosted-UI domain '{PREFIX}'"):
        run_module("tl_cognito", cognito_args(aws_args, domain_prefix="tl-other-users"))
    described = aws("cognito-idp").describe_user_pool(UserPoolId=out["user_pool_id"])["UserPool"]
    assert described["Domain"] == PREFIX
    assert (
        aws("cognito-idp").describe_user_pool_domain(Domain="tl-other-users")["DomainDescription"]
        == {}
    )


def test_a_prefix_taken_by_another_pool_is_refused(aws_args, aws):
    idp = aws("cognito-idp")
    other = idp.create_user_pool(PoolName="someone-else")["UserPool"]["Id"]
    idp.create_user_pool_domain(UserPoolId=other, Domain=PREFIX)
    with pytest.raises(ModuleFailed, match=f"taken by user pool {other}"):
        run_module("tl_cognito", cognito_args(aws_args, domain_prefix=PREFIX), check=True)
    assert pools(aws) == []


# --- AWS-only paths (Stubber) -----------------------------------------------------------------
POOL_ID = "eu-west-1_AbCdEf123"
POOL_ARN = f"arn:aws:cognito-idp:{REGION}:{ACCOUNT_ID}:userpool/{POOL_ID}"
CLIENT_ID = "1example23456789abcdefghij"
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def aws_pool(**over):
    """A pool as AWS describes it: legacy message fields and UnusedAccountValidityDays
    included, which UpdateUserPool refuses alongside their replacements."""
    pool = {
        "Id": POOL_ID,
        "Name": POOL,
        "Arn": POOL_ARN,
        "Policies": {
            "PasswordPolicy": {
                "MinimumLength": 12,
                "RequireUppercase": True,
                "RequireLowercase": True,
                "RequireNumbers": True,
                "RequireSymbols": False,
                "TemporaryPasswordValidityDays": 7,
            },
            "SignInPolicy": {"AllowedFirstAuthFactors": ["PASSWORD"]},
        },
        "DeletionProtection": "INACTIVE",
        "LambdaConfig": {},
        "AutoVerifiedAttributes": ["email"],
        "UsernameAttributes": ["email"],
        "EmailVerificationMessage": "Your code is {####}",
        "EmailVerificationSubject": "Your code",
        "VerificationMessageTemplate": {
            "EmailMessage": "Your code is {####}",
            "EmailSubject": "Your code",
            "DefaultEmailOption": "CONFIRM_WITH_CODE",
        },
        "MfaConfiguration": "OFF",
        "EmailConfiguration": {"EmailSendingAccount": "COGNITO_DEFAULT"},
        "UserPoolTags": dict(TAGS),
        "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True, "UnusedAccountValidityDays": 7},
        "AccountRecoverySetting": {
            "RecoveryMechanisms": [{"Priority": 1, "Name": "verified_email"}]
        },
        "UserPoolTier": "ESSENTIALS",
        "CreationDate": WHEN,
        "LastModifiedDate": WHEN,
        "EstimatedNumberOfUsers": 3,
        "SchemaAttributes": [{"Name": "email", "AttributeDataType": "String"}],
    }
    pool.update(over)
    return pool


def aws_client(**over):
    app = {
        "UserPoolId": POOL_ID,
        "ClientName": CLIENT["name"],
        "ClientId": CLIENT_ID,
        "CreationDate": WHEN,
        "LastModifiedDate": WHEN,
        "RefreshTokenValidity": 30,
        "AccessTokenValidity": 60,
        "IdTokenValidity": 60,
        "TokenValidityUnits": {
            "AccessToken": "minutes",
            "IdToken": "minutes",
            "RefreshToken": "days",
        },
        "ReadAttributes": ["email", "email_verified"],
        "WriteAttributes": ["email"],
        "ExplicitAuthFlows": ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH"],
        "SupportedIdentityProviders": ["COGNITO"],
        "CallbackURLs": [CALLBACK],
        "LogoutURLs": [],
        "AllowedOAuthFlows": ["code"],
        "AllowedOAuthScopes": ["openid", "email", "profile"],
        "AllowedOAuthFlowsUserPoolClient": True,
        "PreventUserExistenceErrors": "ENABLED",
        "EnableTokenRevocation": True,
        "EnablePropagateAdditionalUserContextData": False,
        "AuthSessionValidity": 3,
    }
    app.update(over)
    return app


ADMINS = {
    "GroupName": "admins",
    "UserPoolId": POOL_ID,
    "Description": "may call admin routes",
    "CreationDate": WHEN,
    "LastModifiedDate": WHEN,
}


def queue_reads(stub, pool, app, groups=(ADMINS,)):
    """What read_state asks, in order."""
    stub.add_response("describe_user_pool", {"UserPool": pool}, {"UserPoolId": POOL_ID})
    stub.add_response(
        "get_user_pool_mfa_config",
        {"MfaConfiguration": pool.get("MfaConfiguration", "OFF")},
        {"UserPoolId": POOL_ID},
    )
    stub.add_response(
        "list_user_pool_clients",
        {
            "UserPoolClients": [
                {
                    "ClientId": app["ClientId"],
                    "UserPoolId": POOL_ID,
                    "ClientName": app["ClientName"],
                }
            ]
        },
        {"UserPoolId": POOL_ID, "MaxResults": 60},
    )
    stub.add_response(
        "describe_user_pool_client",
        {"UserPoolClient": app},
        {"UserPoolId": POOL_ID, "ClientId": app["ClientId"]},
    )
    stub.add_response("list_groups", {"Groups": list(groups)}, {"UserPoolId": POOL_ID, "Limit": 60})


def queue_lookup(stub, pool):
    """Finding the pool: listed by name, then described to see it carries our Project tag."""
    stub.add_response(
        "list_user_pools",
        {"UserPools": [{"Id": POOL_ID, "Name": POOL, "CreationDate": WHEN}]},
        {"MaxResults": 60},
    )
    stub.add_response("describe_user_pool", {"UserPool": pool}, {"UserPoolId": POOL_ID})


def test_aws_in_sync_is_no_change(stubbed):
    stub = stubbed("cognito-idp")
    pool = aws_pool()
    queue_lookup(stub, pool)
    queue_reads(stub, pool, aws_client())
    out = run_module("tl_cognito", cognito_args(AWS_ARGS))
    assert out["changed"] is False
    assert out["client_id"] == CLIENT_ID
    assert out["issuer"] == f"https://cognito-idp.{REGION}.amazonaws.com/{POOL_ID}"
    assert out["endpoint_jwks_url"] is None


def test_aws_client_update_carries_the_token_validity_and_everything_else(stubbed):
    stub = stubbed("cognito-idp")
    # An hour-unit client, as AWS defaults them: 1 hour is 60 minutes, no change for that alone.
    current = aws_client(
        IdTokenValidity=1,
        AccessTokenValidity=1,
        TokenValidityUnits={"AccessToken": "hours", "IdToken": "hours", "RefreshToken": "days"},
        DefaultRedirectURI=CALLBACK,
    )
    pool = aws_pool()
    queue_lookup(stub, pool)
    queue_reads(stub, pool, current)
    spec = {**CLIENT, "id_token_validity_minutes": 15, "refresh_token_validity_days": 7}
    expected = {
        "UserPoolId": POOL_ID,
        "ClientId": CLIENT_ID,
        "ClientName": CLIENT["name"],
        "RefreshTokenValidity": 7,
        "AccessTokenValidity": 15,
        "IdTokenValidity": 15,
        "TokenValidityUnits": {
            "AccessToken": "minutes",
            "IdToken": "minutes",
            "RefreshToken": "days",
        },
        "ReadAttributes": ["email", "email_verified"],
        "WriteAttributes": ["email"],
        "ExplicitAuthFlows": ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH"],
        "SupportedIdentityProviders": ["COGNITO"],
        "CallbackURLs": [CALLBACK],
        "LogoutURLs": [],
        "DefaultRedirectURI": CALLBACK,
        "AllowedOAuthFlows": ["code"],
        "AllowedOAuthScopes": ["openid", "email", "profile"],
        "AllowedOAuthFlowsUserPoolClient": True,
        "PreventUserExistenceErrors": "ENABLED",
        "EnableTokenRevocation": True,
        "EnablePropagateAdditionalUserContextData": False,
        "AuthSessionValidity": 3,
    }
    updated = aws_client(IdTokenValidity=15, AccessTokenValidity=15, RefreshTokenValidity=7)
    stub.add_response("update_user_pool_client", {"UserPoolClient": updated}, expected)
    queue_reads(stub, aws_pool(), updated)
    out = run_module("tl_cognito", cognito_args(AWS_ARGS, client=spec))
    assert out["changed"] is True
    assert out["diff"]["before"]["client"]["id_token_validity_minutes"] == 60
    assert out["diff"]["after"]["client"]["id_token_validity_minutes"] == 15
    assert out["diff"]["after"]["client"]["refresh_token_validity_days"] == 7
    assert not out.get("warnings")


def test_aws_pool_update_passes_the_full_configuration(stubbed):
    stub = stubbed("cognito-idp")
    pool = aws_pool()
    queue_lookup(stub, pool)
    queue_reads(stub, pool, aws_client())
    expected = {
        "UserPoolId": POOL_ID,
        "Policies": {
            "PasswordPolicy": {
                "MinimumLength": 16,
                "RequireUppercase": True,
                "RequireLowercase": True,
                "RequireNumbers": True,
                "RequireSymbols": False,
                "TemporaryPasswordValidityDays": 7,
            },
            "SignInPolicy": {"AllowedFirstAuthFactors": ["PASSWORD"]},
        },
        "DeletionProtection": "ACTIVE",
        "LambdaConfig": {},
        "AutoVerifiedAttributes": ["email"],
        "VerificationMessageTemplate": aws_pool()["VerificationMessageTemplate"],
        "MfaConfiguration": "OFF",
        "EmailConfiguration": {"EmailSendingAccount": "COGNITO_DEFAULT"},
        "UserPoolTags": TAGS,
        "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
        "AccountRecoverySetting": aws_pool()["AccountRecoverySetting"],
        "UserPoolTier": "ESSENTIALS",
    }
    stub.add_response("update_user_pool", {}, expected)
    policies = copy.deepcopy(aws_pool()["Policies"])
    policies["PasswordPolicy"]["MinimumLength"] = 16
    queue_reads(stub, aws_pool(Policies=policies, DeletionProtection="ACTIVE"), aws_client())
    out = run_module(
        "tl_cognito",
        cognito_args(AWS_ARGS, password_minimum_length=16, deletion_protection=True),
    )
    assert out["changed"] is True
    assert out["diff"]["before"]["password_minimum_length"] == 12
    assert out["diff"]["after"]["deletion_protection"] is True
    assert not out.get("warnings")


def test_aws_tags_go_through_tag_resource_and_untag_resource(stubbed):
    stub = stubbed("cognito-idp")
    pool = aws_pool(UserPoolTags={**TAGS, "Stale": "yes"})
    queue_lookup(stub, pool)
    queue_reads(stub, pool, aws_client())
    # Removals first, as every tl_* module writes tags (module_utils/tl_aws.py, apply_tags).
    stub.add_response("untag_resource", {}, {"ResourceArn": POOL_ARN, "TagKeys": ["Stale"]})
    stub.add_response("tag_resource", {}, {"ResourceArn": POOL_ARN, "Tags": {"Role": "identity"}})
    queue_reads(stub, aws_pool(UserPoolTags={**TAGS, "Role": "identity"}), aws_client())
    out = run_module("tl_cognito", cognito_args(AWS_ARGS, tags={**TAGS, "Role": "identity"}))
    assert out["changed"] is True  # and no update_user_pool: the stubber holds nothing else
    assert out["diff"]["after"]["tags"] == {**TAGS, "Role": "identity"}
    assert not out.get("warnings")


def test_aws_a_refused_write_fails_with_the_reason(stubbed):
    stub = stubbed("cognito-idp")
    pool = aws_pool()
    queue_lookup(stub, pool)
    queue_reads(stub, pool, aws_client())
    stub.add_client_error(
        "set_user_pool_mfa_config", "InvalidParameterException", "MFA needs a method", 400
    )
    with pytest.raises(ModuleFailed, match="AWS refused the call") as failed:
        run_module("tl_cognito", cognito_args(AWS_ARGS, mfa="OPTIONAL"))
    assert "MFA needs a method" in str(failed.value.result)


def test_aws_a_setting_the_endpoint_did_not_take_is_warned(stubbed):
    stub = stubbed("cognito-idp")
    pool = aws_pool()
    queue_lookup(stub, pool)
    queue_reads(stub, pool, aws_client())
    stub.add_response(
        "set_user_pool_mfa_config",
        {"MfaConfiguration": "OPTIONAL"},
        {
            "UserPoolId": POOL_ID,
            "SoftwareTokenMfaConfiguration": {"Enabled": True},
            "MfaConfiguration": "OPTIONAL",
        },
    )
    queue_reads(stub, aws_pool(), aws_client())  # still OFF when read back
    out = run_module("tl_cognito", cognito_args(AWS_ARGS, mfa="OPTIONAL"))
    assert out["changed"] is True
    assert warned(out, "reports mfa='OFF', not 'OPTIONAL'")


def test_an_untagged_pool_of_the_same_name_is_never_adopted(aws_args, aws):
    """Pool names are not unique: deploying next to someone else's pool of that name makes a
    new pool, and absent deletes only that one."""
    theirs = aws("cognito-idp").create_user_pool(PoolName=POOL)["UserPool"]["Id"]
    made = run_module("tl_cognito", cognito_args(aws_args))
    assert made["changed"] is True
    assert made["user_pool_id"] != theirs
    assert warned(made, "left alone, not managed by this module")
    assert run_module("tl_cognito", cognito_args(aws_args))["changed"] is False
    gone = run_module(
        "tl_cognito", {**aws_args, "pool_name": POOL, "state": "absent", "tags": TAGS}
    )
    assert gone["changed"] is True
    assert pools(aws) == [theirs]

# Part of tl_cognito (plugins/modules/tl_cognito.py). Apache-2.0.
"""The requests that change the pool, its client, groups, domain and tags, and their plans.

UpdateUserPool and UpdateUserPoolClient reset whatever a call leaves out, so their
requests carry the current configuration along with what this module manages.
"""

from __future__ import annotations

import copy

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure, apply_tags

NEW_PASSWORD_POLICY = {
    "RequireUppercase": True,
    "RequireLowercase": True,
    "RequireNumbers": True,
    "RequireSymbols": True,
    "TemporaryPasswordValidityDays": 7,
}
TOKEN_UNITS = {"AccessToken": "minutes", "IdToken": "minutes", "RefreshToken": "days"}
LEGACY_MESSAGES = ("SmsVerificationMessage", "EmailVerificationMessage", "EmailVerificationSubject")


def unique(items):
    return list(dict.fromkeys(items))


def fields_of(client, operation):
    """The fields `operation`'s request takes: what an update must carry along."""
    return list(client.meta.service_model.operation_model(operation).input_shape.members)


def client_request(spec, current=None, members=()):
    """CreateUserPoolClient / UpdateUserPoolClient arguments; an update carries what it does
    not manage from `current`, because UpdateUserPoolClient resets whatever it is not given."""
    request = {
        "ClientName": spec["name"],
        "CallbackURLs": unique(spec["callback_urls"]),
        "LogoutURLs": unique(spec["logout_urls"]),
        "AllowedOAuthFlows": ["code"],
        "AllowedOAuthScopes": unique(spec["oauth_scopes"]),
        "AllowedOAuthFlowsUserPoolClient": True,
        "SupportedIdentityProviders": ["COGNITO"],
        "PreventUserExistenceErrors": "ENABLED",
        "ExplicitAuthFlows": unique(spec["explicit_auth_flows"]),
        "IdTokenValidity": spec["id_token_validity_minutes"],
        "AccessTokenValidity": spec["id_token_validity_minutes"],
        "RefreshTokenValidity": spec["refresh_token_validity_days"],
        "TokenValidityUnits": dict(TOKEN_UNITS),
    }
    if current is None:
        return {**request, "GenerateSecret": False}
    carried = {
        key: copy.deepcopy(current[key])
        for key in members
        if key in current and key not in request and key not in ("UserPoolId", "ClientId")
    }
    if carried.get("DefaultRedirectURI") not in (None, *request["CallbackURLs"]):
        carried.pop("DefaultRedirectURI")
    return {
        **carried,
        **request,
        "UserPoolId": current["UserPoolId"],
        "ClientId": current["ClientId"],
    }


def pool_update_request(pool, params, tags, members):
    """UpdateUserPool arguments: the pool's whole current configuration (UpdateUserPool resets
    what it is not given) with the managed settings and the tags the pool must end with."""
    request = {
        key: copy.deepcopy(pool[key])
        for key in members
        if key in pool and key not in ("UserPoolId", "PoolName")
    }
    policies = request.get("Policies") or {}
    password = dict(policies.get("PasswordPolicy") or NEW_PASSWORD_POLICY)
    password["MinimumLength"] = params["password_minimum_length"]
    request["Policies"] = {**policies, "PasswordPolicy": password}
    admin = dict(request.get("AdminCreateUserConfig") or {})
    admin["AllowAdminCreateUserOnly"] = True
    if "TemporaryPasswordValidityDays" in password:
        admin.pop("UnusedAccountValidityDays", None)  # AWS refuses both together
    request["AdminCreateUserConfig"] = admin
    if "VerificationMessageTemplate" in request:  # supersedes the legacy fields
        for key in LEGACY_MESSAGES:
            request.pop(key, None)
    request["DeletionProtection"] = "ACTIVE" if params["deletion_protection"] else "INACTIVE"
    request["MfaConfiguration"] = params["mfa"]
    request["UserPoolTags"] = tags
    request["UserPoolId"] = pool["Id"]
    return request


def create_pool_request(params):
    request = {
        "PoolName": params["pool_name"],
        "Policies": {
            "PasswordPolicy": {
                "MinimumLength": params["password_minimum_length"],
                **NEW_PASSWORD_POLICY,
            }
        },
        "MfaConfiguration": "OFF",  # OPTIONAL is set afterwards with TOTP (no SMS needed)
        "DeletionProtection": "ACTIVE" if params["deletion_protection"] else "INACTIVE",
        "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
    }
    if params["tags"]:
        request["UserPoolTags"] = dict(params["tags"])
    return request


def set_mfa(client, pool_id, mfa):
    if mfa == "OPTIONAL":
        client.set_user_pool_mfa_config(
            UserPoolId=pool_id,
            SoftwareTokenMfaConfiguration={"Enabled": True},
            MfaConfiguration="OPTIONAL",
            aws_retry=True,
        )
    else:
        client.set_user_pool_mfa_config(UserPoolId=pool_id, MfaConfiguration="OFF", aws_retry=True)


# --- plans --------------------------------------------------------------------------------------
def plan_groups(current, desired, purge):
    """(create, update, delete, predicted groups) to go from `current` to `desired`."""
    create, update, predicted = [], [], copy.deepcopy(current)
    for group in desired:
        have = current.get(group["name"])
        description = group["description"]
        precedence = group["precedence"]
        if have is None:
            create.append(group)
            predicted[group["name"]] = {
                k: v
                for k, v in (("Description", description), ("Precedence", precedence))
                if v is not None
            }
            continue
        had = {"Description": have.get("Description") or "", "Precedence": have.get("Precedence")}
        want = {
            "Description": had["Description"] if description is None else description,
            "Precedence": had["Precedence"] if precedence is None else precedence,
        }
        if want != had:
            # UpdateGroup resets what it is not given: Description always goes ("" clears it)
            update.append({**want, "GroupName": group["name"], "RoleArn": have.get("RoleArn")})
            predicted[group["name"]] = {**have, **want}
    listed = {group["name"] for group in desired}
    delete = sorted(name for name in current if purge and name not in listed)
    for name in delete:
        predicted.pop(name)
    return create, update, delete, predicted


def check_domain(client, pool_id, current, prefix):
    """Whether the domain must be created; fails when it cannot be."""
    if prefix is None or current == prefix:
        return False
    if current:
        raise Failure(
            f"user pool {pool_id} already has the hosted-UI domain {current!r}; a pool has one "
            f"prefix domain: set domain_prefix: {current}, or delete that domain first "
            f"(aws cognito-idp delete-user-pool-domain --user-pool-id {pool_id} --domain {current})"
        )
    owner = (
        client.describe_user_pool_domain(Domain=prefix, aws_retry=True)
        .get("DomainDescription", {})
        .get("UserPoolId")
    )
    if owner and owner != pool_id:
        raise Failure(f"domain_prefix {prefix!r} is taken by user pool {owner}; choose another")
    return True


def apply_groups(client, pool_id, create, update, delete):
    for group in create:
        extra = {
            k: v
            for k, v in (("Description", group["description"]), ("Precedence", group["precedence"]))
            if v is not None
        }
        client.create_group(UserPoolId=pool_id, GroupName=group["name"], aws_retry=True, **extra)
    for group in update:
        request = {k: v for k, v in group.items() if v is not None}
        client.update_group(UserPoolId=pool_id, aws_retry=True, **request)
    for name in delete:
        client.delete_group(UserPoolId=pool_id, GroupName=name, aws_retry=True)


def write_tags(client, arn, to_set, to_remove):
    apply_tags(
        lambda tags: client.tag_resource(ResourceArn=arn, Tags=tags, aws_retry=True),
        lambda keys: client.untag_resource(ResourceArn=arn, TagKeys=keys, aws_retry=True),
        to_set,
        to_remove,
    )

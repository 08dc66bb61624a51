# Part of tl_cognito (plugins/modules/tl_cognito.py). Apache-2.0.
"""What Cognito holds of the pool, its client, groups and domain, and the views of it."""

from __future__ import annotations

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure, pages

MINUTES_PER = {"seconds": 1 / 60, "minutes": 1, "hours": 60, "days": 1440}


def find_pools(client, name):
    return [
        p for p in pages(client.list_user_pools, "UserPools", MaxResults=60) if p["Name"] == name
    ]


def find_client(client, pool_id, name, strict=True):
    """The described client called `name`, or None; fails if several carry the name
    (or, not `strict`, gives None then: a diff's view must not block a deletion)."""
    found = [
        c["ClientId"]
        for c in pages(
            client.list_user_pool_clients, "UserPoolClients", UserPoolId=pool_id, MaxResults=60
        )
        if c["ClientName"] == name
    ]
    if len(found) > 1 and not strict:
        return None
    if len(found) > 1:
        raise Failure(
            f"user pool {pool_id} has {len(found)} app clients named {name}: "
            f"{', '.join(found)}; delete the extra ones so the module knows which one to manage"
        )
    if not found:
        return None
    return client.describe_user_pool_client(UserPoolId=pool_id, ClientId=found[0], aws_retry=True)[
        "UserPoolClient"
    ]


def read_state(client, pool_id, client_name, strict=True):
    pool = client.describe_user_pool(UserPoolId=pool_id, aws_retry=True)["UserPool"]
    mfa = client.get_user_pool_mfa_config(UserPoolId=pool_id, aws_retry=True).get(
        "MfaConfiguration", "OFF"
    )
    app = find_client(client, pool_id, client_name, strict) if client_name else None
    groups = {
        g["GroupName"]: g for g in pages(client.list_groups, "Groups", UserPoolId=pool_id, Limit=60)
    }
    status = None
    if pool.get("Domain"):
        described = client.describe_user_pool_domain(Domain=pool["Domain"], aws_retry=True)
        status = described.get("DomainDescription", {}).get("Status")
    return {"pool": pool, "mfa": mfa, "client": app, "groups": groups, "domain_status": status}


def refuse_secret(app):
    if app is not None and app.get("ClientSecret"):
        raise Failure(
            f"app client {app['ClientName']} ({app['ClientId']}) has a client secret, and AWS "
            "cannot remove a secret from a client; this public client (the CLI uses PKCE) must "
            "have none: delete that client, or set client.name to a new name, so the module "
            "creates a client without a secret"
        )


# --- views (snake_case, what the diff shows) ----------------------------------------------------
def _number(value):
    return int(value) if float(value).is_integer() else round(value, 4)


def _minutes(app, key, unit_key, default_minutes):
    if app.get(key) is None:
        return default_minutes
    unit = (app.get("TokenValidityUnits") or {}).get(
        unit_key, "days" if unit_key == "RefreshToken" else "hours"
    )
    return app[key] * MINUTES_PER[unit]


def client_view(app):
    if app is None:
        return None
    return {
        "name": app["ClientName"],
        "callback_urls": sorted(app.get("CallbackURLs") or []),
        "logout_urls": sorted(app.get("LogoutURLs") or []),
        "oauth_scopes": sorted(app.get("AllowedOAuthScopes") or []),
        "explicit_auth_flows": sorted(app.get("ExplicitAuthFlows") or []),
        "id_token_validity_minutes": _number(_minutes(app, "IdTokenValidity", "IdToken", 60)),
        "access_token_validity_minutes": _number(
            _minutes(app, "AccessTokenValidity", "AccessToken", 60)
        ),
        "refresh_token_validity_days": _number(
            _minutes(app, "RefreshTokenValidity", "RefreshToken", 30 * 1440) / 1440
        ),
        "allowed_oauth_flows": sorted(app.get("AllowedOAuthFlows") or []),
        "allowed_oauth_flows_user_pool_client": bool(app.get("AllowedOAuthFlowsUserPoolClient")),
        "supported_identity_providers": sorted(app.get("SupportedIdentityProviders") or []),
        "prevent_user_existence_errors": app.get("PreventUserExistenceErrors", "LEGACY"),
    }


def groups_view(groups):
    return [
        # AWS omits an empty description, the stand-in returns "": both read as none
        {
            "name": name,
            "description": g.get("Description") or None,
            "precedence": g.get("Precedence"),
        }
        for name, g in sorted(groups.items())
    ]


def pool_view(state):
    pool = state["pool"]
    password = (pool.get("Policies") or {}).get("PasswordPolicy") or {}
    admin_only = (pool.get("AdminCreateUserConfig") or {}).get("AllowAdminCreateUserOnly", False)
    return {
        "pool_name": pool["Name"],
        "password_minimum_length": password.get("MinimumLength", 8),
        "mfa": state["mfa"],
        "deletion_protection": pool.get("DeletionProtection") == "ACTIVE",
        "self_sign_up": not admin_only,
        "tags": dict(pool.get("UserPoolTags") or {}),
        "client": client_view(state["client"]),
        "groups": groups_view(state["groups"]),
        "domain": pool.get("Domain"),
    }


def outputs(state, params):
    if state is None:
        return {
            "user_pool_id": None,
            "user_pool_arn": None,
            "client_id": None,
            "issuer": None,
            "jwks_url": None,
            "endpoint_jwks_url": None,
            "groups": [],
            "domain": None,
            "domain_status": None,
            "hosted_ui_url": None,
        }
    pool = state["pool"]
    pool_id = pool.get("Id")
    arn = pool.get("Arn")
    region = arn.split(":")[3] if arn else None
    issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool_id}" if pool_id else None
    endpoint = (params.get("endpoint_url") or "").rstrip("/")
    domain = pool.get("Domain")
    return {
        "user_pool_id": pool_id,
        "user_pool_arn": arn,
        "client_id": (state["client"] or {}).get("ClientId"),
        "issuer": issuer,
        "jwks_url": f"{issuer}/.well-known/jwks.json" if issuer else None,
        "endpoint_jwks_url": (
            f"{endpoint}/{pool_id}/.well-known/jwks.json" if endpoint and pool_id else None
        ),
        "groups": sorted(state["groups"]),
        "domain": domain,
        "domain_status": state.get("domain_status"),
        "hosted_ui_url": (
            f"https://{domain}.auth.{region}.amazoncognito.com" if domain and region else None
        ),
    }

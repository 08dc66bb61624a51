#!/usr/bin/python
# tinyllama-ops custom module: the stack's Cognito user pool. Apache-2.0.

DOCUMENTATION = r"""
---
module: tl_cognito
short_description: Manage the stack's Cognito user pool, app client, groups and hosted-UI domain
description:
  - Creates, updates in place or deletes one Amazon Cognito user pool, identified by its name,
    together with the stack's public app client, its groups and its hosted-UI domain prefix.
  - This module exists because neither C(amazon.aws) nor C(community.aws) has modules for Cognito
    user pools or app clients, and the HTTP API's JWT authorizer needs both.
  - The app client is public, for the C(tlops) CLI and local front ends - authorization-code grant
    only (C(AllowedOAuthFlows=[code]), C(AllowedOAuthFlowsUserPoolClient=true)), no client secret,
    the Cognito directory as its only identity provider, and C(PreventUserExistenceErrors=ENABLED).
    A public client cannot keep a secret, so the CLI proves itself with PKCE (RFC 7636, S256)
    during the code exchange; nothing in this module configures PKCE, Cognito requires no setting.
  - Self sign-up is always off (C(AdminCreateUserConfig.AllowAdminCreateUserOnly=true)) - users are
    created by an administrator, so nobody can sign up to a stack that bills per use.
  - Updates carry the pool's and the client's full current configuration, because
    C(UpdateUserPool) and C(UpdateUserPoolClient) reset every field a call leaves out.
author: tinyllama-ops
options:
  pool_name:
    description:
      - The user pool's name. The pool is found by this name; when several pools carry it the
        module fails with their ids (O(state=present)).
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the pool, client, groups and domain.
      - V(absent) deletes the hosted-UI domain(s) and then the pool, but only a pool that carries
        every tag in O(tags). A pool of that name without those tags is left alone with a warning,
        also when a tagged pool of the same name is deleted beside it. If more than one pool of
        that name carries the tags, the module fails listing their ids rather than guess.
    type: str
    default: present
    choices: [present, absent]
  password_minimum_length:
    description:
      - The password policy's minimum length (6-99). A new pool also requires upper case, lower
        case, digits and symbols and gives temporary passwords 7 days (the console's defaults);
        on an existing pool only the minimum length is managed, the rest is kept.
    type: int
    default: 12
  mfa:
    description:
      - V(OFF), or V(OPTIONAL) - users may enrol an authenticator app (TOTP software token MFA is
        turned on; SMS MFA is not configured).
    type: str
    default: 'OFF'
    choices: ['OFF', 'OPTIONAL']
  deletion_protection:
    description:
      - Whether the pool has deletion protection. O(state=absent) fails while it is on - turn it
        off first (O(state=present), O(deletion_protection=false)).
    type: bool
    default: false
  client:
    description:
      - The public app client, found in the pool by its name. Omit it to leave the pool's clients
        alone (C(client_id) is then null).
      - An existing client that has a client secret makes the module fail - AWS cannot remove a
        secret, so such a client must be deleted and created again.
    type: dict
    suboptions:
      name:
        description: The app client's name.
        type: str
        required: true
      callback_urls:
        description:
          - Where the code grant may redirect - each C(http://127.0.0.1:<port>/callback),
            C(http://localhost:<port>/callback) or an C(https://) URL without a fragment.
          - Cognito matches callback URLs exactly, port included, so a loopback URL needs its
            port.
        type: list
        elements: str
        required: true
      logout_urls:
        description:
          - Where sign-out may redirect - C(https://) URLs, or C(http://127.0.0.1:<port>/...) and
            C(http://localhost:<port>/...).
        type: list
        elements: str
        default: []
      oauth_scopes:
        description: The OAuth scopes the client may request.
        type: list
        elements: str
        default: [openid, email, profile]
      explicit_auth_flows:
        description:
          - The authentication flows the client allows (the C(ALLOW_) values AWS accepts; the
            legacy values without C(ALLOW_) cannot be mixed with them and are not offered).
          - Add V(ALLOW_ADMIN_USER_PASSWORD_AUTH) for server-side sign-in with
            C(AdminInitiateAuth).
        type: list
        elements: str
        default: [ALLOW_REFRESH_TOKEN_AUTH, ALLOW_USER_SRP_AUTH]
        choices:
          - ALLOW_ADMIN_USER_PASSWORD_AUTH
          - ALLOW_CUSTOM_AUTH
          - ALLOW_USER_PASSWORD_AUTH
          - ALLOW_USER_SRP_AUTH
          - ALLOW_REFRESH_TOKEN_AUTH
          - ALLOW_USER_AUTH
      id_token_validity_minutes:
        description:
          - Lifetime of ID tokens, in minutes (5-1440). Access tokens get the same lifetime, since
            the HTTP API's authorizer accepts either.
        type: int
        default: 60
      refresh_token_validity_days:
        description: Lifetime of refresh tokens, in days (1-3650).
        type: int
        default: 30
  groups:
    description:
      - Groups the pool must have. A group's O(groups[].description) or O(groups[].precedence)
        left out (null) is not managed - kept as it is on an existing group, unset on a new one.
      - Groups not listed are left alone unless O(purge_groups=true).
    type: list
    elements: dict
    default: [{name: admins, description: may call admin routes}]
    suboptions:
      name:
        description: The group's name.
        type: str
        required: true
      description:
        description: The group's description.
        type: str
      precedence:
        description: The group's precedence (0 or more; lower wins when a user is in several).
        type: int
  purge_groups:
    description: Delete the pool's groups that O(groups) does not list.
    type: bool
    default: false
  domain_prefix:
    description:
      - Creates the hosted-UI domain C(<prefix>.auth.<region>.amazoncognito.com) if the pool has
        none. Lower-case letters, digits and hyphens (not at either end), at most 63
        characters, and none of C(aws), C(amazon) or C(cognito) in it (AWS refuses those).
      - A pool has one prefix domain; if it already has a different one, the module fails
        rather than replace it. Omit to leave the pool's domain alone.
    type: str
  tags:
    description:
      - Tags of the user pool (C(UserPoolTags)). If not set, tags are not modified.
      - With O(state=absent) they are required - only a pool carrying every one of them is deleted.
    type: dict
    aliases: [resource_tags]
  purge_tags:
    description:
      - Remove tags not listed in O(tags) (keys starting with C(aws:) excepted). No effect without
        O(tags).
    type: bool
    default: true
notes:
  - Identifies the pool by name, the client by name within the pool; ids come back in the result.
  - The hosted-UI domain is not waited for - AWS reports it C(CREATING) for a while (see
    C(domain_status)).
  - "Tried against the local stand-in (moto 5.2.5, server mode): C(TagResource),
    C(UntagResource) and C(ListTagsForResource) are not implemented (a bare HTTP 500). The module
    reads tags from C(DescribeUserPool) and, when tagging is refused that way, warns and writes
    the tags through C(UpdateUserPool)'s C(UserPoolTags) (carrying the full configuration), then
    reads them back."
  - "moto stores deletion protection but deletes a protected pool anyway; this module refuses
    on its own. moto keeps a pool's domain after the pool is deleted, accepts several domains
    per pool, prefixes containing C(aws), unknown auth flows and loopback callback URLs without
    a port; the module validates those itself and deletes the domain before the pool."
  - "moto answers C(AdminInitiateAuth) with C(ADMIN_USER_PASSWORD_AUTH) even when the client's
    C(explicit_auth_flows) lack V(ALLOW_ADMIN_USER_PASSWORD_AUTH); AWS refuses it, so list that
    flow wherever server-side sign-in is used, whatever the stand-in lets through."
  - "moto stores the token validity settings and returns them, but its tokens always live
    3600 s and carry the real AWS issuer name; its C(DescribeUserPool) reports the MFA setting
    last given to C(CreateUserPool)/C(UpdateUserPool) rather than C(SetUserPoolMfaConfig), so the
    module reads MFA with C(GetUserPoolMfaConfig) (right on AWS too) and passes the same value to
    both calls. moto's JWKS is served at C(<endpoint_url>/<pool_id>/.well-known/jwks.json)
    (returned as C(endpoint_jwks_url))."
  - After applying changes the module reads everything back and warns about any setting the
    endpoint did not take.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: The stack's user pool, CLI client, admins group and hosted UI
  tl_cognito:
    pool_name: tinyllama-users
    password_minimum_length: 12
    client:
      name: tinyllama-cli
      callback_urls:
        - http://127.0.0.1:8765/callback
        - http://localhost:8765/callback
      logout_urls:
        - http://127.0.0.1:8765/signed-out
    groups:
      - name: admins
        description: may call admin routes
        precedence: 1
    domain_prefix: tinyllama-dev-users
    tags:
      Project: tinyllama
      Role: auth
  register: auth

- name: The authorizer's issuer and audience
  ansible.builtin.debug:
    msg: "{{ auth.issuer }} / {{ auth.client_id }}"

- name: Tear down (only a pool tagged Project=tinyllama is deleted)
  tl_cognito:
    pool_name: tinyllama-users
    state: absent
    tags:
      Project: tinyllama
"""

RETURN = r"""
user_pool_id:
  description: The pool's id (null in check mode before it exists, and for O(state=absent)).
  returned: always
  type: str
  sample: eu-west-1_AbCdEf123
user_pool_arn:
  description: The pool's ARN.
  returned: always
  type: str
  sample: arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123
client_id:
  description:
    - The app client's id - the JWT audience. Null when O(client) is omitted.
    - The client never has a secret, and no secret is ever returned.
  returned: always
  type: str
  sample: 1example23456789
issuer:
  description: The tokens' issuer, C(https://cognito-idp.<region>.amazonaws.com/<pool_id>).
  returned: always
  type: str
  sample: https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123
jwks_url:
  description: The pool's signing keys, C(<issuer>/.well-known/jwks.json).
  returned: always
  type: str
endpoint_jwks_url:
  description:
    - Where an endpoint given in O(endpoint_url) (the local stand-in) serves the keys.
    - Null without O(endpoint_url).
  returned: always
  type: str
  sample: http://127.0.0.1:5000/eu-west-1_AbCdEf123/.well-known/jwks.json
groups:
  description: Names of the pool's groups after the run.
  returned: always
  type: list
  elements: str
  sample: [admins]
domain:
  description: The pool's hosted-UI domain prefix, or null.
  returned: always
  type: str
  sample: tinyllama-dev-users
domain_status:
  description: The domain's status as AWS reports it (C(CREATING), C(ACTIVE), ...), or null.
  returned: always
  type: str
hosted_ui_url:
  description: C(https://<prefix>.auth.<region>.amazoncognito.com), or null without a domain.
  returned: always
  type: str
  sample: https://tinyllama-dev-users.auth.eu-west-1.amazoncognito.com
diff:
  description: The managed settings before and after (snake_case), in diff mode.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description:
        - pool_name, password_minimum_length, mfa, deletion_protection, self_sign_up, tags,
          client, groups, domain.
      type: dict
    after:
      description: The same keys after the run (predicted in check mode).
      type: dict
"""

import copy
import re
from urllib.parse import urlsplit

from ansible.module_utils.tl_aws import (
    AnsibleAWSModule,
    ClientError,
    Failure,
    carries,
    pages,
    result,
    retrying_client,
    run,
    tag_changes,
    unsupported,
)

AUTH_FLOWS = [
    "ALLOW_ADMIN_USER_PASSWORD_AUTH",
    "ALLOW_CUSTOM_AUTH",
    "ALLOW_USER_PASSWORD_AUTH",
    "ALLOW_USER_SRP_AUTH",
    "ALLOW_REFRESH_TOKEN_AUTH",
    "ALLOW_USER_AUTH",
]
DEFAULT_GROUPS = [{"name": "admins", "description": "may call admin routes"}]
NAME_RE = re.compile(r"^[\w\s+=,.@-]{1,128}$")
GROUP_RE = re.compile(r"^\S{1,128}$")
PREFIX_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
RESERVED_IN_PREFIX = ("aws", "amazon", "cognito")
LOOPBACK_CALLBACK_RE = re.compile(r"^http://(?:127\.0\.0\.1|localhost):(\d{1,5})/callback$")
LOOPBACK_ANY_RE = re.compile(r"^http://(?:127\.0\.0\.1|localhost):(\d{1,5})(?:/[^#]*)?$")
NEW_PASSWORD_POLICY = {
    "RequireUppercase": True,
    "RequireLowercase": True,
    "RequireNumbers": True,
    "RequireSymbols": True,
    "TemporaryPasswordValidityDays": 7,
}
TOKEN_UNITS = {"AccessToken": "minutes", "IdToken": "minutes", "RefreshToken": "days"}
MINUTES_PER = {"seconds": 1 / 60, "minutes": 1, "hours": 60, "days": 1440}
LEGACY_MESSAGES = ("SmsVerificationMessage", "EmailVerificationMessage", "EmailVerificationSubject")


# --- input --------------------------------------------------------------------------------------
def _https_ok(url):
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname) and not parts.fragment


def _loopback_port_ok(match):
    return match is not None and 1 <= int(match.group(1)) <= 65535


def validate(params):
    """Raise Failure naming the option for what AWS (or the stand-in) would take wrongly."""
    if not NAME_RE.match(params["pool_name"] or ""):
        raise Failure("pool_name must be 1-128 letters, digits, spaces or +=,.@_- characters")
    if params["state"] == "absent":
        if not params["tags"]:
            raise Failure(
                "state=absent deletes only a pool carrying the tags given: set tags "
                "(at least Project) so that an unrelated pool of that name is never deleted"
            )
        return
    if not 6 <= params["password_minimum_length"] <= 99:
        raise Failure("password_minimum_length must be 6-99 (AWS's range)")
    if params["client"] is not None:
        validate_client(params["client"])
    validate_groups(params["groups"])
    if params["domain_prefix"] is not None:
        validate_prefix(params["domain_prefix"])


def validate_client(spec):
    if not NAME_RE.match(spec["name"] or ""):
        raise Failure("client.name must be 1-128 letters, digits, spaces or +=,.@_- characters")
    if not spec["callback_urls"]:
        raise Failure("client.callback_urls needs at least one URL: the code grant returns there")
    for url in spec["callback_urls"]:
        if not (_loopback_port_ok(LOOPBACK_CALLBACK_RE.match(url)) or _https_ok(url)):
            raise Failure(
                f"client.callback_urls: {url!r} is not accepted; use "
                "http://127.0.0.1:<port>/callback, http://localhost:<port>/callback or an "
                "https URL. Cognito matches callback URLs exactly, so a loopback URL needs "
                "its port"
            )
    for url in spec["logout_urls"]:
        if not (_loopback_port_ok(LOOPBACK_ANY_RE.match(url)) or _https_ok(url)):
            raise Failure(
                f"client.logout_urls: {url!r} is not accepted; use an https URL or "
                "http://127.0.0.1:<port>/... or http://localhost:<port>/... (port required: "
                "Cognito matches URLs exactly)"
            )
    if not spec["oauth_scopes"]:
        raise Failure("client.oauth_scopes needs at least one scope (openid for sign-in)")
    unknown = sorted(set(spec["explicit_auth_flows"]) - set(AUTH_FLOWS))
    if unknown:
        raise Failure(
            f"client.explicit_auth_flows: unknown {', '.join(unknown)}; "
            f"AWS accepts {', '.join(AUTH_FLOWS)}"
        )
    if not 5 <= spec["id_token_validity_minutes"] <= 1440:
        raise Failure("client.id_token_validity_minutes must be 5-1440 (AWS's range)")
    if not 1 <= spec["refresh_token_validity_days"] <= 3650:
        raise Failure("client.refresh_token_validity_days must be 1-3650 (AWS's range)")


def validate_groups(groups):
    names = [group["name"] for group in groups]
    for group in groups:
        if not GROUP_RE.match(group["name"] or ""):
            raise Failure(
                f"groups: {group['name']!r} is not a valid group name "
                "(1-128 characters, no white space)"
            )
        if group["precedence"] is not None and group["precedence"] < 0:
            raise Failure(f"groups: precedence of {group['name']} must be 0 or more")
    if len(set(names)) != len(names):
        raise Failure(f"groups: each name once, got {', '.join(names)}")


def validate_prefix(prefix):
    if not PREFIX_RE.match(prefix):
        raise Failure(
            f"domain_prefix {prefix!r}: use 1-63 lower-case letters, digits and hyphens, "
            "not starting or ending with a hyphen"
        )
    reserved = [word for word in RESERVED_IN_PREFIX if word in prefix]
    if reserved:
        raise Failure(
            f"domain_prefix {prefix!r} contains {', '.join(reserved)}; AWS refuses prefixes "
            "containing aws, amazon or cognito"
        )


def _unique(items):
    return list(dict.fromkeys(items))


# --- reading ------------------------------------------------------------------------------------
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


# --- requests -----------------------------------------------------------------------------------
def _members(client, operation):
    return list(client.meta.service_model.operation_model(operation).input_shape.members)


def client_request(spec, current=None, members=()):
    """CreateUserPoolClient / UpdateUserPoolClient arguments; an update carries what it does
    not manage from `current`, because UpdateUserPoolClient resets whatever it is not given."""
    request = {
        "ClientName": spec["name"],
        "CallbackURLs": _unique(spec["callback_urls"]),
        "LogoutURLs": _unique(spec["logout_urls"]),
        "AllowedOAuthFlows": ["code"],
        "AllowedOAuthScopes": _unique(spec["oauth_scopes"]),
        "AllowedOAuthFlowsUserPoolClient": True,
        "SupportedIdentityProviders": ["COGNITO"],
        "PreventUserExistenceErrors": "ENABLED",
        "ExplicitAuthFlows": _unique(spec["explicit_auth_flows"]),
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


def apply_tags(client, arn, to_set, to_remove, warn):
    """Tag through TagResource/UntagResource; True when the endpoint lacks them."""
    try:
        if to_set:
            client.tag_resource(ResourceArn=arn, Tags=to_set, aws_retry=True)
        if to_remove:
            client.untag_resource(ResourceArn=arn, TagKeys=to_remove, aws_retry=True)
    except ClientError as exc:
        if not unsupported(exc):
            raise
        warn(
            "the endpoint does not implement Cognito TagResource/UntagResource (the local "
            "stand-in, moto 5.2.5, answers HTTP 500); the tags were written through "
            "UpdateUserPool's UserPoolTags instead, with the pool's full configuration, "
            "and read back"
        )
        return True
    return False


# --- outputs ------------------------------------------------------------------------------------
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


def predicted_state(state, params, tags, groups, client_missing):
    """The state the changes lead to, in the shape read_state returns (for check mode)."""
    pool = copy.deepcopy(state["pool"])
    pool["Policies"] = {
        **(pool.get("Policies") or {}),
        "PasswordPolicy": {
            **((pool.get("Policies") or {}).get("PasswordPolicy") or NEW_PASSWORD_POLICY),
            "MinimumLength": params["password_minimum_length"],
        },
    }
    pool["DeletionProtection"] = "ACTIVE" if params["deletion_protection"] else "INACTIVE"
    pool["AdminCreateUserConfig"] = {
        **(pool.get("AdminCreateUserConfig") or {}),
        "AllowAdminCreateUserOnly": True,
    }
    pool["UserPoolTags"] = tags
    if params["domain_prefix"] is not None:
        pool["Domain"] = params["domain_prefix"]
    app = state["client"]
    spec = params["client"]
    if spec is not None:
        request = client_request(spec, app, members=list(app or {}))
        app = {**(app or {}), **request, "ClientId": None if client_missing else app["ClientId"]}
    return {
        "pool": pool,
        "mfa": params["mfa"],
        "client": app,
        "groups": groups,
        "domain_status": state.get("domain_status"),
    }


def warn_unapplied(predicted, actual, warn):
    for key, wanted in predicted.items():
        if actual.get(key) != wanted:
            warn(
                f"after the changes the endpoint reports {key}={actual.get(key)!r}, not "
                f"{wanted!r}: it did not apply that setting"
            )


# --- state: present / absent --------------------------------------------------------------------
def ensure_present(client, params, check_mode, warn):
    name = params["pool_name"]
    pools = find_pools(client, name)
    tags = params["tags"] or {}
    if "Project" in tags and pools:
        # Names are not unique: a pool of that name without our Project tag is someone else's
        # and is never adopted.
        described = {
            p["Id"]: client.describe_user_pool(UserPoolId=p["Id"], aws_retry=True)["UserPool"]
            for p in pools
        }
        foreign = [
            pool_id
            for pool_id, pool in described.items()
            if (pool.get("UserPoolTags") or {}).get("Project") != tags["Project"]
        ]
        if foreign:
            warn(
                f"user pool(s) {', '.join(foreign)} are named {name} but do not carry "
                f"Project={tags['Project']}: left alone, not managed by this module"
            )
        pools = [p for p in pools if p["Id"] not in foreign]
    if len(pools) > 1:
        ids = ", ".join(p["Id"] for p in pools)
        raise Failure(
            f"{len(pools)} user pools are named {name}: {ids}; delete or rename the extra ones "
            "so the module knows which one to manage"
        )
    spec = params["client"]
    if not pools:
        return create_everything(client, params, check_mode, warn)
    pool_id = pools[0]["Id"]
    state = read_state(client, pool_id, spec and spec["name"])
    refuse_secret(state["client"])
    pool = state["pool"]
    before = pool_view(state)

    current_tags = dict(pool.get("UserPoolTags") or {})
    to_set, to_remove = tag_changes(current_tags, params["tags"], params["purge_tags"])
    final_tags = {k: v for k, v in {**current_tags, **to_set}.items() if k not in to_remove}
    create, update, delete, groups = plan_groups(
        state["groups"], params["groups"], params["purge_groups"]
    )
    make_domain = check_domain(client, pool_id, pool.get("Domain"), params["domain_prefix"])
    client_missing = spec is not None and state["client"] is None
    predicted = predicted_state(state, params, final_tags, groups, client_missing)
    after = pool_view(predicted)

    config_differs = any(
        before[key] != after[key]
        for key in ("password_minimum_length", "deletion_protection", "self_sign_up")
    )
    changed = before != after
    if check_mode or not changed:
        return {"changed": changed, **outputs(predicted, params), "_diff": (before, after)}

    tags_fallback = False
    if to_set or to_remove:
        tags_fallback = apply_tags(client, pool["Arn"], to_set, to_remove, warn)
    if before["mfa"] != after["mfa"]:
        set_mfa(client, pool_id, params["mfa"])
    if config_differs or tags_fallback:
        client.update_user_pool(
            aws_retry=True,
            **pool_update_request(pool, params, final_tags, _members(client, "UpdateUserPool")),
        )
    if client_missing:
        client.create_user_pool_client(UserPoolId=pool_id, aws_retry=True, **client_request(spec))
    elif spec is not None and before["client"] != after["client"]:
        client.update_user_pool_client(
            aws_retry=True,
            **client_request(spec, state["client"], _members(client, "UpdateUserPoolClient")),
        )
    apply_groups(client, pool_id, create, update, delete)
    if make_domain:
        client.create_user_pool_domain(
            UserPoolId=pool_id, Domain=params["domain_prefix"], aws_retry=True
        )

    final = read_state(client, pool_id, spec and spec["name"])
    actual = pool_view(final)
    warn_unapplied(after, actual, warn)
    return {"changed": True, **outputs(final, params), "_diff": (before, actual)}


def create_everything(client, params, check_mode, warn):
    spec = params["client"]
    check_domain(client, None, None, params["domain_prefix"])
    _, _, _, groups = plan_groups({}, params["groups"], False)
    skeleton = {
        "pool": {"Name": params["pool_name"], "Domain": params["domain_prefix"]},
        "mfa": params["mfa"],
        "client": None,
        "groups": groups,
    }
    predicted = predicted_state(skeleton, params, dict(params["tags"] or {}), groups, True)
    after = pool_view(predicted)
    if check_mode:
        return {"changed": True, **outputs(predicted, params), "_diff": ({}, after)}

    pool_id = client.create_user_pool(aws_retry=True, **create_pool_request(params))["UserPool"][
        "Id"
    ]
    if params["mfa"] != "OFF":
        set_mfa(client, pool_id, params["mfa"])
    if spec is not None:
        client.create_user_pool_client(UserPoolId=pool_id, aws_retry=True, **client_request(spec))
    apply_groups(client, pool_id, params["groups"], [], [])
    if params["domain_prefix"] is not None:
        client.create_user_pool_domain(
            UserPoolId=pool_id, Domain=params["domain_prefix"], aws_retry=True
        )
    final = read_state(client, pool_id, spec and spec["name"])
    actual = pool_view(final)
    warn_unapplied(after, actual, warn)
    return {"changed": True, **outputs(final, params), "_diff": ({}, actual)}


def ensure_absent(client, params, check_mode, warn):
    name, tags = params["pool_name"], params["tags"]
    pools = [
        client.describe_user_pool(UserPoolId=p["Id"], aws_retry=True)["UserPool"]
        for p in find_pools(client, name)
    ]
    ours = [pool for pool in pools if carries(pool.get("UserPoolTags"), tags)]
    for pool in pools:
        if pool not in ours:
            warn(
                f"user pool {pool['Id']} named {name} was not deleted: it does not carry the "
                f"tags {tags}"
            )
    if len(ours) > 1:
        ids = ", ".join(pool["Id"] for pool in ours)
        raise Failure(
            f"{len(ours)} user pools named {name} carry the tags {tags}: {ids}; the module will "
            "not guess which one to delete: delete the extra ones by id"
        )
    if not ours:
        return {"changed": False, **outputs(None, params), "_diff": ({}, {})}
    pool = ours[0]
    if pool.get("DeletionProtection") == "ACTIVE":
        raise Failure(
            f"user pool {pool['Id']} ({name}) has deletion protection on; turn it off first "
            "(state: present with deletion_protection: false), then delete it"
        )
    spec = params["client"]
    before = pool_view(read_state(client, pool["Id"], spec and spec["name"], strict=False))
    if not check_mode:
        for domain in _unique(d for d in (pool.get("Domain"), pool.get("CustomDomain")) if d):
            client.delete_user_pool_domain(UserPoolId=pool["Id"], Domain=domain, aws_retry=True)
        client.delete_user_pool(UserPoolId=pool["Id"], aws_retry=True)
    return {"changed": True, **outputs(None, params), "_diff": (before, {})}


def ensure(module, client):
    params = module.params
    validate(params)
    if params["state"] == "absent":
        out = ensure_absent(client, params, module.check_mode, module.warn)
    else:
        out = ensure_present(client, params, module.check_mode, module.warn)
    before, after = out.pop("_diff")
    changed = out.pop("changed")
    return result(module, changed, before, after, **out)


def main():
    client_options = dict(
        name=dict(type="str", required=True),
        callback_urls=dict(type="list", elements="str", required=True),
        logout_urls=dict(type="list", elements="str", default=[]),
        oauth_scopes=dict(type="list", elements="str", default=["openid", "email", "profile"]),
        explicit_auth_flows=dict(
            type="list",
            elements="str",
            default=["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH"],
            choices=AUTH_FLOWS,
        ),
        id_token_validity_minutes=dict(type="int", default=60),
        refresh_token_validity_days=dict(type="int", default=30),
    )
    group_options = dict(
        name=dict(type="str", required=True),
        description=dict(type="str"),
        precedence=dict(type="int"),
    )
    argument_spec = dict(
        pool_name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        password_minimum_length=dict(type="int", default=12, no_log=False),
        mfa=dict(type="str", default="OFF", choices=["OFF", "OPTIONAL"]),
        deletion_protection=dict(type="bool", default=False),
        client=dict(type="dict", options=client_options),
        groups=dict(type="list", elements="dict", options=group_options, default=DEFAULT_GROUPS),
        purge_groups=dict(type="bool", default=False),
        domain_prefix=dict(type="str"),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: ensure(module, retrying_client(module, "cognito-idp")))


if __name__ == "__main__":
    main()

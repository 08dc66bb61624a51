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
  - With O(state=absent), O(tags) must hold at least C(Project); only a resource that
    carries every given tag is deleted, never one found by its name alone.
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
  tlops.stack.tl_cognito:
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
  tlops.stack.tl_cognito:
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

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    ensure_state,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_cognito.states import (
    ensure_absent,
    ensure_present,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_cognito.validate import (
    AUTH_FLOWS,
    DEFAULT_GROUPS,
    validate,
)


def ensure(module):
    return ensure_state(module, "cognito-idp", validate, ensure_present, ensure_absent)


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
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

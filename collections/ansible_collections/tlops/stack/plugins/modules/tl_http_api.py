#!/usr/bin/python
# Copyright: tinyllama-ops. Apache-2.0.
# tl_http_api: the stack's whole API Gateway v2 HTTP API (CORS, JWT authorizer, Lambda
# integrations, routes, stage, invoke permissions) as one idempotent module.

DOCUMENTATION = r"""
---
module: tl_http_api
short_description: Manage an API Gateway v2 HTTP API with its authorizer, Lambda routes and stage
description:
  - Creates, updates or deletes one API Gateway v2 HTTP API, identified by O(name), together with
    its CORS configuration, one JWT authorizer, AWS_PROXY Lambda integrations, routes, one stage
    (auto-deploy, throttling, JSON access log) and the Lambda permissions that let it invoke its
    functions.
  - This module exists because neither amazon.aws nor community.aws has a module for API
    Gateway v2 HTTP APIs; C(community.aws.api_gateway) manages REST APIs (v1) through a swagger
    document only.
  - Routes and integrations that are not listed are deleted. AWS gives integrations no name, so
    existing ones are matched to O(integrations[].name) by their function ARN (C(IntegrationUri)).
    Authorizers with another name than O(jwt_authorizer.name) and stages with another name than
    O(stage.name) are left alone.
  - API names are not unique. When O(tags) holds a C(Project) tag, only an API of that name
    carrying the same C(Project) value is managed; one without it is someone else's, is never
    adopted (a new API is created next to it) and is never deleted, with a warning. Several
    APIs of the name carrying it make the module fail and list their ids.
  - Stage settings are changed in place with C(update_stage). The local stand-in (moto) lacks
    C(update_stage), so there the stage is deleted and created again with the new settings, with
    a warning. The stand-in also lacks C(get_authorizers); there the authorizer is found through the
    routes that use it, with a warning.
author: tinyllama-ops
notes:
  - With O(state=absent), O(tags) must hold at least C(Project); only a resource that
    carries every given tag is deleted, never one found by its name alone.
options:
  name:
    description: Name of the HTTP API; identifies it (with O(tags) when several share the name).
    type: str
    required: true
  description:
    description: Description of the API. Left as it is when omitted.
    type: str
  state:
    description:
      - V(present) creates or updates the API and everything under it.
      - V(absent) deletes the API, only if it carries every tag in O(tags), and removes the
        invoke permissions this module added to its functions.
    type: str
    default: present
    choices: [present, absent]
  tags:
    description:
      - Tags of the API. Left as they are when omitted.
      - With O(state=absent), the API is deleted only if it carries all of them.
    type: dict
    aliases: [resource_tags]
  purge_tags:
    description: Remove tags of the API that are not in O(tags).
    type: bool
    default: true
  cors:
    description:
      - CORS configuration of the API. When omitted, an existing CORS configuration is removed.
      - AWS supports no port wildcards; list every origin explicitly.
    type: dict
    suboptions:
      allow_origins:
        description:
          - Origins of the form C(scheme://host[:port]), without path or trailing slash.
          - V(*) is allowed only alone and only without O(cors.allow_credentials).
        type: list
        elements: str
        required: true
      allow_methods:
        description: HTTP methods allowed (V(GET), V(POST), ... or V(*)).
        type: list
        elements: str
        default: []
      allow_headers:
        description: Request headers allowed.
        type: list
        elements: str
        default: []
      expose_headers:
        description: Response headers exposed to the browser.
        type: list
        elements: str
        default: []
      max_age:
        description: Seconds a browser caches the preflight answer (0 to 86400).
        type: int
      allow_credentials:
        description: Whether credentials (cookies, Authorization) are allowed.
        type: bool
        default: false
  jwt_authorizer:
    description:
      - The JWT authorizer (for instance a Cognito user pool) that routes with
        O(routes[].authorization=jwt) use. Required when any route uses it.
      - When omitted, existing authorizers are left alone.
    type: dict
    suboptions:
      name:
        description: Name of the authorizer; identifies it within the API.
        type: str
        required: true
      issuer:
        description: Issuer URL of the tokens (https), e.g. C(https://cognito-idp.REGION.amazonaws.com/POOL_ID).
        type: str
        required: true
      audience:
        description: Accepted audiences (for Cognito, the app client ids).
        type: list
        elements: str
        required: true
      identity_source:
        description: Where the token is read from.
        type: str
        default: $request.header.Authorization
  integrations:
    description:
      - AWS_PROXY Lambda integrations. Existing integrations whose function ARN is not listed are
        deleted (after the routes that use them).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: A name of your choosing, used by O(routes[].integration); not stored in AWS.
        type: str
        required: true
      function_arn:
        description:
          - ARN of a Lambda alias (C(arn:aws:lambda:REGION:ACCOUNT:function:NAME:ALIAS)).
          - Each function ARN may appear once.
        type: str
        required: true
      payload_format_version:
        description: Event format sent to the function.
        type: str
        default: "2.0"
        choices: ["1.0", "2.0"]
      timeout_ms:
        description: Integration timeout in milliseconds (50 to 30000).
        type: int
        default: 10000
  routes:
    description: Routes of the API. Existing routes that are not listed are deleted.
    type: list
    elements: dict
    default: []
    suboptions:
      route_key:
        description: C(METHOD /path), e.g. C(POST /infer) or C(GET /jobs/{id}); or C($default).
        type: str
        required: true
      integration:
        description: The O(integrations[].name) the route sends to.
        type: str
        required: true
      authorization:
        description: V(jwt) requires a token checked by O(jwt_authorizer); V(none) is an open route.
        type: str
        default: jwt
        choices: [jwt, none]
  stage:
    description: The stage that serves the API.
    type: dict
    default: {}
    suboptions:
      name:
        description: Stage name; V($default) serves the API at its root URL.
        type: str
        default: $default
      auto_deploy:
        description:
          - Deploy every change automatically. When false, the module creates a deployment
            after it changed the API's routes, integrations or authorizer.
        type: bool
        default: true
      default_throttling:
        description: Throttling of every route (DefaultRouteSettings); omit for account limits.
        type: dict
        suboptions:
          burst_limit:
            description: Burst limit (requests).
            type: int
            required: true
          rate_limit:
            description: Steady-state rate limit (requests per second).
            type: float
            required: true
      route_throttling:
        description:
          - Throttling per route (RouteSettings), as route key → C({burst_limit, rate_limit}).
          - Every key must be a listed O(routes[].route_key).
        type: dict
        default: {}
      access_log:
        description: JSON access log of the stage. Omit for none.
        type: dict
        suboptions:
          destination_arn:
            description: ARN of the CloudWatch Logs group (without a trailing C(:*)).
            type: str
            required: true
          format:
            description: Log line format, a JSON object (as a string) with C($context.requestId).
            type: str
            required: true
  invoke_permissions:
    description:
      - Give API Gateway permission to invoke each integration's function (a Lambda resource policy
        statement with a deterministic id, limited to this API's ARN), and remove it from functions
        no longer integrated and when the API is deleted.
      - When false, Lambda permissions are left alone.
    type: bool
    default: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: The stack's HTTP API
  tlops.stack.tl_http_api:
    name: tinyllama
    description: TinyLlama inference edge
    tags:
      Project: tinyllama
      Role: edge
    cors:
      allow_origins: [http://localhost:3000, http://localhost:5173]
      allow_methods: [GET, POST, OPTIONS]
      allow_headers: [authorization, content-type]
      max_age: 600
    jwt_authorizer:
      name: cognito
      issuer: "https://cognito-idp.eu-west-1.amazonaws.com/{{ pool_id }}"
      audience: ["{{ app_client_id }}"]
    integrations:
      - name: router
        function_arn: "{{ router_alias_arn }}"
        timeout_ms: 10000
    routes:
      - {route_key: "POST /infer", integration: router}
      - {route_key: "GET /jobs/{id}", integration: router}
      - {route_key: "GET /ping", integration: router, authorization: none}
    stage:
      default_throttling: {burst_limit: 20, rate_limit: 10}
      route_throttling:
        "POST /infer": {burst_limit: 5, rate_limit: 2}
      access_log:
        destination_arn: "{{ access_log_group_arn }}"
        format: '{"requestId":"$context.requestId","status":"$context.status"}'
  register: http_api

- name: Delete it (only if tagged so)
  tlops.stack.tl_http_api:
    name: tinyllama
    state: absent
    tags:
      Project: tinyllama
"""

RETURN = r"""
api_id:
  description: Id of the API (null in check mode before it exists, or when there is none).
  returned: always
  type: str
  sample: a1b2c3d4e5
api_endpoint:
  description: Endpoint of the API.
  returned: always
  type: str
  sample: https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com
stage_name:
  description: Name of the stage.
  returned: when state=present
  type: str
  sample: $default
invoke_url:
  description: URL that serves the stage (the endpoint itself for V($default)).
  returned: when state=present
  type: str
  sample: https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com
authorizer_id:
  description: Id of the JWT authorizer (null when none is managed, or before it is created).
  returned: when state=present
  type: str
integrations:
  description: Integration name → integration id (null in check mode before it exists).
  returned: when state=present
  type: dict
  sample: {router: abc1234}
routes:
  description: Route key → route id (null in check mode before it exists).
  returned: when state=present
  type: dict
  sample: {"POST /infer": def5678}
diff:
  description:
    - Before and after, each one dict with name, description, tags, cors, authorizer,
      integrations (by name), routes (by route key), stage and invoke_permissions.
  returned: in diff mode
  type: dict
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    refuse_untagged_delete,
    result,
    retrying_client,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_http_api.states import (
    ensure_absent,
    ensure_present,
)


def ensure(module):
    """Glue: clients on the module's connection, made when first asked for, the state, the exit."""
    refuse_untagged_delete(module.params)
    made = {}

    def clients(service):
        if service not in made:
            made[service] = retrying_client(module, service)
        return made[service]

    act = ensure_present if module.params["state"] == "present" else ensure_absent
    outcome = act(clients, module.params, module.check_mode, module.warn)
    before, after = outcome.pop("before"), outcome.pop("after")
    return result(module, outcome.pop("changed"), before, after, **outcome)


def main():
    throttle = dict(
        burst_limit=dict(type="int", required=True), rate_limit=dict(type="float", required=True)
    )
    argument_spec = dict(
        name=dict(type="str", required=True),
        description=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
        cors=dict(
            type="dict",
            options=dict(
                allow_origins=dict(type="list", elements="str", required=True),
                allow_methods=dict(type="list", elements="str", default=[]),
                allow_headers=dict(type="list", elements="str", default=[]),
                expose_headers=dict(type="list", elements="str", default=[]),
                max_age=dict(type="int"),
                allow_credentials=dict(type="bool", default=False),
            ),
        ),
        jwt_authorizer=dict(
            type="dict",
            options=dict(
                name=dict(type="str", required=True),
                issuer=dict(type="str", required=True),
                audience=dict(type="list", elements="str", required=True),
                identity_source=dict(type="str", default="$request.header.Authorization"),
            ),
        ),
        integrations=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                name=dict(type="str", required=True),
                function_arn=dict(type="str", required=True),
                payload_format_version=dict(type="str", default="2.0", choices=["1.0", "2.0"]),
                timeout_ms=dict(type="int", default=10000),
            ),
        ),
        routes=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                route_key=dict(type="str", required=True),
                integration=dict(type="str", required=True),
                authorization=dict(type="str", default="jwt", choices=["jwt", "none"]),
            ),
        ),
        stage=dict(
            type="dict",
            default={},
            apply_defaults=True,
            options=dict(
                name=dict(type="str", default="$default"),
                auto_deploy=dict(type="bool", default=True),
                default_throttling=dict(type="dict", options=throttle),
                route_throttling=dict(type="dict", default={}),
                access_log=dict(
                    type="dict",
                    options=dict(
                        destination_arn=dict(type="str", required=True),
                        format=dict(type="str", required=True),
                    ),
                ),
            ),
        ),
        invoke_permissions=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

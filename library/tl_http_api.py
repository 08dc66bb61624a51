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
  tl_http_api:
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
  tl_http_api:
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

import json
import re

from ansible.module_utils.tl_aws import (
    AnsibleAWSModule,
    ClientError,
    Failure,
    carries,
    is_not_found,
    pages,
    result,
    retrying_client,
    run,
    tag_changes,
    unsupported,
)

PRINCIPAL = "apigateway.amazonaws.com"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_SEGMENT = r"(?:[A-Za-z0-9._~-]+|\{[A-Za-z_][A-Za-z0-9_-]*\})"
_GREEDY = r"\{[A-Za-z_][A-Za-z0-9_-]*\+\}"
ROUTE_KEY = re.compile(
    rf"^(?:{'|'.join(HTTP_METHODS)}|ANY) (?:/|(?:/{_SEGMENT})*/(?:{_SEGMENT}|{_GREEDY}))$"
)
# Any scheme: native shells use their own (capacitor://localhost, ionic://localhost).
ORIGIN = re.compile(
    r"^[a-z][a-z0-9+.-]*://(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::(\d+))?$"
)
ALIAS_ARN = re.compile(
    r"^arn:(aws[a-z-]*):lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}:([A-Za-z0-9_-]{1,128})$"
)
FUNCTION_IN_URI = re.compile(r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_:-]+")
LOG_GROUP_ARN = re.compile(r"^arn:aws[a-z-]*:logs:[a-z0-9-]+:\d{12}:log-group:[A-Za-z0-9_./#-]+$")
STAGE_NAME = re.compile(r"^(?:\$default|[A-Za-z0-9_-]{1,128})$")


# --- validation --------------------------------------------------------------
def validate(params):
    """Refuse what AWS would refuse or silently mis-handle; each message names the option."""
    validate_cors(params["cors"])
    validate_authorizer(params["jwt_authorizer"])
    names = validate_integrations(params["integrations"])
    keys = validate_routes(params["routes"], names, params["jwt_authorizer"])
    validate_stage(params["stage"], keys)


def validate_cors(cors):
    if cors is None:
        return
    origins = cors["allow_origins"]
    if not origins:
        raise Failure("cors.allow_origins is empty: list the front-end origins, or omit cors")
    for origin in origins:
        if origin == "*":
            if len(origins) > 1:
                raise Failure(
                    "cors.allow_origins: '*' must stand alone; list origins or use '*' only"
                )
            if cors["allow_credentials"]:
                raise Failure(
                    "cors.allow_origins: '*' cannot be combined with cors.allow_credentials: true "
                    "(browsers refuse credentials for any origin); list explicit origins"
                )
            continue
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*:\*$", origin):
            raise Failure(
                f"cors.allow_origins: {origin!r} has a wildcard port, which AWS does not support; "
                "list explicit origins instead (e.g. http://localhost:3000, http://localhost:5173)"
            )
        match = ORIGIN.match(origin)
        if not match or (match.group(1) and not 1 <= int(match.group(1)) <= 65535):
            raise Failure(
                f"cors.allow_origins: {origin!r} is not an origin of the form scheme://host[:port] "
                "(an explicit port or none, no wildcard, no path, no trailing slash); list "
                "explicit origins"
            )
    for method in cors["allow_methods"]:
        if method.upper() not in (*HTTP_METHODS, "*"):
            raise Failure(
                f"cors.allow_methods: {method!r} is not one of {', '.join(HTTP_METHODS)} or '*'"
            )
    if cors["max_age"] is not None and not 0 <= cors["max_age"] <= 86400:
        raise Failure(f"cors.max_age is {cors['max_age']}: give 0 to 86400 seconds")


def validate_authorizer(authorizer):
    if authorizer is None:
        return
    if not re.match(r"^https://[^\s/?#]+(?:/[^\s?#]*)?$", authorizer["issuer"]):
        raise Failure(
            f"jwt_authorizer.issuer {authorizer['issuer']!r} is not an https URL; for Cognito give "
            "https://cognito-idp.REGION.amazonaws.com/POOL_ID"
        )
    if not authorizer["audience"] or not all(authorizer["audience"]):
        raise Failure(
            "jwt_authorizer.audience is empty: list the accepted audiences (app client ids)"
        )
    if not authorizer["identity_source"].startswith("$request."):
        raise Failure(
            f"jwt_authorizer.identity_source {authorizer['identity_source']!r} is not a request "
            "expression such as $request.header.Authorization"
        )


def validate_integrations(integrations):
    names, arns = set(), set()
    for i, integration in enumerate(integrations):
        where = f"integrations[{i}]"
        name, arn = integration["name"], integration["function_arn"]
        if not name or name in names:
            raise Failure(
                f"{where}.name {name!r} is empty or used twice: give each a distinct name"
            )
        names.add(name)
        match = ALIAS_ARN.match(arn)
        if not match or match.group(2).isdigit():
            raise Failure(
                f"{where}.function_arn {arn!r} is not a Lambda alias ARN "
                "(arn:aws:lambda:REGION:ACCOUNT:function:NAME:ALIAS); point the API at an alias"
            )
        if arn in arns:
            raise Failure(
                f"{where}.function_arn {arn!r} is listed twice: integrate a function once"
            )
        arns.add(arn)
        if not 50 <= integration["timeout_ms"] <= 30000:
            raise Failure(
                f"{where}.timeout_ms is {integration['timeout_ms']}: "
                "API Gateway allows 50 to 30000 ms"
            )
    return names


def validate_routes(routes, integration_names, authorizer):
    keys = set()
    for i, route in enumerate(routes):
        where, key = f"routes[{i}]", route["route_key"]
        if key != "$default" and not ROUTE_KEY.match(key):
            raise Failure(
                f"{where}.route_key {key!r} is not of the form 'METHOD /path' (METHOD one of "
                f"{', '.join(HTTP_METHODS)} or ANY; path segments literal or {{name}}, a greedy "
                "{name+} last), e.g. 'POST /infer' or 'GET /jobs/{id}'"
            )
        if key in keys:
            raise Failure(f"{where}.route_key {key!r} is listed twice")
        keys.add(key)
        if route["integration"] not in integration_names:
            raise Failure(
                f"{where}.integration {route['integration']!r} names no entry of integrations "
                f"(known: {', '.join(sorted(integration_names)) or 'none'})"
            )
        if route["authorization"] == "jwt" and authorizer is None:
            raise Failure(
                f"{where}.authorization is jwt but no jwt_authorizer is given: add one, "
                "or set authorization: none for an open route"
            )
    return keys


def validate_stage(stage, route_keys):
    if not STAGE_NAME.match(stage["name"]):
        raise Failure(f"stage.name {stage['name']!r} is not $default or letters, digits, - and _")
    if stage["default_throttling"] is not None:
        check_throttle("stage.default_throttling", stage["default_throttling"])
    for key, settings in (stage["route_throttling"] or {}).items():
        if key not in route_keys:
            raise Failure(
                f"stage.route_throttling: {key!r} is not a listed route "
                f"(routes: {', '.join(sorted(route_keys)) or 'none'}); "
                "list it under routes or drop it"
            )
        check_throttle(f"stage.route_throttling[{key!r}]", settings)
    log = stage["access_log"]
    if log is None:
        return
    if not LOG_GROUP_ARN.match(log["destination_arn"]):
        raise Failure(
            f"stage.access_log.destination_arn {log['destination_arn']!r} is not a log group ARN "
            "(arn:aws:logs:REGION:ACCOUNT:log-group:NAME, without a trailing ':*')"
        )
    try:
        parsed = json.loads(log["format"])
    except ValueError as exc:
        raise Failure(f"stage.access_log.format is not JSON ({exc}): give a JSON object") from None
    if not isinstance(parsed, dict):
        raise Failure("stage.access_log.format is JSON but not an object: give a JSON object")
    if "$context.requestId" not in log["format"]:
        raise Failure(
            "stage.access_log.format lacks $context.requestId: add e.g. "
            '"requestId":"$context.requestId" so log lines can be traced to requests'
        )


def check_throttle(where, settings):
    if not isinstance(settings, dict) or set(settings) != {"burst_limit", "rate_limit"}:
        raise Failure(f"{where} must be a dict with exactly burst_limit and rate_limit")
    burst, rate = settings["burst_limit"], settings["rate_limit"]
    try:  # templated values may arrive as strings
        burst_ok = int(str(burst)) >= 0
    except ValueError:
        burst_ok = False
    if not burst_ok:
        raise Failure(f"{where}.burst_limit {burst!r} is not a whole number >= 0")
    try:
        rate_ok = not isinstance(rate, bool) and float(rate) >= 0
    except (TypeError, ValueError):
        rate_ok = False
    if not rate_ok:
        raise Failure(f"{where}.rate_limit {rate!r} is not a number >= 0")


# --- requests and views (the diff compares views of both sides) ---------------
def cors_request(cors):
    if cors is None:
        return None
    config = {"AllowOrigins": cors["allow_origins"], "AllowCredentials": cors["allow_credentials"]}
    for option, field in (
        ("allow_methods", "AllowMethods"),
        ("allow_headers", "AllowHeaders"),
        ("expose_headers", "ExposeHeaders"),
    ):
        if cors[option]:
            config[field] = cors[option]
    if cors["max_age"] is not None:
        config["MaxAge"] = cors["max_age"]
    return config


def cors_view(config):
    if not config:
        return None
    return {
        "allow_origins": sorted(config.get("AllowOrigins", [])),
        "allow_methods": sorted(m.upper() for m in config.get("AllowMethods", [])),
        "allow_headers": sorted(h.lower() for h in config.get("AllowHeaders", [])),
        "expose_headers": sorted(h.lower() for h in config.get("ExposeHeaders", [])),
        "max_age": config.get("MaxAge"),
        "allow_credentials": bool(config.get("AllowCredentials", False)),
    }


def authorizer_request(authorizer):
    return {
        "Name": authorizer["name"],
        "AuthorizerType": "JWT",
        "IdentitySource": [authorizer["identity_source"]],
        "JwtConfiguration": {"Issuer": authorizer["issuer"], "Audience": authorizer["audience"]},
    }


def authorizer_view(item):
    if item is None:
        return None
    jwt = item.get("JwtConfiguration", {})
    return {
        "name": item.get("Name"),
        "issuer": jwt.get("Issuer"),
        "audience": sorted(jwt.get("Audience", [])),
        "identity_source": ",".join(item.get("IdentitySource", [])),
    }


def integration_request(integration):
    return {
        "IntegrationType": "AWS_PROXY",
        "IntegrationMethod": "POST",
        "IntegrationUri": integration["function_arn"],
        "PayloadFormatVersion": integration["payload_format_version"],
        "TimeoutInMillis": integration["timeout_ms"],
    }


def integration_view(item):
    return {
        "function_arn": item.get("IntegrationUri"),
        "payload_format_version": item.get("PayloadFormatVersion"),
        "timeout_ms": item.get("TimeoutInMillis"),
    }


def route_view(item, integration_names, authorizer_id):
    """A route as the diff shows it: the integration by name, the authorization as jwt|none
    (naming the authorizer id when it is not the managed one)."""
    target = item.get("Target") or ""
    integration = integration_names.get(target.removeprefix("integrations/"), target or None)
    if item.get("AuthorizationType") == "JWT":
        used = item.get("AuthorizerId")
        authorization = "jwt" if used and used == authorizer_id else f"jwt (authorizer {used})"
    else:
        authorization = (item.get("AuthorizationType") or "NONE").lower()
    return {"integration": integration, "authorization": authorization}


def throttle_request(settings):
    return {
        "ThrottlingBurstLimit": int(str(settings["burst_limit"])),
        "ThrottlingRateLimit": float(settings["rate_limit"]),
    }


def throttle_view(settings):
    burst = (settings or {}).get("ThrottlingBurstLimit")
    rate = (settings or {}).get("ThrottlingRateLimit")
    if burst is None and rate is None:
        return None
    return {"burst_limit": burst, "rate_limit": None if rate is None else float(rate)}


def stage_request(stage):
    request = {
        "StageName": stage["name"],
        "AutoDeploy": stage["auto_deploy"],
        "DefaultRouteSettings": (
            throttle_request(stage["default_throttling"]) if stage["default_throttling"] else {}
        ),
        "RouteSettings": {
            key: throttle_request(value) for key, value in (stage["route_throttling"] or {}).items()
        },
    }
    if stage["access_log"]:
        request["AccessLogSettings"] = {
            "DestinationArn": stage["access_log"]["destination_arn"],
            "Format": stage["access_log"]["format"],
        }
    return request


def stage_view(item):
    if item is None:
        return None
    log = item.get("AccessLogSettings") or {}
    routes = {key: throttle_view(value) for key, value in (item.get("RouteSettings") or {}).items()}
    return {
        "name": item.get("StageName"),
        "auto_deploy": bool(item.get("AutoDeploy", False)),
        "default_throttling": throttle_view(item.get("DefaultRouteSettings")),
        "route_throttling": {key: value for key, value in routes.items() if value},
        "access_log": (
            {"destination_arn": log["DestinationArn"], "format": log.get("Format")}
            if log.get("DestinationArn")
            else None
        ),
    }


# --- reading -----------------------------------------------------------------
def strip(response):
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


def find_api(gw, name, tags, warn=None):
    """The HTTP API named `name` that carries every tag in `tags`.

    Names are not unique in API Gateway: an API of that name without the tags is
    someone else's and is never adopted (a warning says so); without `tags`, the
    one API of that name.
    """
    named = [
        api
        for api in pages(gw.get_apis, "Items")
        if api.get("Name") == name and api.get("ProtocolType") == "HTTP"
    ]
    # The Project tag says whose it is; the other tags may be about to change.
    identity = {"Project": tags["Project"]} if tags and "Project" in tags else tags
    candidates = [api for api in named if carries(api.get("Tags"), identity)] if identity else named
    foreign = [api["ApiId"] for api in named if api not in candidates]
    if foreign and warn is not None:
        warn(
            f"HTTP API(s) {', '.join(sorted(foreign))} are named {name!r} but do not carry the "
            f"tags {identity}: left alone, not managed by this module"
        )
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    ids = ", ".join(sorted(api["ApiId"] for api in candidates))
    raise Failure(
        f"name: {len(candidates)} HTTP APIs are named {name!r} and carry the tags {identity or {}} "
        f"(ids {ids}): delete the extra ones"
    )


def read_authorizers(gw, api_id, routes, warn):
    try:
        return pages(gw.get_authorizers, "Items", ApiId=api_id)
    except ClientError as exc:
        if not unsupported(exc):
            raise
    warn(
        "the stand-in lacks apigatewayv2 get_authorizers: the authorizer is looked up through "
        "the routes that use it instead (an authorizer no route uses is not seen)"
    )
    found = []
    for authorizer_id in sorted({r["AuthorizerId"] for r in routes if r.get("AuthorizerId")}):
        try:
            found.append(
                strip(gw.get_authorizer(ApiId=api_id, AuthorizerId=authorizer_id, aws_retry=True))
            )
        except ClientError as exc:
            if not is_not_found(exc):
                raise
    return found


def read_api(gw, api, stage_name, warn):
    """Everything under the API that this module manages, as AWS describes it."""
    if api is None:
        return {"api": None, "authorizers": [], "integrations": [], "routes": [], "stage": None}
    api_id = api["ApiId"]
    routes = pages(gw.get_routes, "Items", ApiId=api_id)
    try:
        stage = strip(gw.get_stage(ApiId=api_id, StageName=stage_name, aws_retry=True))
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        stage = None
    return {
        "api": api,
        "authorizers": read_authorizers(gw, api_id, routes, warn),
        "integrations": pages(gw.get_integrations, "Items", ApiId=api_id),
        "routes": routes,
        "stage": stage,
    }


def match_integrations(existing, wanted):
    """Desired name → existing integration (matched by IntegrationUri), and the unlisted rest."""
    by_uri = {}
    for item in sorted(existing, key=lambda item: item["IntegrationId"]):
        by_uri.setdefault(item.get("IntegrationUri"), item)
    matched = {
        integration["name"]: by_uri[integration["function_arn"]]
        for integration in wanted
        if integration["function_arn"] in by_uri
    }
    used = {item["IntegrationId"] for item in matched.values()}
    return matched, [item for item in existing if item["IntegrationId"] not in used]


def function_of(uri):
    """The Lambda function (qualified) ARN an integration URI points at, or None."""
    match = FUNCTION_IN_URI.search(uri or "")
    return match.group(0).removesuffix("/invocations") if match else None


def statement_id(api_id):
    return f"tl-http-api-{api_id}"


def has_permission(lam, function_arn, sid):
    try:
        policy = lam.get_policy(FunctionName=function_arn, aws_retry=True)["Policy"]
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    return any(s.get("Sid") == sid for s in json.loads(policy).get("Statement", []))


def view(params, current, matched, unlisted, authorizer, permitted):
    """One dict that describes the API as `current` holds it, in the diff's terms."""
    api = current["api"]
    if api is None:
        return None
    names = {item["IntegrationId"]: name for name, item in matched.items()}
    for item in unlisted:
        key = item.get("IntegrationUri") or item["IntegrationId"]
        names[item["IntegrationId"]] = key if key not in names.values() else item["IntegrationId"]
    authorizer_id = authorizer["AuthorizerId"] if authorizer else None
    out = {
        "name": api["Name"],
        "description": api.get("Description") or "",
        "tags": api.get("Tags") or {},
        "cors": cors_view(api.get("CorsConfiguration")),
        "integrations": {
            names[item["IntegrationId"]]: integration_view(item) for item in current["integrations"]
        },
        "routes": {
            item["RouteKey"]: route_view(item, names, authorizer_id) for item in current["routes"]
        },
        "stage": stage_view(current["stage"]),
    }
    if params["jwt_authorizer"] is not None:
        out["authorizer"] = authorizer_view(authorizer)
    if permitted is not None:
        out["invoke_permissions"] = sorted(permitted)
    return out


# --- present -----------------------------------------------------------------
def tagging_arn(region, api_id):
    partition = (
        "aws-cn"
        if region.startswith("cn-")
        else "aws-us-gov"
        if region.startswith("us-gov-")
        else "aws"
    )
    return f"arn:{partition}:apigateway:{region}::/apis/{api_id}"


def api_steps(gw, params, api, state, steps):
    """Create the API, or update its description, CORS and tags."""
    cors = cors_request(params["cors"])
    if api is None:

        def create():
            request = {"Name": params["name"], "ProtocolType": "HTTP", "Tags": params["tags"] or {}}
            if params["description"] is not None:
                request["Description"] = params["description"]
            if cors:
                request["CorsConfiguration"] = cors
            created = gw.create_api(aws_retry=True, **request)
            state.update(api_id=created["ApiId"], api_endpoint=created["ApiEndpoint"])

        steps.append(create)
        return
    api_id = api["ApiId"]
    update = {}
    wanted_description = params["description"]
    if wanted_description is not None and wanted_description != (api.get("Description") or ""):
        update["Description"] = wanted_description
    if cors and cors_view(cors) != cors_view(api.get("CorsConfiguration")):
        update["CorsConfiguration"] = cors
    if update:
        steps.append(lambda: gw.update_api(ApiId=api_id, aws_retry=True, **update))
    if cors is None and api.get("CorsConfiguration"):
        steps.append(lambda: gw.delete_cors_configuration(ApiId=api_id, aws_retry=True))
    to_set, to_remove = tag_changes(api.get("Tags") or {}, params["tags"], params["purge_tags"])
    arn = tagging_arn(gw.meta.region_name, api_id)
    if to_set:
        steps.append(lambda: gw.tag_resource(ResourceArn=arn, Tags=to_set, aws_retry=True))
    if to_remove:
        steps.append(lambda: gw.untag_resource(ResourceArn=arn, TagKeys=to_remove, aws_retry=True))


def authorizer_steps(gw, params, authorizer, state, steps):
    wanted = params["jwt_authorizer"]
    if wanted is None:
        return
    request = authorizer_request(wanted)
    if authorizer is None:

        def create():
            created = gw.create_authorizer(ApiId=state["api_id"], aws_retry=True, **request)
            state["authorizer_id"] = created["AuthorizerId"]

        steps.append(create)
    elif authorizer_view(authorizer) != authorizer_view(request):
        steps.append(
            lambda: gw.update_authorizer(
                ApiId=state["api_id"],
                AuthorizerId=authorizer["AuthorizerId"],
                aws_retry=True,
                **request,
            )
        )


def integration_steps(gw, params, matched, state, steps):
    for integration in params["integrations"]:
        name, request = integration["name"], integration_request(integration)
        item = matched.get(name)
        if item is None:

            def create(name=name, request=request):
                created = gw.create_integration(ApiId=state["api_id"], aws_retry=True, **request)
                state["integrations"][name] = created["IntegrationId"]

            steps.append(create)
        elif integration_view(item) != integration_view(request):
            update = {key: request[key] for key in ("PayloadFormatVersion", "TimeoutInMillis")}
            steps.append(
                lambda item=item, update=update: gw.update_integration(
                    ApiId=state["api_id"],
                    IntegrationId=item["IntegrationId"],
                    aws_retry=True,
                    **update,
                )
            )


def route_request(route, state):
    request = {
        "RouteKey": route["route_key"],
        "Target": f"integrations/{state['integrations'][route['integration']]}",
    }
    if route["authorization"] == "jwt":
        request.update(AuthorizationType="JWT", AuthorizerId=state["authorizer_id"])
    else:
        request["AuthorizationType"] = "NONE"
    return request


def route_steps(gw, params, existing, names, authorizer_id, state, steps):
    """Create or update the listed routes; return the ids of the routes to purge."""
    by_key = {item["RouteKey"]: item for item in existing}
    for route in params["routes"]:
        item = by_key.pop(route["route_key"], None)
        wanted = {"integration": route["integration"], "authorization": route["authorization"]}
        if item is None:

            def create(route=route):
                created = gw.create_route(
                    ApiId=state["api_id"], aws_retry=True, **route_request(route, state)
                )
                state["routes"][route["route_key"]] = created["RouteId"]

            steps.append(create)
        elif route_view(item, names, authorizer_id) != wanted:

            def update(route=route, item=item):
                request = route_request(route, state)
                if request["AuthorizationType"] == "NONE" and item.get("AuthorizerId"):
                    request["AuthorizerId"] = ""
                gw.update_route(
                    ApiId=state["api_id"], RouteId=item["RouteId"], aws_retry=True, **request
                )

            steps.append(update)
    return [item["RouteId"] for item in by_key.values()]


def stage_steps(gw, params, stage, state, steps, warn):
    request = stage_request(params["stage"])
    if stage is None:
        steps.append(lambda: gw.create_stage(ApiId=state["api_id"], aws_retry=True, **request))
        return True
    if stage_view(stage) == stage_view(request):
        return False

    def update():
        api_id, name = state["api_id"], request["StageName"]
        try:
            gw.update_stage(ApiId=api_id, aws_retry=True, **request)
        except ClientError as exc:
            if not unsupported(exc):
                raise
            warn(
                f"the stand-in lacks apigatewayv2 update_stage: stage {name!r} is being deleted "
                "and created again with the new settings instead (AWS updates it in place)"
            )
            gw.delete_stage(ApiId=api_id, StageName=name, aws_retry=True)
            gw.create_stage(ApiId=api_id, aws_retry=True, **request)
            return
        # update_stage sets what it is given; settings no longer wanted are deleted one by one
        for key in set(stage.get("RouteSettings") or {}) - set(request["RouteSettings"]):
            try:
                gw.delete_route_settings(ApiId=api_id, StageName=name, RouteKey=key, aws_retry=True)
            except ClientError as exc:
                if not is_not_found(exc):
                    raise
        if (stage.get("AccessLogSettings") or {}).get(
            "DestinationArn"
        ) and "AccessLogSettings" not in request:
            gw.delete_access_log_settings(ApiId=api_id, StageName=name, aws_retry=True)

    steps.append(update)
    return False


def deployment_step(gw, params, state, warn):
    def deploy():
        name = params["stage"]["name"]
        try:
            gw.create_deployment(
                ApiId=state["api_id"], StageName=name, Description="tl_http_api", aws_retry=True
            )
        except ClientError as exc:
            if not unsupported(exc):
                raise
            warn(
                f"the stand-in lacks apigatewayv2 create_deployment: the changes were made but not "
                f"deployed to stage {name!r} (stage.auto_deploy is false); nothing was deployed"
            )

    return deploy


def permission_steps(clients, params, current, matched, unlisted, state, steps):
    """Add the invoke permission each listed function lacks, remove it from dropped ones;
    return the functions that carry it now (None when permissions are not managed)."""
    if not params["invoke_permissions"]:
        return None
    lam = clients("lambda")
    api_id = current["api"]["ApiId"] if current["api"] else None
    sid = statement_id(api_id) if api_id else None
    wanted = [integration["function_arn"] for integration in params["integrations"]]
    permitted = [arn for arn in wanted if sid and has_permission(lam, arn, sid)]
    dropped = {function_of(item.get("IntegrationUri")) for item in unlisted} - {None, *wanted}
    permitted += [arn for arn in sorted(dropped) if sid and has_permission(lam, arn, sid)]

    for index, arn in enumerate(wanted):
        if arn in permitted:
            continue

        def add(arn=arn, index=index):
            account = (
                state.get("account")
                or clients("sts").get_caller_identity(aws_retry=True)["Account"]
            )
            state["account"] = account
            partition, region = arn.split(":")[1], clients("apigatewayv2").meta.region_name
            try:
                lam.add_permission(
                    FunctionName=arn,
                    StatementId=statement_id(state["api_id"]),
                    Action="lambda:InvokeFunction",
                    Principal=PRINCIPAL,
                    SourceArn=f"arn:{partition}:execute-api:{region}:{account}:{state['api_id']}/*",
                    aws_retry=True,
                )
            except ClientError as exc:
                if is_not_found(exc):
                    raise Failure(
                        f"integrations[{index}].function_arn {arn!r}: no such Lambda function or "
                        "alias; create it first (tl_lambda), then run this again",
                        exc,
                    ) from None
                raise

        steps.append(add)
    for arn in sorted(dropped):
        if arn in permitted:
            steps.append(lambda arn=arn: remove_permission(lam, arn, sid))
    return permitted


def remove_permission(lam, function_arn, sid):
    try:
        lam.remove_permission(FunctionName=function_arn, StatementId=sid, aws_retry=True)
    except ClientError as exc:
        if not is_not_found(exc):
            raise


def ensure_present(clients, params, check_mode, warn):
    validate(params)
    gw = clients("apigatewayv2")
    api = find_api(gw, params["name"], params["tags"], warn)
    current = read_api(gw, api, params["stage"]["name"], warn)
    matched, unlisted = match_integrations(current["integrations"], params["integrations"])
    wanted_authorizer = params["jwt_authorizer"]
    authorizer = next(
        (
            a
            for a in current["authorizers"]
            if wanted_authorizer and a.get("Name") == wanted_authorizer["name"]
        ),
        None,
    )
    names = {item["IntegrationId"]: name for name, item in matched.items()}
    state = {
        "api_id": api["ApiId"] if api else None,
        "api_endpoint": api.get("ApiEndpoint") if api else None,
        "authorizer_id": authorizer["AuthorizerId"] if authorizer else None,
        "integrations": {
            i["name"]: (matched[i["name"]]["IntegrationId"] if i["name"] in matched else None)
            for i in params["integrations"]
        },
        "routes": {item["RouteKey"]: item["RouteId"] for item in current["routes"]},
    }

    steps = []
    api_steps(gw, params, api, state, steps)
    first_child_step = len(steps)
    authorizer_steps(gw, params, authorizer, state, steps)
    integration_steps(gw, params, matched, state, steps)
    purged_routes = route_steps(
        gw, params, current["routes"], names, state["authorizer_id"], state, steps
    )
    children_changed = len(steps) > first_child_step or bool(purged_routes or unlisted)
    stage_created = stage_steps(gw, params, current["stage"], state, steps, warn)
    for route_id in purged_routes:
        steps.append(
            lambda route_id=route_id: gw.delete_route(
                ApiId=state["api_id"], RouteId=route_id, aws_retry=True
            )
        )
    for item in unlisted:
        steps.append(
            lambda item=item: gw.delete_integration(
                ApiId=state["api_id"], IntegrationId=item["IntegrationId"], aws_retry=True
            )
        )
    if not params["stage"]["auto_deploy"] and (children_changed or stage_created):
        steps.append(deployment_step(gw, params, state, warn))
    permitted = permission_steps(clients, params, current, matched, unlisted, state, steps)

    before = view(params, current, matched, unlisted, authorizer, permitted)
    after = desired_view(params, api, permitted is not None)
    if not check_mode:
        for step in steps:
            step()
    return finish(params, state, bool(steps), before, after)


def desired_view(params, api, manage_permissions):
    current_tags = (api or {}).get("Tags") or {}
    to_set, to_remove = tag_changes(current_tags, params["tags"], params["purge_tags"])
    tags = {k: v for k, v in {**current_tags, **to_set}.items() if k not in to_remove}
    description = params["description"]
    if description is None:
        description = (api or {}).get("Description") or ""
    out = {
        "name": params["name"],
        "description": description,
        "tags": tags,
        "cors": cors_view(cors_request(params["cors"])),
        "integrations": {
            i["name"]: integration_view(integration_request(i)) for i in params["integrations"]
        },
        "routes": {
            r["route_key"]: {"integration": r["integration"], "authorization": r["authorization"]}
            for r in params["routes"]
        },
        "stage": stage_view(stage_request(params["stage"])),
    }
    if params["jwt_authorizer"] is not None:
        out["authorizer"] = authorizer_view(authorizer_request(params["jwt_authorizer"]))
    if manage_permissions:
        out["invoke_permissions"] = sorted(i["function_arn"] for i in params["integrations"])
    return out


def finish(params, state, changed, before, after):
    stage_name = params["stage"]["name"]
    endpoint = state["api_endpoint"]
    invoke_url = None
    if endpoint:
        invoke_url = endpoint if stage_name == "$default" else f"{endpoint}/{stage_name}"
    listed = {r["route_key"] for r in params["routes"]}
    return dict(
        changed=changed,
        before=before,
        after=after,
        api_id=state["api_id"],
        api_endpoint=endpoint,
        stage_name=stage_name,
        invoke_url=invoke_url,
        authorizer_id=state["authorizer_id"] if params["jwt_authorizer"] else None,
        integrations=dict(state["integrations"]),
        routes={key: state["routes"].get(key) for key in sorted(listed)},
    )


# --- absent ------------------------------------------------------------------
def ensure_absent(clients, params, check_mode, warn):
    gw = clients("apigatewayv2")
    api = find_api(gw, params["name"], params["tags"], warn)
    gone = dict(changed=False, before=None, after=None, api_id=None, api_endpoint=None)
    if api is None:
        return gone
    current = read_api(gw, api, params["stage"]["name"], warn)
    matched, unlisted = match_integrations(current["integrations"], params["integrations"])
    wanted_name = params["jwt_authorizer"]["name"] if params["jwt_authorizer"] else None
    authorizer = next((a for a in current["authorizers"] if a.get("Name") == wanted_name), None)
    steps, permitted = [], None
    if params["invoke_permissions"]:
        lam, sid = clients("lambda"), statement_id(api["ApiId"])
        functions = {function_of(item.get("IntegrationUri")) for item in current["integrations"]}
        functions |= {i["function_arn"] for i in params["integrations"]}
        permitted = [arn for arn in sorted(functions - {None}) if has_permission(lam, arn, sid)]
        steps += [lambda arn=arn: remove_permission(lam, arn, sid) for arn in permitted]
    steps.append(lambda: gw.delete_api(ApiId=api["ApiId"], aws_retry=True))
    before = view(params, current, matched, unlisted, authorizer, permitted)
    if not check_mode:
        for step in steps:
            step()
    return dict(
        changed=True,
        before=before,
        after=None,
        api_id=api["ApiId"],
        api_endpoint=api.get("ApiEndpoint"),
    )


def ensure(module):
    """Wire the module's clients and parameters to the functions above; the exit dictionary."""
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

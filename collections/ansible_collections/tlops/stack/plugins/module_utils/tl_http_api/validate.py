# Part of tl_http_api (plugins/modules/tl_http_api.py). Apache-2.0.
"""The input of tl_http_api: what AWS would refuse or silently mis-handle, refused first."""

from __future__ import annotations

import json
import re

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure

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
LOG_GROUP_ARN = re.compile(r"^arn:aws[a-z-]*:logs:[a-z0-9-]+:\d{12}:log-group:[A-Za-z0-9_./#-]+$")
STAGE_NAME = re.compile(r"^(?:\$default|[A-Za-z0-9_-]{1,128})$")


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

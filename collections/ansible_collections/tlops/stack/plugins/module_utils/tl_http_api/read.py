# Part of tl_http_api (plugins/modules/tl_http_api.py). Apache-2.0.
"""What API Gateway and Lambda hold of the API, and the one view of it the diff shows."""

from __future__ import annotations

import json
import re

from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    ClientError,
    Failure,
    carries,
    is_not_found,
    pages,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_http_api.shapes import (
    authorizer_view,
    cors_view,
    integration_view,
    route_view,
    stage_view,
)

FUNCTION_IN_URI = re.compile(r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_:-]+")


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
    listed = gaps.optional(
        pages, "apigatewayv2-no-get-authorizers", gw.get_authorizers, "Items", ApiId=api_id
    )
    if listed is not gaps.LACKING:
        return listed
    gaps.warn(warn, "apigatewayv2-no-get-authorizers")
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

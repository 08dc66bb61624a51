# Part of tl_http_api (plugins/modules/tl_http_api.py). Apache-2.0.
"""state=present and state=absent of the API: read, plan the steps, take them, report."""

from __future__ import annotations

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import tag_changes, tags_after
from ansible_collections.tlops.stack.plugins.module_utils.tl_http_api.apply import (
    api_steps,
    authorizer_steps,
    deployment_step,
    integration_steps,
    permission_steps,
    remove_permission,
    route_steps,
    stage_steps,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_http_api.read import (
    find_api,
    function_of,
    has_permission,
    match_integrations,
    read_api,
    statement_id,
    view,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_http_api.shapes import (
    authorizer_request,
    authorizer_view,
    cors_request,
    cors_view,
    integration_request,
    integration_view,
    stage_request,
    stage_view,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_http_api.validate import validate


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
    tags = tags_after(current_tags, to_set, to_remove)
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

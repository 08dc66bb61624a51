# Part of tl_http_api (plugins/modules/tl_http_api.py). Apache-2.0.
"""The steps that bring the API where it should be, each a call made later (not in check mode)."""

from __future__ import annotations

from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    ClientError,
    Failure,
    apply_tags,
    is_not_found,
    tag_changes,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_http_api.read import (
    function_of,
    has_permission,
    statement_id,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_http_api.shapes import (
    authorizer_request,
    authorizer_view,
    cors_request,
    cors_view,
    integration_request,
    integration_view,
    route_view,
    stage_request,
    stage_view,
)

PRINCIPAL = "apigateway.amazonaws.com"


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
    if to_set or to_remove:
        steps.append(
            lambda: apply_tags(
                lambda tags: gw.tag_resource(ResourceArn=arn, Tags=tags, aws_retry=True),
                lambda keys: gw.untag_resource(ResourceArn=arn, TagKeys=keys, aws_retry=True),
                to_set,
                to_remove,
            )
        )


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
        updated = gaps.optional(
            gw.update_stage, "apigatewayv2-no-update-stage", ApiId=api_id, aws_retry=True, **request
        )
        if updated is gaps.LACKING:
            gaps.warn(warn, "apigatewayv2-no-update-stage", stage=name)
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
        deployed = gaps.optional(
            gw.create_deployment,
            "apigatewayv2-no-create-deployment",
            ApiId=state["api_id"],
            StageName=name,
            Description="tl_http_api",
            aws_retry=True,
        )
        if deployed is gaps.LACKING:
            gaps.warn(warn, "apigatewayv2-no-create-deployment", stage=name)

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

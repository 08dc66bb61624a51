"""tl_http_api: the stack's HTTP API against the stand-in, and the AWS-only paths stubbed."""

from __future__ import annotations

import io
import json
import zipfile
from types import SimpleNamespace

import pytest
from ansible_collections.amazon.aws.plugins.module_utils import cloud
from botocore.exceptions import ClientError

from .conftest import ACCOUNT_ID, REGION, STUB_ARGS
from .harness import ModuleFailed, run_module, warned

TAGS = {"Project": "tinyllama", "Role": "edge"}
ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_pool"
LOG_GROUP = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/tinyllama/api-access"
LOG_FORMAT = json.dumps({"requestId": "$context.requestId", "status": "$context.status"})


@pytest.fixture
def functions(aws) -> dict[str, str]:
    """Two real Lambda functions on the stand-in, each with a `live` alias: name → alias ARN."""
    role = aws("iam").create_role(
        RoleName="tl-http-api-test",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    lam, arns = aws("lambda"), {}
    for name in ("router", "queue-health"):
        lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": code.getvalue()},
        )
        version = lam.publish_version(FunctionName=name)["Version"]
        arns[name] = lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)[
            "AliasArn"
        ]
    return arns


def api_args(aws_args, functions, **overrides):
    args = {
        **aws_args,
        "name": "tinyllama",
        "description": "TinyLlama inference edge",
        "tags": dict(TAGS),
        "cors": {
            "allow_origins": ["http://localhost:3000"],
            "allow_methods": ["GET", "POST"],
            "allow_headers": ["authorization", "content-type"],
            "max_age": 600,
        },
        "jwt_authorizer": {"name": "cognito", "issuer": ISSUER, "audience": ["client-1"]},
        "integrations": [
            {"name": "router", "function_arn": functions["router"]},
            {"name": "health", "function_arn": functions["queue-health"], "timeout_ms": 3000},
        ],
        "routes": [
            {"route_key": "POST /infer", "integration": "router"},
            {"route_key": "GET /jobs/{id}", "integration": "router"},
            {"route_key": "GET /ping", "integration": "health", "authorization": "none"},
        ],
        "stage": {
            "default_throttling": {"burst_limit": 20, "rate_limit": 10},
            "route_throttling": {"POST /infer": {"burst_limit": 5, "rate_limit": 2}},
            "access_log": {"destination_arn": LOG_GROUP, "format": LOG_FORMAT},
        },
    }
    args.update(overrides)
    return args


def the_api(aws) -> dict | None:
    apis = [a for a in aws("apigatewayv2").get_apis()["Items"] if a["Name"] == "tinyllama"]
    assert len(apis) <= 1
    return apis[0] if apis else None


def statements(aws, function_arn) -> list[dict]:
    try:
        policy = aws("lambda").get_policy(FunctionName=function_arn)["Policy"]
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ResourceNotFoundException"
        return []
    return json.loads(policy)["Statement"]


def deployed(aws_args, functions, **overrides):
    first = run_module("tl_http_api", api_args(aws_args, functions, **overrides))
    assert first["changed"] is True
    return first


# --- life cycle on the stand-in -----------------------------------------------
def test_check_mode_creates_nothing_then_apply_builds_it_all_then_no_change(
    aws_args, aws, functions
):
    args = api_args(aws_args, functions)

    planned = run_module("tl_http_api", args, check=True)
    assert planned["changed"] is True
    assert planned["api_id"] is None
    assert planned["diff"]["before"] == {}
    assert planned["diff"]["after"]["routes"]["GET /ping"] == {
        "integration": "health",
        "authorization": "none",
    }
    assert the_api(aws) is None
    assert statements(aws, functions["router"]) == []

    done = run_module("tl_http_api", args)
    assert done["changed"] is True
    gw, api_id = aws("apigatewayv2"), done["api_id"]
    api = gw.get_api(ApiId=api_id)
    assert api["Tags"] == TAGS
    assert api["Description"] == "TinyLlama inference edge"
    assert api["CorsConfiguration"]["AllowOrigins"] == ["http://localhost:3000"]
    assert api["CorsConfiguration"]["MaxAge"] == 600
    assert done["api_endpoint"] == api["ApiEndpoint"] == done["invoke_url"]
    assert done["stage_name"] == "$default"

    authorizer = gw.get_authorizer(ApiId=api_id, AuthorizerId=done["authorizer_id"])
    assert authorizer["AuthorizerType"] == "JWT"
    assert authorizer["JwtConfiguration"] == {"Issuer": ISSUER, "Audience": ["client-1"]}
    assert authorizer["IdentitySource"] == ["$request.header.Authorization"]

    integrations = {i["IntegrationId"]: i for i in gw.get_integrations(ApiId=api_id)["Items"]}
    assert set(integrations) == set(done["integrations"].values())
    router = integrations[done["integrations"]["router"]]
    assert router["IntegrationType"] == "AWS_PROXY"
    assert router["IntegrationUri"] == functions["router"]
    assert router["PayloadFormatVersion"] == "2.0"
    assert router["TimeoutInMillis"] == 10000
    assert integrations[done["integrations"]["health"]]["TimeoutInMillis"] == 3000

    routes = {r["RouteKey"]: r for r in gw.get_routes(ApiId=api_id)["Items"]}
    assert set(routes) == {"POST /infer", "GET /jobs/{id}", "GET /ping"}
    assert {k: r["RouteId"] for k, r in routes.items()} == done["routes"]
    assert routes["POST /infer"]["Target"] == f"integrations/{router['IntegrationId']}"
    assert routes["POST /infer"]["AuthorizationType"] == "JWT"
    assert routes["POST /infer"]["AuthorizerId"] == done["authorizer_id"]
    assert routes["GET /ping"]["AuthorizationType"] == "NONE"

    stage = gw.get_stage(ApiId=api_id, StageName="$default")
    assert stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 20
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == 10.0
    assert stage["RouteSettings"]["POST /infer"]["ThrottlingBurstLimit"] == 5
    assert stage["AccessLogSettings"] == {"DestinationArn": LOG_GROUP, "Format": LOG_FORMAT}

    source = f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{api_id}/*"
    for arn in functions.values():
        (statement,) = statements(aws, arn)
        assert statement["Sid"] == f"tl-http-api-{api_id}"
        assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
        assert statement["Action"] == "lambda:InvokeFunction"
        assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == source

    again = run_module("tl_http_api", args)
    assert again["changed"] is False, again["diff"]
    assert again["diff"]["before"] == again["diff"]["after"]
    assert again["api_id"] == api_id
    assert again["routes"] == done["routes"]
    assert again["integrations"] == done["integrations"]
    assert again["authorizer_id"] == done["authorizer_id"]
    # the stand-in lacks get_authorizers; the module says how it found the authorizer
    assert warned(again, "get_authorizers")
    assert len(gw.get_integrations(ApiId=api_id)["Items"]) == 2


def test_cors_change_is_applied_and_shown_in_the_diff(aws_args, aws, functions):
    first = deployed(aws_args, functions)
    cors = {
        "allow_origins": [
            "http://localhost:3000",
            "http://localhost:5173",
            "capacitor://localhost",
        ],
        "allow_methods": ["GET", "POST", "OPTIONS"],
        "allow_headers": ["authorization", "content-type"],
        "max_age": 600,
    }

    planned = run_module("tl_http_api", api_args(aws_args, functions, cors=cors), check=True)
    assert planned["changed"] is True
    api = aws("apigatewayv2").get_api(ApiId=first["api_id"])
    assert api["CorsConfiguration"]["AllowOrigins"] == ["http://localhost:3000"]

    done = run_module("tl_http_api", api_args(aws_args, functions, cors=cors))
    assert done["changed"] is True
    before, after = done["diff"]["before"]["cors"], done["diff"]["after"]["cors"]
    assert before["allow_origins"] == ["http://localhost:3000"]
    assert after["allow_origins"] == [
        "capacitor://localhost",
        "http://localhost:3000",
        "http://localhost:5173",
    ]
    assert after["allow_methods"] == ["GET", "OPTIONS", "POST"]
    assert done["diff"]["before"]["routes"] == done["diff"]["after"]["routes"]
    api = aws("apigatewayv2").get_api(ApiId=first["api_id"])
    assert sorted(api["CorsConfiguration"]["AllowOrigins"]) == after["allow_origins"]
    assert run_module("tl_http_api", api_args(aws_args, functions, cors=cors))["changed"] is False

    removed = run_module("tl_http_api", api_args(aws_args, functions, cors=None))
    assert removed["changed"] is True
    assert removed["diff"]["after"]["cors"] is None
    assert "CorsConfiguration" not in aws("apigatewayv2").get_api(ApiId=first["api_id"])


def test_routes_are_added_and_unlisted_ones_purged(aws_args, aws, functions):
    first = deployed(aws_args, functions)
    gw, api_id = aws("apigatewayv2"), first["api_id"]
    routes = [
        {"route_key": "POST /infer", "integration": "router"},
        {"route_key": "GET /jobs/{id}", "integration": "router"},
        {"route_key": "GET /ping", "integration": "health", "authorization": "none"},
        {"route_key": "POST /stop", "integration": "router"},
    ]

    added = run_module("tl_http_api", api_args(aws_args, functions, routes=routes))
    assert added["changed"] is True
    assert "POST /stop" not in added["diff"]["before"]["routes"]
    assert added["diff"]["after"]["routes"]["POST /stop"] == {
        "integration": "router",
        "authorization": "jwt",
    }
    stop = gw.get_route(ApiId=api_id, RouteId=added["routes"]["POST /stop"])
    assert stop["Target"] == f"integrations/{added['integrations']['router']}"
    assert stop["AuthorizerId"] == added["authorizer_id"]

    fewer = [r for r in routes if r["route_key"] != "GET /jobs/{id}"]
    purged = run_module("tl_http_api", api_args(aws_args, functions, routes=fewer))
    assert purged["changed"] is True
    assert "GET /jobs/{id}" in purged["diff"]["before"]["routes"]
    assert "GET /jobs/{id}" not in purged["diff"]["after"]["routes"]
    left = {r["RouteKey"] for r in gw.get_routes(ApiId=api_id)["Items"]}
    assert left == {"POST /infer", "GET /ping", "POST /stop"}
    assert set(purged["routes"]) == left

    opened = [
        {**r, "authorization": "none"} if r["route_key"] == "POST /stop" else r for r in fewer
    ]
    done = run_module("tl_http_api", api_args(aws_args, functions, routes=opened))
    assert done["diff"]["after"]["routes"]["POST /stop"]["authorization"] == "none"
    route = gw.get_route(ApiId=api_id, RouteId=done["routes"]["POST /stop"])
    assert route["AuthorizationType"] == "NONE"
    assert (
        run_module("tl_http_api", api_args(aws_args, functions, routes=opened))["changed"] is False
    )


def test_dropped_integration_is_deleted_and_its_permission_removed(aws_args, aws, functions):
    first = deployed(aws_args, functions)
    gw, api_id = aws("apigatewayv2"), first["api_id"]
    only_router = [{"name": "router", "function_arn": functions["router"]}]
    routes = [{"route_key": "POST /infer", "integration": "router"}]
    stage = {"default_throttling": {"burst_limit": 20, "rate_limit": 10}}
    args = api_args(aws_args, functions, integrations=only_router, routes=routes, stage=stage)

    done = run_module("tl_http_api", args)
    assert done["changed"] is True
    # the dropped integration has no name any more: the diff shows it by its function ARN
    assert set(done["diff"]["before"]["integrations"]) == {"router", functions["queue-health"]}
    assert set(done["diff"]["after"]["integrations"]) == {"router"}
    (left,) = gw.get_integrations(ApiId=api_id)["Items"]
    assert left["IntegrationUri"] == functions["router"]
    assert statements(aws, functions["queue-health"]) == []
    assert len(statements(aws, functions["router"])) == 1
    assert run_module("tl_http_api", args)["changed"] is False


def test_throttling_change_on_the_stand_in_recreates_the_stage_with_a_warning(
    aws_args, aws, functions
):
    first = deployed(aws_args, functions)
    stage = {
        "default_throttling": {"burst_limit": 40, "rate_limit": 25.5},
        "route_throttling": {
            "POST /infer": {"burst_limit": 3, "rate_limit": 1},
            "GET /jobs/{id}": {"burst_limit": 50, "rate_limit": 20},
        },
        "access_log": {"destination_arn": LOG_GROUP, "format": LOG_FORMAT},
    }
    args = api_args(aws_args, functions, stage=stage)

    planned = run_module("tl_http_api", args, check=True)
    assert planned["changed"] is True
    gw = aws("apigatewayv2")
    old = gw.get_stage(ApiId=first["api_id"], StageName="$default")
    assert old["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 20

    done = run_module("tl_http_api", args)
    assert done["changed"] is True
    assert warned(done, "the stand-in lacks apigatewayv2 update_stage")
    assert warned(done, "is being deleted and created again with the new settings")
    assert done["diff"]["before"]["stage"]["default_throttling"] == {
        "burst_limit": 20,
        "rate_limit": 10.0,
    }
    assert done["diff"]["after"]["stage"]["default_throttling"] == {
        "burst_limit": 40,
        "rate_limit": 25.5,
    }
    new = gw.get_stage(ApiId=first["api_id"], StageName="$default")
    assert new["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 40
    assert new["DefaultRouteSettings"]["ThrottlingRateLimit"] == 25.5
    assert new["RouteSettings"]["POST /infer"] == {
        "ThrottlingBurstLimit": 3,
        "ThrottlingRateLimit": 1.0,
    }
    assert new["RouteSettings"]["GET /jobs/{id}"]["ThrottlingBurstLimit"] == 50
    assert new["AccessLogSettings"]["Format"] == LOG_FORMAT
    assert new["AutoDeploy"] is True

    again = run_module("tl_http_api", args)
    assert again["changed"] is False
    assert not warned(again, "update_stage")


def test_tags_are_changed_and_purged(aws_args, aws, functions):
    first = deployed(aws_args, functions)
    gw = aws("apigatewayv2")
    tags = {"Project": "tinyllama", "Owner": "ops"}

    kept = run_module("tl_http_api", api_args(aws_args, functions, tags=tags, purge_tags=False))
    assert kept["changed"] is True
    assert gw.get_api(ApiId=first["api_id"])["Tags"] == {**TAGS, "Owner": "ops"}

    purged = run_module("tl_http_api", api_args(aws_args, functions, tags=tags))
    assert purged["changed"] is True
    assert purged["diff"]["before"]["tags"] == {**TAGS, "Owner": "ops"}
    assert purged["diff"]["after"]["tags"] == tags
    assert gw.get_api(ApiId=first["api_id"])["Tags"] == tags
    assert run_module("tl_http_api", api_args(aws_args, functions, tags=tags))["changed"] is False


def test_absent_deletes_the_api_and_its_permissions_then_is_a_no_op(aws_args, aws, functions):
    first = deployed(aws_args, functions)
    absent = {**aws_args, "name": "tinyllama", "state": "absent", "tags": {"Project": "tinyllama"}}

    planned = run_module("tl_http_api", absent, check=True)
    assert planned["changed"] is True
    assert the_api(aws) is not None
    assert statements(aws, functions["router"]) != []

    done = run_module("tl_http_api", absent)
    assert done["changed"] is True
    assert done["api_id"] == first["api_id"]
    assert done["diff"]["after"] == {}
    assert set(done["diff"]["before"]["invoke_permissions"]) == set(functions.values())
    assert the_api(aws) is None
    for arn in functions.values():
        assert statements(aws, arn) == []

    again = run_module("tl_http_api", absent)
    assert again["changed"] is False
    assert again["api_id"] is None


def test_untagged_look_alike_survives_absent(aws_args, aws):
    gw = aws("apigatewayv2")
    theirs = gw.create_api(Name="tinyllama", ProtocolType="HTTP", Tags={"Project": "other"})
    absent = {**aws_args, "name": "tinyllama", "state": "absent", "tags": {"Project": "tinyllama"}}

    done = run_module("tl_http_api", absent)
    assert done["changed"] is False
    assert warned(done, f"{theirs['ApiId']} are named 'tinyllama' but do not carry the tags")
    assert gw.get_api(ApiId=theirs["ApiId"])["Name"] == "tinyllama"


def test_an_untagged_look_alike_is_never_adopted(aws_args, aws, functions):
    """Names are not unique: deploying next to someone else's API of the same name makes a
    new one, and a later absent deletes only that."""
    gw = aws("apigatewayv2")
    theirs = gw.create_api(Name="tinyllama", ProtocolType="HTTP", Tags={"Project": "other"})
    made = run_module("tl_http_api", api_args(aws_args, functions))
    assert made["changed"] and made["api_id"] != theirs["ApiId"]
    assert warned(made, "left alone, not managed by this module")
    absent = {**aws_args, "name": "tinyllama", "state": "absent", "tags": {"Project": "tinyllama"}}
    assert run_module("tl_http_api", absent)["api_id"] == made["api_id"]
    assert [a["ApiId"] for a in gw.get_apis()["Items"]] == [theirs["ApiId"]]


def test_several_apis_with_the_name_are_told_apart_by_tags_or_refused(aws_args, aws):
    gw = aws("apigatewayv2")
    ours = gw.create_api(Name="tinyllama", ProtocolType="HTTP", Tags={"Project": "tinyllama"})
    theirs = gw.create_api(Name="tinyllama", ProtocolType="HTTP", Tags={"Project": "other"})
    absent = {**aws_args, "name": "tinyllama", "state": "absent", "tags": {"Project": "tinyllama"}}

    done = run_module("tl_http_api", absent)
    assert done["changed"] is True
    assert done["api_id"] == ours["ApiId"]
    assert [a["ApiId"] for a in gw.get_apis()["Items"]] == [theirs["ApiId"]]

    twins = [
        gw.create_api(Name="tinyllama", ProtocolType="HTTP", Tags={"Project": "tinyllama"})
        for _ in range(2)
    ]
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_http_api", absent)
    message = failed.value.result["msg"]
    assert message.startswith("name:")
    assert all(twin["ApiId"] in message for twin in twins)
    assert theirs["ApiId"] not in message
    assert len(gw.get_apis()["Items"]) == 3


def test_auto_deploy_off_warns_that_the_stand_in_cannot_deploy(aws_args, aws, functions):
    stage = {"auto_deploy": False}
    done = run_module("tl_http_api", api_args(aws_args, functions, stage=stage))
    assert done["changed"] is True
    assert warned(done, "lacks apigatewayv2 create_deployment")
    stage_now = aws("apigatewayv2").get_stage(ApiId=done["api_id"], StageName="$default")
    assert stage_now["AutoDeploy"] is False
    again = run_module("tl_http_api", api_args(aws_args, functions, stage=stage))
    assert again["changed"] is False
    assert not warned(again, "create_deployment")


# --- bad input ---------------------------------------------------------------
def _cors(**extra):
    return {"cors": {"allow_origins": ["http://localhost:3000"], **extra}}


BAD_INPUT = {
    "wildcard port origin": (
        {"cors": {"allow_origins": ["http://localhost:*"]}},
        ["cors.allow_origins", "wildcard port", "explicit origins"],
    ),
    "origin with a path": (
        {"cors": {"allow_origins": ["http://localhost:3000/app"]}},
        ["cors.allow_origins", "scheme://host[:port]"],
    ),
    "star with credentials": (
        {"cors": {"allow_origins": ["*"], "allow_credentials": True}},
        ["cors.allow_origins", "allow_credentials"],
    ),
    "bad cors method": (_cors(allow_methods=["FETCH"]), ["cors.allow_methods"]),
    "bad route key": (
        {"routes": [{"route_key": "POST infer", "integration": "router"}]},
        ["routes[0].route_key", "METHOD /path"],
    ),
    "route to an unknown integration": (
        {"routes": [{"route_key": "POST /infer", "integration": "nope"}]},
        ["routes[0].integration", "'nope'"],
    ),
    "route throttling for an unlisted route": (
        {"stage": {"route_throttling": {"POST /resize": {"burst_limit": 1, "rate_limit": 1}}}},
        ["stage.route_throttling", "POST /resize"],
    ),
    "access log format not JSON": (
        {"stage": {"access_log": {"destination_arn": LOG_GROUP, "format": "$context.requestId"}}},
        ["stage.access_log.format", "not JSON"],
    ),
    "access log format without the request id": (
        {
            "stage": {
                "access_log": {"destination_arn": LOG_GROUP, "format": '{"s":"$context.status"}'}
            }
        },
        ["stage.access_log.format", "$context.requestId"],
    ),
    "access log destination not a log group": (
        {"stage": {"access_log": {"destination_arn": LOG_GROUP + ":*", "format": LOG_FORMAT}}},
        ["stage.access_log.destination_arn"],
    ),
    "timeout too short": (
        {"integrations": [{"name": "router", "function_arn": "ALIAS", "timeout_ms": 49}]},
        ["integrations[0].timeout_ms", "50 to 30000"],
    ),
    "timeout too long": (
        {"integrations": [{"name": "router", "function_arn": "ALIAS", "timeout_ms": 30001}]},
        ["integrations[0].timeout_ms", "50 to 30000"],
    ),
    "function not an alias": (
        {"integrations": [{"name": "router", "function_arn": "FUNCTION"}]},
        ["integrations[0].function_arn", "alias"],
    ),
    "issuer not https": (
        {"jwt_authorizer": {"name": "cognito", "issuer": "http://x", "audience": ["a"]}},
        ["jwt_authorizer.issuer", "https"],
    ),
    "jwt route without an authorizer": (
        {"jwt_authorizer": None},
        ["routes[0].authorization", "jwt_authorizer"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_fails_naming_the_option(case, aws_args, aws, functions):
    overrides, expected = BAD_INPUT[case]
    overrides = json.loads(
        json.dumps(overrides)
        .replace('"ALIAS"', json.dumps(functions["router"]))
        .replace('"FUNCTION"', json.dumps(functions["router"].removesuffix(":live")))
    )
    with pytest.raises(ModuleFailed) as failed:
        run_module("tl_http_api", api_args(aws_args, functions, **overrides))
    message = failed.value.result["msg"]
    for part in expected:
        assert part in message, message
    assert the_api(aws) is None


# --- the AWS path, stubbed -----------------------------------------------------
API_ID = "a1b2c3d4e5"
STUB_ALIAS = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:router:live"


def stub_args(**stage):
    return {
        **STUB_ARGS,
        "name": "tinyllama",
        "tags": {"Project": "tinyllama"},
        "jwt_authorizer": {"name": "cognito", "issuer": ISSUER, "audience": ["client-1"]},
        "integrations": [{"name": "router", "function_arn": STUB_ALIAS}],
        "routes": [{"route_key": "POST /infer", "integration": "router"}],
        "stage": stage,
    }


def queue_reads(gw, lam, stage_settings):
    """What AWS answers for an API that exists as stub_args describes, but for its stage."""
    gw.add_response(
        "get_apis",
        {
            "Items": [
                {
                    "ApiId": API_ID,
                    "Name": "tinyllama",
                    "ProtocolType": "HTTP",
                    "RouteSelectionExpression": "$request.method $request.path",
                    "ApiEndpoint": f"https://{API_ID}.execute-api.{REGION}.amazonaws.com",
                    "Tags": {"Project": "tinyllama"},
                }
            ]
        },
        {},
    )
    gw.add_response(
        "get_routes",
        {
            "Items": [
                {
                    "RouteId": "route1",
                    "RouteKey": "POST /infer",
                    "Target": "integrations/integ1",
                    "AuthorizationType": "JWT",
                    "AuthorizerId": "auth1",
                }
            ]
        },
        {"ApiId": API_ID},
    )
    gw.add_response(
        "get_stage",
        {"StageName": "$default", **stage_settings},
        {"ApiId": API_ID, "StageName": "$default"},
    )
    gw.add_response(
        "get_authorizers",
        {
            "Items": [
                {
                    "AuthorizerId": "auth1",
                    "Name": "cognito",
                    "AuthorizerType": "JWT",
                    "IdentitySource": ["$request.header.Authorization"],
                    "JwtConfiguration": {"Issuer": ISSUER, "Audience": ["client-1"]},
                }
            ]
        },
        {"ApiId": API_ID},
    )
    gw.add_response(
        "get_integrations",
        {
            "Items": [
                {
                    "IntegrationId": "integ1",
                    "IntegrationType": "AWS_PROXY",
                    "IntegrationUri": STUB_ALIAS,
                    "PayloadFormatVersion": "2.0",
                    "TimeoutInMillis": 10000,
                }
            ]
        },
        {"ApiId": API_ID},
    )
    statement = {"Sid": f"tl-http-api-{API_ID}", "Effect": "Allow"}
    lam.add_response(
        "get_policy",
        {"Policy": json.dumps({"Statement": [statement]})},
        {"FunctionName": STUB_ALIAS},
    )


def test_aws_path_updates_the_stage_in_place_retrying_throttling(stubbed, monkeypatch):
    slept = []
    monkeypatch.setattr(cloud, "time", SimpleNamespace(sleep=slept.append))
    gw, lam = stubbed("apigatewayv2"), stubbed("lambda")
    queue_reads(
        gw,
        lam,
        {
            "AutoDeploy": True,
            "DefaultRouteSettings": {"ThrottlingBurstLimit": 20, "ThrottlingRateLimit": 10.0},
            "RouteSettings": {
                "POST /infer": {"ThrottlingBurstLimit": 5, "ThrottlingRateLimit": 2.0},
            },
        },
    )
    update = {
        "ApiId": API_ID,
        "StageName": "$default",
        "AutoDeploy": True,
        "DefaultRouteSettings": {"ThrottlingBurstLimit": 40, "ThrottlingRateLimit": 25.0},
        "RouteSettings": {},
    }
    gw.add_client_error(
        "update_stage", "TooManyRequestsException", "Too Many Requests", 429, expected_params=update
    )
    gw.add_response("update_stage", {"StageName": "$default"}, update)
    gw.add_response(
        "delete_route_settings",
        {},
        {"ApiId": API_ID, "StageName": "$default", "RouteKey": "POST /infer"},
    )

    done = run_module(
        "tl_http_api", stub_args(default_throttling={"burst_limit": 40, "rate_limit": 25})
    )
    assert done["changed"] is True
    assert len(slept) == 1  # one throttled answer, one jittered wait, then success
    assert not warned(done, "update_stage")
    assert done["diff"]["before"]["stage"]["route_throttling"] == {
        "POST /infer": {"burst_limit": 5, "rate_limit": 2.0}
    }
    assert done["diff"]["after"]["stage"]["route_throttling"] == {}
    assert done["routes"] == {"POST /infer": "route1"}
    assert done["authorizer_id"] == "auth1"
    # the stubber fails the test on any call not queued above, delete_stage included


def test_aws_path_same_settings_change_nothing(stubbed):
    gw, lam = stubbed("apigatewayv2"), stubbed("lambda")
    queue_reads(
        gw,
        lam,
        {
            "AutoDeploy": True,
            "DefaultRouteSettings": {"DetailedMetricsEnabled": False},
            "RouteSettings": {},
        },
    )
    done = run_module("tl_http_api", stub_args())
    assert done["changed"] is False
    assert done["diff"]["before"] == done["diff"]["after"]

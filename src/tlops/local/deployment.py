"""What deploy.yml deployed to the stand-in, read back for the local gateway to serve.

The HTTP API named `<project>-api` with its routes, JWT authorizer, CORS
origins and its stage's throttling, and behind each integration the Lambda
function's own environment (its `Function` tag says which handler it runs).
`DeployedGateway` reads it again every few seconds, so a second deploy is
served without a restart.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from tlops.edge.auth import TokenVerifier
from tlops.edge.routes import Route
from tlops.local.gateway import (
    FunctionPool,
    Gateway,
    authorizer_keys,
    handler_factory,
    write_access_line,
)
from tlops.local.throttling import Throttling

SERVED_STAGE = "$default"  # the stage at the API's root URL, the one the gateway stands in for
_THROTTLING_SETTINGS = ("DefaultRouteSettings", "RouteSettings")


class NotDeployed(Exception):
    """The stand-in holds no HTTP API for the project (yet)."""


def read_deployment(project: str, jwks_base_url: str) -> dict[str, Any]:
    """What deploy.yml made in the stand-in, as plain data: routes, authorizer, CORS origins,
    the served stage's throttling, and each integration's function with its environment.
    Raises NotDeployed."""
    from tlops.common import aws

    apigw, lam = aws.client("apigatewayv2"), aws.client("lambda")
    name = f"{project}-api"
    apis = [
        api
        for api in apigw.get_apis().get("Items", [])
        if api.get("Name") == name and (api.get("Tags") or {}).get("Project") == project
    ]
    if not apis:
        raise NotDeployed(f"no HTTP API named {name} tagged Project={project}")
    api_id = apis[0]["ApiId"]
    integrations = {i["IntegrationId"]: i for i in apigw.get_integrations(ApiId=api_id)["Items"]}
    functions: dict[str, dict[str, Any]] = {}
    for integration_id, integration in integrations.items():
        arn = integration["IntegrationUri"]
        config = lam.get_function_configuration(FunctionName=arn)
        tags = lam.list_tags(Resource=config["FunctionArn"].rsplit(":", 1)[0]).get("Tags", {})
        functions[integration_id] = {
            "function": tags.get("Function", ""),
            "env": dict((config.get("Environment") or {}).get("Variables") or {}),
        }
    routes, authorizer = [], None
    for route in apigw.get_routes(ApiId=api_id)["Items"]:
        method, _, path = route["RouteKey"].partition(" ")
        target = route.get("Target", "").removeprefix("integrations/")
        authorized = route.get("AuthorizationType") == "JWT"
        if authorized and authorizer is None:
            found = apigw.get_authorizer(ApiId=api_id, AuthorizerId=route["AuthorizerId"])
            jwt_config = found.get("JwtConfiguration") or {}
            issuer = jwt_config.get("Issuer", "").rstrip("/")
            authorizer = {
                "issuer": issuer,
                "audience": (jwt_config.get("Audience") or [""])[0],
                # the stand-in signs with the AWS issuer's name and serves the keys itself
                "jwks_url": f"{jwks_base_url.rstrip('/')}/{issuer.rsplit('/', 1)[-1]}"
                "/.well-known/jwks.json",
            }
        operation = route.get("OperationName", "")
        routes.append(
            {
                "method": method,
                "path": path,
                "operation": operation,
                "target": target,
                "authorized": authorized,
            }
        )
    cors = (apis[0].get("CorsConfiguration") or {}).get("AllowOrigins") or []
    stages = {s["StageName"]: s for s in apigw.get_stages(ApiId=api_id).get("Items", [])}
    stage = stages.get(SERVED_STAGE, {})
    return {
        "routes": sorted(routes, key=lambda r: (r["path"], r["method"])),
        "functions": functions,
        "authorizer": authorizer,
        "allowed_origins": sorted(cors),
        # only what the gateway applies: the stage's dates must not count as a change
        "throttling": {name: stage[name] for name in _THROTTLING_SETTINGS if name in stage},
    }


def gateway_for(deployment: dict[str, Any], access_log=None) -> Gateway:
    """A gateway serving `deployment` (see read_deployment)."""
    authorizer = deployment["authorizer"] or {"issuer": "", "audience": "", "jwks_url": ""}
    verifier = TokenVerifier(
        issuer=authorizer["issuer"],
        audience=authorizer["audience"],
        jwks=authorizer_keys(authorizer["jwks_url"]),
        token_use=None,  # the HTTP API authorizer accepts ID and access tokens alike
    )
    functions = {
        integration_id: FunctionPool(handler_factory(spec["function"], spec["env"]))
        for integration_id, spec in deployment["functions"].items()
        if spec["function"] in ("router", "queue_health")
    }
    # Behind each deployed route, the integration it targets (the function's pool).
    routes = tuple(
        Route(r["method"], r["path"], r["operation"], r["target"], authorized=r["authorized"])
        for r in deployment["routes"]
        if r["target"] in functions
    )
    return Gateway(
        verifier=verifier,
        functions=functions,
        allowed_origins=deployment["allowed_origins"],
        routes=routes,
        throttling=Throttling.from_stage(deployment["throttling"]),
        access_log=access_log,
    )


class DeployedGateway:
    """Serves whatever deploy.yml last deployed to the stand-in, re-read every `refresh_s`."""

    def __init__(self, project: str, jwks_base_url: str, *, access_log=None, refresh_s=2.0):
        self.project = project
        self.jwks_base_url = jwks_base_url
        self.access_log = access_log or sys.stdout
        self.refresh_s = refresh_s
        self._current: Gateway | None = None
        self._seen: dict[str, Any] | None = None
        self.problem = "not read yet"
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def refresh(self) -> None:
        """Read the deployment; rebuild only when it changed (warm handlers stay warm)."""
        try:
            deployment = read_deployment(self.project, self.jwks_base_url)
        except NotDeployed as exc:
            with self._lock:
                self._current, self._seen, self.problem = None, None, str(exc)
            return
        except Exception as exc:  # the stand-in restarting, say: keep what was served
            with self._lock:
                self.problem = f"cannot read the deployment: {exc}"
            return
        with self._lock:
            changed = deployment != self._seen
        # Built outside the lock: fetching the authorizer's keys must not hold up the
        # requests still served by the current snapshot.
        built = gateway_for(deployment, self.access_log) if changed else None
        with self._lock:
            if built is not None:
                self._current, self._seen = built, deployment
            self.problem = ""

    def start(self) -> DeployedGateway:
        self.refresh()

        def loop() -> None:
            while not self._stop.wait(self.refresh_s):
                self.refresh()

        threading.Thread(target=loop, name="deployment-refresh", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> Gateway | None:
        with self._lock:
            return self._current

    def log_access(self, record: dict[str, Any]) -> None:
        write_access_line(self.access_log, record)

"""A local stand-in for the API Gateway HTTP API in front of the Lambda handlers.

It does what the HTTP API does for this stack, no more: route matching
(404 unknown path, 405 wrong method), the stage's per-route throttling (429,
`tlops.local.throttling`), the JWT authorizer on protected routes (401
without a token, 403 `invalid_token` otherwise), CORS for the configured
origins, the payload size limit (413), a JSON access-log line per request, and
a payload-format-2.0 event handed to the very same handler code that runs in
Lambda. Each Lambda function gets a pool of handler instances, like warm
containers: one request at a time per instance, new instances on demand.

What it serves is what `deploy.yml` deployed to the stand-in
(`tlops.local.deployment`), read again every few seconds; until the first
deploy, every request gets 503 saying to run it. A `Gateway` built by hand
(tests) serves the route table of openapi.yaml (`tlops.edge.routes`).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from tlops.contract import MAX_BODY_BYTES, ErrorCode, names
from tlops.contract.responses import error_body
from tlops.edge.auth import InvalidToken, JwksCache, KeysUnavailable, TokenVerifier, bearer_token
from tlops.edge.routes import ROUTES, Route
from tlops.local.throttling import TOO_MANY_REQUESTS, Throttling

if TYPE_CHECKING:
    from tlops.local.deployment import DeployedGateway

Handler = Callable[..., dict[str, Any]]


class FunctionPool:
    """Warm instances of one Lambda function; each serves one event at a time."""

    def __init__(self, factory: Callable[[], Handler]):
        self._factory = factory
        self._idle: queue.SimpleQueue[Handler] = queue.SimpleQueue()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            handler = self._idle.get_nowait()
        except queue.Empty:
            handler = self._factory()
        try:
            return handler(event)
        finally:
            self._idle.put(handler)


# The authorizer's JWKS is the stand-in's, on loopback. The router's 2 s budget is for a
# deployed network; on a laptop that also runs the model, a loopback answer can take longer,
# and a miss would refuse every request for the cache's failure_ttl.
AUTHORIZER_JWKS_TIMEOUT_S = 5.0


def authorizer_keys(jwks_url: str) -> JwksCache:
    """The JWT authorizer's signing keys, fetched as soon as it is configured (as API Gateway
    fetches them when an authorizer is created or updated), so no request waits on the JWKS
    endpoint; fetched again on an unknown `kid` or once the cache's TTL runs out."""
    keys = JwksCache(jwks_url, timeout=AUTHORIZER_JWKS_TIMEOUT_S)
    keys.prefetch()
    return keys


CORS_METHODS = "GET,POST,OPTIONS"
CORS_HEADERS = "authorization,content-type,idempotency-key"
CORS_EXPOSE = "x-request-id,retry-after,x-gpu-coldboot,idempotent-replayed"


def handler_factory(function: str, env: dict[str, str] | None = None) -> Callable[[], Handler]:
    """Makes handler instances of one of the stack's functions, configured from `env` the way
    Lambda configures them from the function's environment (None: this process's). Each
    takes an event and, like a Lambda handler, an optional context."""
    if function == "router":
        from tlops.edge.router import Router, RouterConfig

        return lambda: Router(RouterConfig.from_env(env)).handle
    if function == "queue_health":
        from tlops.edge.queue_health import QueueHealth

        return lambda: QueueHealth.from_env(env).handle
    if function == "control":
        from tlops.control.actions import Control, ControlConfig

        return lambda: Control(ControlConfig.from_env(env)).handle
    raise KeyError(f"no handler for a function tagged Function={function}")


def write_access_line(stream: Any, record: dict[str, Any]) -> None:
    """One JSON line per request, as the HTTP API's access log writes it."""
    stream.write(json.dumps(record, separators=(",", ":")) + "\n")
    stream.flush()


class Gateway:
    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        functions: dict[str, FunctionPool],
        allowed_origins: list[str],
        routes: tuple[Route, ...] = ROUTES,
        throttling: Throttling | None = None,
        access_log=None,
    ):
        self.verifier = verifier
        self.functions = functions
        self.allowed_origins = set(allowed_origins)
        self.routes = routes
        self.throttling = throttling or Throttling()
        self.access_log = access_log or sys.stdout

    # --- the pieces the request handler calls -------------------------------
    def find_route(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
        """The matching route and its path parameters; or the methods the path allows."""
        allowed = []
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            if route.method == method:
                return route, params, []
            allowed.append(route.method)
        return None, {}, allowed

    def authorize(self, headers: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
        token = bearer_token(headers)
        if token is None:
            return 401, None
        try:
            return 200, self.verifier.verify(token)
        except InvalidToken:
            return 403, None
        except KeysUnavailable:
            return 503, None

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        if origin is None or origin not in self.allowed_origins:
            return {}
        return {
            "access-control-allow-origin": origin,
            "access-control-expose-headers": CORS_EXPOSE,
            "vary": "origin",
        }

    def log_access(self, record: dict[str, Any]) -> None:
        write_access_line(self.access_log, record)

    def snapshot(self) -> Gateway | None:
        """The configuration one request is served with (a fixed gateway is its own)."""
        return self


def query_parameters(raw_query: str) -> dict[str, str]:
    """`queryStringParameters` as payload format 2.0 gives it: a name given twice has its
    values joined with commas ("Payload format differences", in "Create AWS Lambda proxy
    integrations for HTTP APIs", API Gateway Developer Guide); a name without a value
    (`?cursor=`) is there, empty, for the function to refuse."""
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    return parameters


def build_event(
    *,
    route: Route,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, str],
    body: bytes,
    source_ip: str,
    request_id: str,
    path_params: dict[str, str],
    claims: dict[str, Any] | None,
) -> dict[str, Any]:
    """A payload-format-2.0 event as the HTTP API would send it to a Lambda integration."""
    now = datetime.now(UTC)
    try:
        text, is_b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode(), True
    request_context: dict[str, Any] = {
        "accountId": "000000000000",
        "apiId": "local",
        "domainName": headers.get("host", "localhost"),
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if claims is not None:
        request_context["authorizer"] = {
            "jwt": {"claims": {k: str(v) for k, v in claims.items()}, "scopes": None}
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": request_context,
        "isBase64Encoded": is_b64,
    }
    if raw_query:
        event["queryStringParameters"] = query_parameters(raw_query)
    if path_params:
        event["pathParameters"] = path_params
    if body:
        event["body"] = text
    return event


def not_deployed(source: Any) -> str:
    return (
        "nothing is deployed behind the local gateway "
        f"({getattr(source, 'problem', 'no deployment')}): "
        "run ansible-playbook playbooks/deploy.yml"
    )


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tlops-local-gateway"
    gateway: Gateway | DeployedGateway  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the JSON access log replaces http.server's own lines."""

    # A client that stops sending mid-request must not hold a thread forever.
    timeout = 30

    def __getattr__(self, name: str) -> Any:
        # http.server dispatches on do_<METHOD>; every method, known or not (TRACE,
        # FOO), takes the one path below, so each gets a JSON answer and a log line.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        source = self.gateway
        gateway = source.snapshot()
        headers = {k.lower(): v for k, v in self.headers.items()}
        parts = urlsplit(self.path)
        method = self.command
        origin = headers.get("origin")
        record = {
            "requestId": request_id,
            "ip": self.client_address[0],
            "route": "-",
            "status": 0,
            "jwtSub": "-",
            "latencyMs": 0.0,
            "userAgent": headers.get("user-agent", "-"),
        }
        # The body is always consumed first, whatever the answer: left in the socket it
        # would be parsed as the next request on a keep-alive connection.
        # None: over the limit (the connection is then closed).
        body = self._read_body(headers)
        try:
            if gateway is None:
                status, out_headers, body = 503, {}, {"message": not_deployed(source)}
            else:
                status, out_headers, body = self._dispatch(
                    gateway, method, parts, headers, body, origin, request_id, record
                )
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            status, out_headers, body = 500, {}, {"message": "Internal Server Error"}
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        out_headers.setdefault("content-type", "application/json")
        out_headers["apigw-requestid"] = request_id
        if gateway is not None:
            out_headers.update(gateway.cors_headers(origin))
        self.send_response(status)
        for name, value in out_headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)
        record["status"] = status
        record["latencyMs"] = round((time.perf_counter() - started) * 1000, 3)
        source.log_access(record)

    def _read_body(self, headers: dict[str, str]) -> bytes | None:
        """The body, or None when it exceeds the limit (the connection is then closed)."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            self.close_connection = True
            return None  # HTTP API needs a length too; refuse rather than buffer unbounded input
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self, gateway, method, parts, headers, body, origin, request_id, record):
        path = parts.path or "/"
        if method == "OPTIONS" and "access-control-request-method" in headers:
            if origin not in gateway.allowed_origins:
                return 403, {}, error_body(ErrorCode.FORBIDDEN, message="origin not allowed")
            return (
                204,
                {
                    "access-control-allow-methods": CORS_METHODS,
                    "access-control-allow-headers": CORS_HEADERS,
                    "access-control-max-age": "600",
                },
                b"",
            )
        route, params, allowed = gateway.find_route(method, path)
        if route is None:
            if allowed:
                return (
                    405,
                    {"allow": ", ".join(sorted(set(allowed)))},
                    error_body(ErrorCode.METHOD_NOT_ALLOWED, allow=sorted(set(allowed))),
                )
            return 404, {}, {"message": "Not Found"}
        record["route"] = route.key
        if not gateway.throttling.allow(route.key):
            return 429, {}, TOO_MANY_REQUESTS
        if body is None:
            return 413, {}, error_body(ErrorCode.PAYLOAD_TOO_LARGE, limit=MAX_BODY_BYTES)
        claims = None
        if route.authorized:
            status, claims = gateway.authorize(headers)
            if status == 401:
                return 401, {}, {"message": "Unauthorized"}
            if status == 403:
                return 403, {}, error_body(ErrorCode.INVALID_TOKEN)
            if status == 503:
                return 503, {}, error_body(ErrorCode.AUTH_UNAVAILABLE)
            record["jwtSub"] = claims.get("sub", "-")
        event = build_event(
            route=route,
            method=method,
            raw_path=path,
            raw_query=parts.query,
            headers=headers,
            body=body,
            source_ip=self.client_address[0],
            request_id=request_id,
            path_params=params,
            claims=claims,
        )
        result = gateway.functions[route.function].invoke(event)
        out_body = result.get("body") or ""
        payload = base64.b64decode(out_body) if result.get("isBase64Encoded") else out_body.encode()
        return int(result.get("statusCode", 200)), dict(result.get("headers") or {}), payload


def make_server(gateway: Gateway | DeployedGateway, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("GatewayRequestHandler", (_RequestHandler,), {"gateway": gateway})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local stand-in for the HTTP API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--project", default=os.environ.get("TL_PROJECT", names.PROJECT))
    parser.add_argument(
        "--jwks-base-url",
        default=os.environ.get("TL_AWS_ENDPOINT_URL", ""),
        help="where the stand-in serves each pool's JWKS (default: TL_AWS_ENDPOINT_URL)",
    )
    args = parser.parse_args(argv)
    from tlops.local.deployment import DeployedGateway

    deployed = DeployedGateway(args.project, args.jwks_base_url).start()
    server = make_server(deployed, args.host, args.port)
    print(f"local gateway listening on http://{args.host}:{args.port}", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        deployed.stop()
        server.server_close()


if __name__ == "__main__":
    main()

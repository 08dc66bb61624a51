"""The real local gateway served in-process on a loopback port, and a client that never raises.

Test modules import the fixtures they use from here. The gateway is built exactly as
the deployed gateway builds it (`tlops.local.deployment.gateway_for`), but with a
fixed configuration, from the test keys' JWKS and with the access log captured,
so a test can read what the operator would read.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

from tests.doubles.ec2 import tagged_instance
from tests.doubles.tokens import AUDIENCE, ISSUER
from tests.support.control_fixtures import only_node, relay
from tlops import contract
from tlops.edge.auth import TokenVerifier
from tlops.local.gateway import (
    FunctionPool,
    Gateway,
    authorizer_keys,
    handler_factory,
    make_server,
)
from tlops.local.throttling import Throttling

__all__ = [  # the fixtures; test modules take them with `from .gateway_fixtures import *`
    "gateway",
    "gpu_node",
    "node_alive",
    "relay",
    "start_gateway",
    "token",
]

CORS_PORTS = (3000, 5173)
ACCESS_LOG_KEYS = {"requestId", "ip", "route", "status", "jwtSub", "latencyMs", "userAgent"}


class Reply(NamedTuple):
    status: int
    headers: dict[str, str]  # names lower-cased
    body: Any  # decoded JSON when it parses, else the raw bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _reply(response: http.client.HTTPResponse) -> Reply:
    raw = response.read()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return Reply(response.status, headers, _decode(raw))


def encode_body(body: Any) -> bytes | None:
    """bytes and str go out as they are; anything else as JSON; None means no body."""
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    return json.dumps(body).encode()


class LiveGateway:
    """A gateway serving on 127.0.0.1 in a daemon thread, with its access log in memory."""

    def __init__(self, gateway: Gateway, access_log: io.StringIO):
        self.gateway = gateway
        self.access_log = access_log
        self.server = make_server(gateway, "127.0.0.1", 0)  # the kernel picks a free port
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> LiveGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    # --- client -----------------------------------------------------------
    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One request on a fresh connection; 4xx and 5xx come back as replies, not errors."""
        all_headers = {}
        if body is not None:
            all_headers["content-type"] = "application/json"
        if token is not None:
            all_headers["authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        connection = self.connection()
        try:
            connection.request(method, path, body=encode_body(body), headers=all_headers)
            return _reply(connection.getresponse())
        finally:
            connection.close()

    def infer(self, token: str | None, payload: Any = None, **kwargs: Any) -> Reply:
        return self.request(
            "POST", "/infer", {"prompt": "hello"} if payload is None else payload, token=token,
            **kwargs,
        )  # fmt: skip

    def raw(self, data: bytes, *, timeout: float = 5.0) -> bytes:
        """Send bytes as they are (lying headers, chunked bodies) and read until the server
        closes the connection or stops sending for `timeout` seconds."""
        return self._exchange(data, timeout)[0]

    def raw_until_closed(self, data: bytes, *, timeout: float = 30.0) -> bytes:
        """`raw`, for an answer after which the server must close the connection itself;
        fails when it is still open after `timeout` seconds of silence."""
        answer, closed = self._exchange(data, timeout)
        assert closed, f"the server kept the connection open after answering {answer[:80]!r}"
        return answer

    def _exchange(self, data: bytes, timeout: float) -> tuple[bytes, bool]:
        """What the server sent, and whether it closed the connection (not just fell silent)."""
        chunks, closed = [], False
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            try:
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                closed = True
            except ConnectionResetError:
                closed = True
            except TimeoutError:
                pass
        return b"".join(chunks), closed

    # --- access log -------------------------------------------------------
    def access_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.access_log.getvalue().splitlines()]

    def wait_for_records(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The log line is written after the response is sent: wait for it (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.access_records()
            if len(records) >= count:
                return records
            time.sleep(0.01)
        return self.access_records()


def default_functions() -> dict[str, FunctionPool]:
    """The stack's handlers, configured from this process's environment (router_env)."""
    return {name: FunctionPool(handler_factory(name)) for name in ("router", "queue_health")}


def build_gateway(
    jwks_url: str, access_log: io.StringIO | None = None, throttling: Throttling | None = None
) -> Gateway:
    """A gateway configured as a deployment would configure it, from the test keys."""
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=authorizer_keys(jwks_url), token_use=None
    )
    return Gateway(
        verifier=verifier,
        functions=default_functions(),  # they read the env that router_env sets
        allowed_origins=[
            *(f"http://localhost:{port}" for port in CORS_PORTS),
            "capacitor://localhost",
        ],
        throttling=throttling,
        access_log=access_log if access_log is not None else io.StringIO(),
    )


@pytest.fixture
def start_gateway(router_env) -> Iterator[Callable[..., LiveGateway]]:
    """Start (and always stop) gateways; `jwks_url` may point somewhere else than the keys,
    `throttling` stands for the stage's."""
    started: list[LiveGateway] = []

    def start(jwks_url: str | None = None, throttling: Throttling | None = None) -> LiveGateway:
        log = io.StringIO()
        built = build_gateway(jwks_url or router_env["TL_JWKS_URL"], log, throttling)
        live = LiveGateway(built, log)
        started.append(live.start())
        return live

    yield start
    for live in started:
        live.stop()


@pytest.fixture
def gateway(start_gateway) -> LiveGateway:
    """The gateway in front of a real Redis and a freshly reset moto (no GPU node yet)."""
    return start_gateway()


@pytest.fixture
def gpu_node(aws_stand_in) -> str:
    """The tagged, stopped GPU instance in moto, as deploy.yml creates it."""
    return only_node(tagged_instance())


@pytest.fixture
def node_alive(redis_client) -> None:
    """A watcher heartbeat: the router then queues without asking control (the warm path)."""
    redis_client.set(contract.HEARTBEAT_KEY, "1", ex=60)


@pytest.fixture
def token(keyset) -> Callable[..., str]:
    """`token(**claims)`: a signed ID token; every call gets a new `sub` unless given one."""
    return keyset.token


def b64url(data: Any) -> str:
    """base64url without padding; anything but bytes is JSON-encoded first."""
    if not isinstance(data, bytes):
        data = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def post_json(url: str, body: Any, token: str) -> tuple[int, dict[str, str], Any]:
    """POST a JSON body with a bearer token: (status, lower-cased headers, parsed body)."""
    from tlops.cli.client import Api, TokenSource

    base, _, path = url.partition("://")
    host, _, rest = path.partition("/")
    api = Api(f"{base}://{host}", TokenSource(token=token), max_rate_waits=0)
    reply = api.request("POST", "/" + rest, body)
    return reply.status, reply.headers, reply.body

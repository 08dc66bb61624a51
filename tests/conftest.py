"""Shared fixtures: real redis-server and moto server processes on free ports, test keys.

Servers are session-scoped (one start per test run) and wiped between tests.
Signing keys are generated here; nothing is read from disk.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import jwt
import pytest
import redis as redis_py
from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa

from tlops.local.stack import free_port

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TESTPOOL"
AUDIENCE = "test-client-id"


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready within {timeout} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- Redis -------------------------------------------------------------------
class RedisServer:
    """A real redis-server on a free loopback port, restartable (for outage tests)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run `make setup`")
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.workdir),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: redis_py.Redis.from_url(self.url).ping(), "redis-server")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None

    def client(self) -> redis_py.Redis:
        return redis_py.Redis.from_url(self.url, decode_responses=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The URL of a running, empty Redis."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # a previous test stopped it
    client = redis_server.client()
    client.flushall()
    yield redis_server.url
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_py.Redis]:
    client = redis_py.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


# --- the AWS stand-in --------------------------------------------------------
@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    binary = Path(sys.executable).with_name("moto_server")
    amis = Path(__file__).parents[1] / "src" / "tlops" / "local" / "ubuntu_amis.json"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **__import__("os").environ,
            "MOTO_AMIS_PATH": str(amis),
            "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
            "MOTO_ENABLE_AMI_VALIDATION": "true",
        },
    )
    url = f"http://127.0.0.1:{port}"
    _wait_for(lambda: urllib.request.urlopen(url + "/moto-api/", timeout=1).status == 200, "moto")
    yield url
    _stop(process)
    log.close()


@pytest.fixture
def aws_stand_in(moto_server: str, monkeypatch) -> str:
    """Point tlops.aws at a freshly reset stand-in; returns its URL."""
    urllib.request.urlopen(
        urllib.request.Request(moto_server + "/moto-api/reset", method="POST"), timeout=5
    ).close()
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("TL_AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    return moto_server


# --- signing keys and tokens -------------------------------------------------
def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class KeySet:
    """RSA keys made for the test run, their JWKS, and a token factory."""

    def __init__(self):
        self.keys = {f"kid-{i}": crypto_rsa.generate_private_key(65537, 2048) for i in range(2)}

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            numbers = key.public_key().public_numbers()
            keys.append(
                {
                    "kty": "RSA",
                    "kid": kid,
                    "alg": "RS256",
                    "use": "sig",
                    "n": _b64url_uint(numbers.n),
                    "e": _b64url_uint(numbers.e),
                }
            )
        return {"keys": keys}

    def token(self, *, kid: str = "kid-0", headers: dict | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "sub": str(uuid.uuid4()),
            "iss": ISSUER,
            "aud": AUDIENCE,
            "token_use": "id",
            "iat": now,
            "auth_time": now,
            "exp": now + 3600,
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(
            payload, self.keys[kid], algorithm="RS256", headers={"kid": kid, **(headers or {})}
        )


@pytest.fixture(scope="session")
def keyset() -> KeySet:
    return KeySet()


class _JwksHandler(BaseHTTPRequestHandler):
    document: ClassVar[dict[str, Any]] = {}
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = json.dumps(self.document).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def jwks_url(keyset: KeySet) -> Iterator[str]:
    """A JWKS endpoint on loopback serving the test keys."""
    handler = type("Jwks", (_JwksHandler,), {"document": keyset.jwks()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture
def router_env(redis_url: str, jwks_url: str, aws_stand_in: str, monkeypatch) -> dict[str, str]:
    """Environment for the router and queue_health Lambdas against the real servers."""
    env = {
        "TL_REDIS_URL": redis_url,
        "TL_JWT_ISSUER": ISSUER,
        "TL_JWT_AUDIENCE": AUDIENCE,
        "TL_JWKS_URL": jwks_url,
        "TL_REPLY_BUCKET": "replies-test",
        "TL_PROJECT": "tinyllama",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def http_event(
    method: str,
    path: str,
    *,
    body: str | bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """A payload-format-2.0 event like the HTTP API sends (see tests/events/ for samples)."""
    all_headers = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "requestId": uuid.uuid4().hex,
            "routeKey": f"{method} {path}",
            "http": {"method": method, "path": path, "sourceIp": source_ip},
        },
        "isBase64Encoded": False,
    }
    if isinstance(body, bytes):
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    elif body is not None:
        event["body"] = body
    return event

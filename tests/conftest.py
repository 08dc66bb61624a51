"""Shared fixtures: real redis-server and moto server processes on free ports, test keys.

Servers are session-scoped (one start per test run) and wiped between tests.
Signing keys are generated for the run; nothing is read from disk.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_py

from tests.doubles.tokens import AUDIENCE, ISSUER, JwksServer, KeySet
from tests.lambdas import LambdaContext
from tests.support.vllm_fixtures import vllm_server  # noqa: F401 - one server per run, for any module
from tlops.local.services import MotoProcess, RedisProcess

__all__ = ["AUDIENCE", "ISSUER", "http_event"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules marked `long_pole(minutes=N)` first, longest first; the rest as collected.

    `make test` gives each worker whole modules in this order (--no-loadscope-reorder), so
    the few that take minutes start at once, side by side, and the many short ones fill
    the gaps, instead of a long one starting last on a worker that is otherwise done. N is
    a rough figure from a measured run (docs/benchmarks.md): it orders, it asserts nothing.
    """

    def minutes(item: pytest.Item) -> float:
        mark = item.get_closest_marker("long_pole")
        return mark.kwargs["minutes"] if mark else 0

    items.sort(key=lambda item: -minutes(item))


# --- Redis -------------------------------------------------------------------
class RedisServer(RedisProcess):
    """The session's redis-server; tests may stop and start it (outage tests)."""

    def client(self) -> redis_py.Redis:
        return redis_py.Redis.from_url(self.url, decode_responses=True)


@pytest.fixture
def lambda_context() -> LambdaContext:
    """A context like the one Lambda passes a handler (30 s left)."""
    return LambdaContext()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The URL of a running, empty Redis."""
    if not redis_server.running:
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
    server = MotoProcess(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def aws_stand_in(moto_server: str, monkeypatch) -> str:
    """Point tlops.aws at a freshly reset stand-in; returns its URL."""
    MotoProcess.reset_url(moto_server)
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("TL_AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "standin-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "standin-secret")
    return moto_server


# --- signing keys and tokens -------------------------------------------------
@pytest.fixture(scope="session")
def keyset() -> KeySet:
    return KeySet()


@pytest.fixture(scope="session")
def jwks_server(keyset: KeySet) -> Iterator[JwksServer]:
    with JwksServer(keyset.jwks()) as server:
        yield server


@pytest.fixture(scope="session")
def jwks_url(jwks_server: JwksServer) -> str:
    """A JWKS endpoint on loopback serving the test keys."""
    return jwks_server.url


@pytest.fixture
def router_env(redis_url: str, jwks_url: str, aws_stand_in: str, monkeypatch) -> dict[str, str]:
    """Environment for the router and queue_health Lambdas against the real servers, with
    the control bucket (where the router asks control, and holds jobs asleep) made in the
    stand-in."""
    env = {
        "TL_REDIS_URL": redis_url,
        "TL_JWT_ISSUER": ISSUER,
        "TL_JWT_AUDIENCE": AUDIENCE,
        "TL_JWKS_URL": jwks_url,
        "TL_REPLY_BUCKET": "replies-test",
        "TL_CONTROL_BUCKET": "control-test",
        "TL_PROJECT": "tinyllama",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from tlops.common import aws

    aws.client("s3").create_bucket(
        Bucket=env["TL_CONTROL_BUCKET"],
        CreateBucketConfiguration={"LocationConstraint": aws.region()},
    )
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

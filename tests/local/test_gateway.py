"""The local gateway over real HTTP: authorizer, routing, limits, CORS, access log, robustness.

Each test starts the real gateway (`make_server`) on a loopback port in front of
the real router and queue_health handlers, a real redis-server and a reset
moto server, and talks to it with http.client or raw sockets, reading what a
client reads (status, headers, JSON body) and what the operator reads (the
JSON access log, the job in Redis).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import random
import re
import string
import time
import zipfile
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256

from tests.doubles.tokens import AUDIENCE, ISSUER, JwksServer, KeySet
from tests.support.gateway_fixtures import *  # noqa: F403 - the fixtures
from tests.support.gateway_fixtures import (
    ACCESS_LOG_KEYS,
    LiveGateway,
    Reply,
    b64url,
    build_gateway,
)
from tlops import contract
from tlops.common import aws
from tlops.contract.control import Action
from tlops.edge.routes import Route
from tlops.local.deployment import DeployedGateway
from tlops.local.gateway import FunctionPool, Gateway, authorizer_keys, query_parameters
from tlops.local.services import free_port
from tlops.local.throttling import Limit, Throttling

pytestmark = pytest.mark.integration


def instance_state(instance_id: str) -> str:
    described = aws.client("ec2").describe_instances(InstanceIds=[instance_id])
    return described["Reservations"][0]["Instances"][0]["State"]["Name"]


def assert_field_error(reply: Reply, field: str) -> None:
    assert reply.status == 400, reply
    assert reply.body["error"] == "invalid_request"
    assert reply.body["field"] == field
    assert isinstance(reply.body["message"], str) and reply.body["message"]


def status_line(raw: bytes) -> int:
    """The status code of the first response in a raw HTTP answer."""
    return int(raw.split(b"\r\n", 1)[0].split()[1])


def answered_status(raw: bytes) -> int:
    """Like status_line; http.server answers a request line it cannot parse HTTP/0.9-style,
    with its HTML error page and no status line."""
    if raw.startswith(b"HTTP/"):
        return status_line(raw)
    match = re.search(rb"Error code: (\d{3})", raw)
    assert match, raw[:200]
    return int(match.group(1))


# --- authorizer: 401 without a token, 403 for any bad one ------------------------------
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "token-without-scheme"],
    ids=["absent", "empty", "bearer-only", "bearer-blank", "basic", "no-scheme"],
)
def test_no_bearer_token_is_401(gateway, authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    reply = gateway.infer(None, headers=headers)
    assert reply.status == 401
    assert reply.body == {"message": "Unauthorized"}


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "user-forger",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "token_use": "id",
        "iat": now,
        "exp": now + 3600,
    }
    return {**claims, **overrides}


def _tampered_signature(keyset: KeySet) -> str:
    header, payload, signature = keyset.token().split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{header}.{payload}.{b64url(bytes(raw))}"


def _tampered_payload(keyset: KeySet) -> str:
    header, _, signature = keyset.token(sub="alice").split(".")
    return f"{header}.{b64url(_claims(sub='mallory'))}.{signature}"


def _alg_none(keyset: KeySet) -> str:
    return f"{b64url({'alg': 'none', 'typ': 'JWT', 'kid': 'kid-0'})}.{b64url(_claims())}."


def _hs256_with_public_key(keyset: KeySet) -> str:
    """The classic key-confusion forgery: HMAC keyed with the RSA public key's PEM."""
    pem = (
        keyset.keys["kid-0"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = f"{b64url({'alg': 'HS256', 'typ': 'JWT', 'kid': 'kid-0'})}.{b64url(_claims())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _rs256(keyset: KeySet, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A token correctly signed with the test key, whatever its header says."""
    signing_input = f"{b64url({'alg': 'RS256', **header})}.{b64url(claims)}"
    signature = keyset.keys["kid-0"].sign(signing_input.encode(), PKCS1v15(), SHA256())
    return f"{signing_input}.{b64url(signature)}"


def _other_key_same_kid(keyset: KeySet) -> str:
    return KeySet(count=1).token(kid="kid-0")  # a kid the JWKS knows, another key's signature


FORGED = {
    "malformed": lambda ks: "not-a-jwt",
    "three-garbage-parts": lambda ks: "abc.def.ghi",
    "empty-parts": lambda ks: "..",
    "tampered-signature": _tampered_signature,
    "tampered-payload": _tampered_payload,
    "signed-by-another-key": _other_key_same_kid,
    "alg-none": _alg_none,
    "hs256-with-public-key": _hs256_with_public_key,
    "expired": lambda ks: ks.token(exp=int(time.time()) - 60),
    "not-yet-valid": lambda ks: ks.token(nbf=int(time.time()) + 600),
    "issued-in-the-future": lambda ks: ks.token(iat=int(time.time()) + 600),
    "no-exp": lambda ks: ks.token(exp=None),
    "wrong-issuer": lambda ks: ks.token(iss="https://cognito-idp.eu-west-1.amazonaws.com/other"),
    "wrong-audience": lambda ks: ks.token(aud="another-client"),
    "access-token-for-another-client": lambda ks: ks.token(
        token_use="access", aud=None, client_id="another-client"
    ),
    "unknown-kid": lambda ks: ks.token(headers={"kid": "kid-unknown"}),
    "no-kid": lambda ks: _rs256(ks, {"typ": "JWT"}, _claims()),
    "kid-not-a-string": lambda ks: _rs256(ks, {"kid": 0}, _claims()),
    "payload-not-an-object": lambda ks: _rs256(ks, {"kid": "kid-0"}, ["not", "claims"]),
    "exp-not-a-number": lambda ks: _rs256(ks, {"kid": "kid-0"}, _claims(exp="tomorrow")),
    "no-sub": lambda ks: ks.token(sub=None),
}


@pytest.mark.parametrize("forge", FORGED.values(), ids=FORGED.keys())
def test_bad_token_is_403_invalid_token_at_the_gateway(gateway, keyset, node_alive, forge):
    reply = gateway.infer(forge(keyset))
    assert reply.status == 403, reply
    assert reply.body == {"error": "invalid_token"}
    # refused by the authorizer: no Lambda ran, so no X-Request-Id from the router
    assert reply.header("x-request-id") is None
    [record] = gateway.wait_for_records(1)
    assert (record["status"], record["jwtSub"]) == (403, "-")


def test_access_token_passes_the_authorizer_but_the_router_refuses_it(gateway, keyset, node_alive):
    """The HTTP API authorizer accepts access tokens (client_id = audience); the router
    wants ID tokens only, so the 403 comes from the router this time."""
    access = keyset.token(token_use="access", aud=None, client_id=AUDIENCE, sub="svc-1")
    reply = gateway.infer(access)
    assert reply.status == 403
    assert reply.body == {"error": "invalid_token"}
    assert reply.header("x-request-id") == reply.header("apigw-requestid")  # the router answered
    [record] = gateway.wait_for_records(1)
    assert (record["status"], record["jwtSub"], record["route"]) == (403, "svc-1", "POST /infer")


def test_stop_needs_a_token_too(gateway, keyset):
    assert gateway.request("POST", "/stop").status == 401
    reply = gateway.request("POST", "/stop", token=keyset.token(exp=int(time.time()) - 60))
    assert (reply.status, reply.body) == (403, {"error": "invalid_token"})


def test_jwks_unreachable_is_503_auth_unavailable(start_gateway, token):
    live = start_gateway(jwks_url=f"http://127.0.0.1:{free_port()}/.well-known/jwks.json")
    reply = live.infer(token())
    assert reply.status == 503
    assert reply.body == {"error": "auth_unavailable"}


def test_the_authorizer_holds_its_keys_before_the_first_request(
    start_gateway, keyset, token, node_alive
):
    """As on AWS, the keys are fetched when the authorizer is configured: the first request
    is verified without asking the JWKS endpoint, even when it has gone away since."""
    with JwksServer(keyset.jwks()) as jwks:
        live = start_gateway(jwks_url=jwks.url)
        assert jwks.hits == 1
    assert live.infer(token()).status == 202


# --- body validation: 400 names the field ----------------------------------------------
BAD_BODIES = {
    "not-json": (b"{prompt: hello}", "body"),
    "truncated-json": (b'{"prompt": "hel', "body"),
    "empty-body": (b"", "body"),
    "not-utf8": (b"\xff\xfe\xfa{", "body"),
    "array": ([{"prompt": "hello"}], "body"),
    "string": ("just a prompt", "body"),
    "number": (42, "body"),
    "null": (b"null", "body"),
    "prompt-missing": ({"idle": 5}, "prompt"),
    "prompt-empty": ({"prompt": ""}, "prompt"),
    "prompt-number": ({"prompt": 5}, "prompt"),
    "prompt-null": ({"prompt": None}, "prompt"),
    "prompt-list": ({"prompt": ["a"]}, "prompt"),
    "prompt-6145-ascii-bytes": ({"prompt": "a" * 6145}, "prompt"),
    # 3073 characters but 6146 bytes: the limit is in UTF-8 bytes
    "prompt-6146-utf8-bytes": ({"prompt": "é" * 3073}, "prompt"),
    "prompt-lone-surrogate": (b'{"prompt": "\\ud800"}', "prompt"),
    "idle-0": ({"prompt": "hi", "idle": 0}, "idle"),
    "idle-31": ({"prompt": "hi", "idle": 31}, "idle"),
    "idle-string": ({"prompt": "hi", "idle": "5"}, "idle"),
    "idle-float": ({"prompt": "hi", "idle": 3.5}, "idle"),
    "idle-bool": ({"prompt": "hi", "idle": True}, "idle"),
    "idle-null": ({"prompt": "hi", "idle": None}, "idle"),
    "idle-huge": (b'{"prompt": "hi", "idle": 1e400}', "idle"),
    "max-tokens-0": ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
    "max-tokens-4097": ({"prompt": "hi", "max_tokens": 4097}, "max_tokens"),
    "temperature-2.5": ({"prompt": "hi", "temperature": 2.5}, "temperature"),
    "temperature-negative": ({"prompt": "hi", "temperature": -0.1}, "temperature"),
    "temperature-string": ({"prompt": "hi", "temperature": "hot"}, "temperature"),
    "temperature-nan": (b'{"prompt": "hi", "temperature": NaN}', "temperature"),
    "unknown-field": ({"prompt": "hi", "model": "llama-70b"}, "model"),
}


@pytest.mark.parametrize(("body", "field"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_body_is_400_naming_the_field(gateway, token, node_alive, redis_client, body, field):
    assert_field_error(gateway.infer(token(), body), field)
    assert redis_client.xlen(contract.JOB_STREAM) == 0  # nothing was queued


@pytest.mark.parametrize(
    "payload",
    [
        {"prompt": "a" * 6144},
        {"prompt": "é" * 3072},  # exactly 6144 bytes
        {"prompt": "x", "idle": 1, "max_tokens": 1, "temperature": 0},
        {"prompt": "x", "idle": 30, "max_tokens": 4096, "temperature": 2},
    ],
    ids=["6144-ascii", "6144-utf8-bytes", "lower-bounds", "upper-bounds"],
)
def test_bounds_are_inclusive(gateway, token, node_alive, payload):
    reply = gateway.infer(token(), payload)
    assert reply.status == 202, reply
    assert reply.body["status"] == "queued"


# --- size limit: 413 ---------------------------------------------------------------------
def test_body_of_64_kib_plus_one_is_413(gateway, token, node_alive, redis_client):
    body = b'{"prompt":"' + b"a" * (64 * 1024 + 1 - 13) + b'"}'
    assert len(body) == 64 * 1024 + 1
    reply = gateway.infer(token(), body)
    assert reply.status == 413
    assert reply.body == {"error": "payload_too_large", "limit": 65536}
    assert redis_client.xlen(contract.JOB_STREAM) == 0


def test_body_of_exactly_64_kib_is_read_and_validated(gateway, token, node_alive):
    body = b'{"prompt":"' + b"a" * (64 * 1024 - 13) + b'"}'
    assert len(body) == 64 * 1024
    assert_field_error(gateway.infer(token(), body), "prompt")  # not 413: over 6 kB only


def test_413_comes_before_the_authorizer(gateway):
    reply = gateway.infer(None, b"x" * (64 * 1024 + 1))
    assert reply.status == 413


def _raw_post(path: str, headers: list[str], body: bytes = b"") -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(head).encode() + body


def test_chunked_body_is_413_and_the_connection_closed(gateway, token):
    chunk = b'{"prompt": "hello"}'
    data = _raw_post(
        "/infer",
        [f"Authorization: Bearer {token()}", "Transfer-Encoding: chunked"],
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk),
    )
    raw = gateway.raw_until_closed(data)
    assert status_line(raw) == 413
    assert b'"payload_too_large"' in raw


def test_content_length_claiming_more_than_64_kib_is_413_without_reading(gateway, token):
    """A client that announces 1 MB but sends ten bytes is refused at once, not waited for."""
    data = _raw_post(
        "/infer", [f"Authorization: Bearer {token()}", "Content-Length: 1000000"], b"0123456789"
    )
    raw = gateway.raw_until_closed(data)  # not waiting for the 999,990 bytes never sent
    assert status_line(raw) == 413


@pytest.mark.parametrize("length", ["-1", "ten", "1e3"])
def test_unparseable_content_length_is_refused_not_crashed(gateway, token, length):
    data = _raw_post("/infer", [f"Authorization: Bearer {token()}", f"Content-Length: {length}"])
    raw = gateway.raw(data, timeout=5)
    assert 400 <= status_line(raw) < 500


# --- routing: 404 and 405 ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/nope"), ("POST", "/infer/extra"), ("GET", "/jobs/1/2")],
)
def test_unknown_route_is_404(gateway, method, path):
    reply = gateway.request(method, path)
    assert reply.status == 404
    assert reply.body == {"message": "Not Found"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/infer", "POST"),
        ("POST", "/ping", "GET"),
        ("PUT", "/health", "GET"),
        ("DELETE", "/stop", "POST"),
        ("PATCH", "/queue-health", "GET"),
        ("HEAD", "/ping", "GET"),
        ("OPTIONS", "/infer", "POST"),  # not a preflight: no Access-Control-Request-Method
    ],
)
def test_wrong_method_is_405_with_allow(gateway, method, path, allow):
    reply = gateway.request(method, path)
    assert reply.status == 405
    assert reply.header("allow") == allow
    if method != "HEAD":
        assert reply.body == {"error": "method_not_allowed", "allow": [allow]}


@pytest.mark.parametrize("method", ["TRACE", "FOO"])
def test_unsupported_method_is_a_json_4xx_and_logged(gateway, method):
    reply = gateway.request(method, "/ping")
    assert reply.status < 500
    assert isinstance(reply.body, dict)
    assert len(gateway.wait_for_records(1, timeout=1)) == 1


# --- the happy path ---------------------------------------------------------------------
def test_infer_is_202_queued_with_the_request_id_of_the_access_log(
    gateway, token, node_alive, redis_client
):
    reply = gateway.infer(token(sub="alice"), {"prompt": "hello there", "idle": 7})
    assert reply.status == 202
    assert reply.body["status"] == "queued"
    assert contract.is_job_id(reply.body["id"])
    assert reply.header("x-gpu-coldboot") is None
    [record] = gateway.wait_for_records(1)
    assert reply.header("x-request-id") == record["requestId"] == reply.header("apigw-requestid")
    assert (record["route"], record["status"], record["jwtSub"]) == ("POST /infer", 202, "alice")
    job = redis_client.hgetall(contract.job_key(reply.body["id"]))
    assert (job["status"], job["sub"], job["prompt"], job["idle"]) == (
        "queued",
        "alice",
        "hello there",
        "7",
    )
    assert [f["id"] for _, f in redis_client.xrange(contract.JOB_STREAM)] == [reply.body["id"]]


def test_infer_cold_boots_a_stopped_node(gateway, token, gpu_node, relay, redis_client):
    reply = gateway.infer(token())
    assert reply.status == 202
    assert reply.body == {"status": "starting", "eta": 90, "id": reply.body["id"]}
    assert reply.header("x-gpu-coldboot") == "true"
    assert redis_client.exists(contract.job_key(reply.body["id"]))
    # the router asked control for one wake; delivered, control starts the node
    assert len(relay.requests(Action.WAKE)) == 1
    assert instance_state(gpu_node) == "stopped"
    [woken] = relay.deliver()
    assert (woken["action"], woken["started"]) == ("wake", True)
    assert instance_state(gpu_node) in ("pending", "running")


def test_infer_without_a_node_queues_and_control_refuses_the_wake(gateway, token, relay,
                                                                   redis_client):  # fmt: skip
    """The router cannot see EC2: without a node it still queues and asks; control, which can,
    starts nothing. (No 503 for a missing node on /infer any more.)"""
    reply = gateway.infer(token())
    assert reply.status == 202
    assert reply.body["status"] == "starting"
    assert redis_client.hget(contract.job_key(reply.body["id"]), "status") == "queued"
    [refused] = relay.deliver()
    assert (refused["outcome"], refused["reason"]) == ("failed", "no GPU node is deployed")


def test_infer_is_503_instance_unavailable_when_the_wake_cannot_be_asked(
    start_gateway, token, monkeypatch, gpu_node, redis_client
):
    monkeypatch.setenv("TL_CONTROL_BUCKET", "no-such-control-bucket")
    reply = start_gateway().infer(token())
    assert reply.status == 503
    assert reply.body["error"] == "instance_unavailable"
    assert reply.body["message"] == "the GPU node could not be woken"
    job = redis_client.hgetall(contract.job_key(reply.body["id"]))
    assert job["status"] == "failed"


def test_redis_down_is_503_queue_unavailable(gateway, token, redis_server):
    redis_server.stop()  # conftest's redis_url starts it again for the next test
    reply = gateway.infer(token())
    assert (reply.status, reply.body) == (503, {"error": "queue_unavailable"})
    health = gateway.request("GET", "/queue-health")
    assert health.status == 503
    assert health.body["redis"] == "fail"


ADMINS = {"cognito:groups": ["admins"]}


def test_stop_answers_the_node_state(gateway, token, gpu_node, relay):
    aws.client("ec2").start_instances(InstanceIds=[gpu_node])
    relay.observe()  # EC2's rule told control the node runs
    admin = token(**ADMINS)
    reply = gateway.request("POST", "/stop", token=admin)
    assert reply.status == 202
    assert reply.body == {"status": "stopping", "instance": gpu_node}
    assert len(relay.requests(Action.STOP)) == 1
    relay.deliver()
    assert instance_state(gpu_node) == "stopped"
    again = gateway.request("POST", "/stop", token=admin)
    assert again.status == 202  # stopping a stopped node is not an error
    [done] = relay.deliver()
    assert (done["outcome"], done["instance"]) == ("stopped", gpu_node)


def test_stop_by_someone_outside_admins_is_403_forbidden(gateway, token, gpu_node):
    """The authorizer lets the token through; the router refuses it, with the code that
    tells the client not to renew it."""
    aws.client("ec2").start_instances(InstanceIds=[gpu_node])
    reply = gateway.request("POST", "/stop", token=token())
    assert reply.status == 403
    assert reply.body == {"error": "forbidden", "message": "this route is for the admins group"}
    assert reply.header("x-request-id") == reply.header("apigw-requestid")  # the router's


def test_stop_without_a_node_is_503(gateway, token, aws_stand_in):
    reply = gateway.request("POST", "/stop", token=token(**ADMINS))
    assert reply.status == 503
    assert reply.body["error"] == "instance_unavailable"


@pytest.mark.parametrize("path", ["/ping", "/health"])
def test_ping_and_health_need_no_token(gateway, path):
    reply = gateway.request("GET", path)
    assert (reply.status, reply.body) == (200, {"status": "ok"})


def test_queue_health_from_loopback_and_from_elsewhere(gateway, monkeypatch):
    reply = gateway.request("GET", "/queue-health")
    assert reply.status == 200
    assert reply.body["redis"] == "ok"
    assert 0 <= reply.body["latencyMs"] < 200


def test_queue_health_refuses_sources_outside_the_cidrs(start_gateway, monkeypatch):
    monkeypatch.setenv("TL_QUEUE_HEALTH_CIDRS", "10.20.0.0/22")  # read when the handler starts
    reply = start_gateway().request("GET", "/queue-health")
    assert reply.status == 403
    assert reply.body["error"] == "forbidden"


# --- rate limit: 429 --------------------------------------------------------------------
def test_the_request_over_the_users_limit_is_429_with_retry_after(
    start_gateway, token, node_alive, redis_client, monkeypatch
):
    """Three a minute, so the refusal does not hang on how fast a busy machine sends the
    requests (the 5-a-second burst is test_admission's, against Redis's clock)."""
    monkeypatch.setenv("TL_RATE_PER_MINUTE", "3")  # read when the handler starts
    gateway, caller = start_gateway(), token(sub="busy-user")
    replies = [gateway.infer(caller) for _ in range(5)]
    assert [r.status for r in replies] == [202] * 3 + [429] * 2
    limited = replies[-1]
    assert limited.body["error"] == "rate_limited"
    assert limited.header("retry-after") == str(limited.body["retry_after"])
    assert 1 <= int(limited.header("retry-after")) <= 60  # the oldest leaves the minute
    assert redis_client.xlen(contract.JOB_STREAM) == 3  # refused requests queue nothing
    # another user is not affected
    assert gateway.infer(token(sub="someone-else")).status == 202


# --- CORS -------------------------------------------------------------------------------
def preflight(gateway: LiveGateway, origin: str) -> Reply:
    return gateway.request(
        "OPTIONS",
        "/infer",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        },
    )


@pytest.mark.parametrize(
    "origin", ["http://localhost:3000", "http://localhost:5173", "capacitor://localhost"]
)
def test_preflight_from_an_allowed_origin_is_204(gateway, origin):
    reply = preflight(gateway, origin)
    assert reply.status == 204
    assert reply.header("access-control-allow-origin") == origin
    assert set(reply.header("access-control-allow-methods").split(",")) >= {"POST", "GET"}
    assert set(reply.header("access-control-allow-headers").split(",")) >= {
        "authorization",
        "content-type",
        "idempotency-key",
    }
    assert reply.body == b""


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://localhost:8080",  # a port that is not configured
        "https://localhost:3000",  # the scheme counts
        "http://localhost:3000.evil.example",
        "null",
    ],
)
def test_preflight_from_another_origin_is_403_without_allow_origin(gateway, origin):
    reply = preflight(gateway, origin)
    assert reply.status == 403
    assert reply.header("access-control-allow-origin") is None
    assert reply.body["error"] == "forbidden"


def test_cors_headers_on_normal_responses_only_for_allowed_origins(gateway, token, node_alive):
    allowed = gateway.request("GET", "/ping", headers={"origin": "http://localhost:3000"})
    assert allowed.header("access-control-allow-origin") == "http://localhost:3000"
    assert "x-request-id" in allowed.header("access-control-expose-headers")
    assert "retry-after" in allowed.header("access-control-expose-headers")
    assert "idempotent-replayed" in allowed.header("access-control-expose-headers")
    app = gateway.infer(token(), headers={"origin": "capacitor://localhost"})
    assert app.status == 202
    assert app.header("access-control-allow-origin") == "capacitor://localhost"
    foreign = gateway.request("GET", "/ping", headers={"origin": "http://evil.example"})
    assert foreign.status == 200  # served, but the browser will not hand it to the page
    assert foreign.header("access-control-allow-origin") is None
    assert gateway.request("GET", "/ping").header("access-control-allow-origin") is None


# --- access log -------------------------------------------------------------------------
def test_access_log_is_one_json_line_per_request(gateway, token, node_alive, keyset):
    ua = {"user-agent": "probe/1.0"}
    replies = [
        (gateway.request("GET", "/ping", headers=ua), "GET /ping", "-"),
        (gateway.infer(token(sub="carol"), headers=ua), "POST /infer", "carol"),
        (gateway.infer(None, headers=ua), "POST /infer", "-"),
        (gateway.infer("garbage", headers=ua), "POST /infer", "-"),
        (gateway.infer(token(sub="dave"), {"prompt": ""}, headers=ua), "POST /infer", "dave"),
        (gateway.request("GET", "/nope", headers=ua), "-", "-"),
        (gateway.request("GET", "/infer", headers=ua), "-", "-"),
        (gateway.infer(token(), b"x" * 70000, headers=ua), "POST /infer", "-"),
        (preflight(gateway, "http://localhost:3000"), "-", "-"),  # no User-Agent sent
        (gateway.request("GET", "/queue-health"), "GET /queue-health", "-"),  # nor here
    ]
    records = gateway.wait_for_records(len(replies))
    time.sleep(0.05)
    lines = gateway.access_log.getvalue().splitlines()
    assert len(lines) == len(replies)
    records = [json.loads(line) for line in lines]
    assert len({r["requestId"] for r in records}) == len(records)
    by_id = {r["requestId"]: r for r in records}
    for (reply, route, sub), ua_expected in zip(
        replies, ["probe/1.0"] * 8 + ["-", "-"], strict=True
    ):
        record = by_id[reply.header("apigw-requestid")]
        assert set(record) == ACCESS_LOG_KEYS, record
        assert record["status"] == reply.status
        assert record["route"] == route
        assert record["jwtSub"] == sub
        assert record["ip"] == "127.0.0.1"
        assert record["userAgent"] == ua_expected
        assert isinstance(record["latencyMs"], float) and record["latencyMs"] >= 0


# --- robustness -------------------------------------------------------------------------
def test_odd_requests_never_get_a_5xx(gateway, token, node_alive):
    rng = random.Random(20260522)
    valid = token()
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    paths = [
        "/infer",
        "/ping",
        "/../infer",
        "/infer/..",
        "/%2e%2e/ping",
        "/%00",
        "/ping%00",
        "/infer?x=%00&y=&&=",
        "/queue-health/../ping",
        "/%C3%A9",
        "//",
        "/" + "a" * 8000,
        "/" + "/".join(["infer"] * 500),
        "*",
    ]
    authorizations = [
        None,
        "Bearer",
        "Bearer " + "".join(rng.choices(string.printable[:94], k=300)),
        "Bearer a.b.c",
        "Bearer " + valid,
        "Bearer " + valid + "x",
        "bearer " + valid,
        "Bearer " + "x" * 20000,
    ]
    statuses = []
    for i in range(60):
        headers = {"user-agent": "".join(rng.choices(string.ascii_letters, k=rng.randint(0, 50)))}
        if auth := rng.choice(authorizations):
            headers["authorization"] = auth
        if rng.random() < 0.3:
            headers["origin"] = rng.choice(["http://localhost:3000", "http://evil.example"])
        if rng.random() < 0.2:
            headers["access-control-request-method"] = "POST"
        if rng.random() < 0.2:
            headers["content-type"] = rng.choice(["text/plain", "application/json; charset=latin1"])
        body = None
        if rng.random() < 0.7:
            body = (
                rng.randbytes(rng.randint(0, 3000))
                if i % 2
                else json.dumps(
                    {
                        "prompt": rng.choice(["", "x" * 7000, "\u2603", 1, None]),
                        "idle": rng.choice([0, 5, "5"]),
                    }
                ).encode()
            )
        reply = gateway.request(rng.choice(methods), rng.choice(paths), body, headers=headers)
        statuses.append(reply.status)
        assert reply.status < 500, (i, reply)
    records = gateway.access_records()
    assert not [r for r in records if "error" in r]
    assert len(set(statuses)) >= 5  # the loop really explored different answers


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\x01\x02\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
        (b"GET /ping HTTP/1.1\r\nConnection: close\r\nbroken header\r\n\r\n", 200),  # tolerated
        (
            b"POST /infer HTTP/1.1\r\nConnection: close\r\nAuthorization: Bearer \xff\xfe\r\n"
            b"Content-Length: 2\r\n\r\n{}",
            403,
        ),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /ping HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
        (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 70000 + b"\r\n\r\n", 431),
    ],
    ids=[
        "binary",
        "no-path",
        "bad-header",
        "latin1-auth",
        "huge-uri",
        "many-headers",
        "huge-header",
    ],
)
def test_malformed_http_is_answered_below_500(gateway, data, expected):
    raw = gateway.raw(data, timeout=5)
    assert answered_status(raw) == expected


def test_deeply_nested_json_is_400_not_500(gateway, token, node_alive):
    assert_field_error(gateway.infer(token(), b"[" * 60000), "body")


def test_a_crashing_handler_is_a_json_500_logged_once(router_env, jwks_url):
    def crash(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    log = io.StringIO()
    base = build_gateway(jwks_url, log)
    gw = Gateway(
        verifier=base.verifier,
        functions={
            "router": FunctionPool(lambda: crash),
            "queue_health": FunctionPool(lambda: crash),
        },
        allowed_origins=list(base.allowed_origins),
        access_log=log,
    )
    live = LiveGateway(gw, log).start()
    try:
        reply = live.request("GET", "/ping")
        assert (reply.status, reply.body) == (500, {"message": "Internal Server Error"})
        records = live.wait_for_records(2, timeout=1)
        assert [r["status"] for r in records] == [500]
    finally:
        live.stop()


# --- connections ------------------------------------------------------------------------
def test_keep_alive_serves_several_requests_on_one_connection(gateway, token, node_alive):
    connection = gateway.connection()
    try:
        connection.request("GET", "/ping")
        first = connection.getresponse()
        assert (first.status, json.loads(first.read())) == (200, {"status": "ok"})
        sock = connection.sock
        connection.request(
            "POST",
            "/infer",
            body=json.dumps({"prompt": "again"}),
            headers={"authorization": f"Bearer {token()}", "content-type": "application/json"},
        )
        second = connection.getresponse()
        assert second.status == 202
        assert json.loads(second.read())["status"] == "queued"
        assert connection.sock is sock  # the same TCP connection
    finally:
        connection.close()


def test_a_body_on_a_refused_route_is_not_run_as_a_second_request(gateway):
    smuggled = b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n"
    data = _raw_post("/nope", [f"Content-Length: {len(smuggled)}"], smuggled)
    raw = gateway.raw(data, timeout=2)
    assert status_line(raw) == 404
    assert raw.count(b"HTTP/1.1 ") == 1, raw


def test_keep_alive_after_a_405_with_a_body(gateway):
    connection = gateway.connection(timeout=3)
    try:
        connection.request("POST", "/ping", body=b'{"a": 1}')
        first = connection.getresponse()
        first.read()
        assert first.status == 405
        connection.request("GET", "/ping")
        second = connection.getresponse()
        assert second.status == 200
    finally:
        connection.close()


# --- what the handlers receive -----------------------------------------------------------
def test_handlers_get_a_payload_v2_event(router_env, jwks_url, keyset):
    """The gateway hands the Lambda code the event the HTTP API would: route key, raw path
    and query, lower-cased headers, path parameters, authorizer claims, base64 for binary."""
    seen: list[dict[str, Any]] = []

    def echo(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event)
        return {
            "statusCode": 200,
            "headers": {"x-echo": "1"},
            "body": "e30=",
            "isBase64Encoded": True,
        }

    routes = (
        Route("GET", "/jobs/{id}", "getJob", "echo", authorized=True),
        Route("POST", "/upload", "upload", "echo", authorized=False),
    )
    log = io.StringIO()
    base = build_gateway(jwks_url, log)
    gw = Gateway(
        verifier=base.verifier,
        functions={"echo": FunctionPool(lambda: echo)},
        allowed_origins=list(base.allowed_origins),
        routes=routes,
        access_log=log,
    )
    live = LiveGateway(gw, log).start()
    try:
        token = keyset.token(sub="zoe", **{"cognito:groups": ["admins"]})
        reply = live.request(
            "GET", "/jobs/abc-123?verbose=1&x=%20y", token=token, headers={"X-Custom": "Yes"}
        )
        assert (reply.status, reply.body, reply.header("x-echo")) == (200, {}, "1")
        assert live.request("GET", "/jobs/", token=token).status == 404  # empty parameter
        assert live.request("POST", "/upload", b"\xff\x00\xfe").status == 200
    finally:
        live.stop()
    event, upload = seen
    assert (event["version"], event["routeKey"], event["rawPath"]) == (
        "2.0",
        "GET /jobs/{id}",
        "/jobs/abc-123",
    )
    assert event["rawQueryString"] == "verbose=1&x=%20y"
    assert event["queryStringParameters"] == {"verbose": "1", "x": " y"}
    assert event["pathParameters"] == {"id": "abc-123"}
    assert event["headers"]["x-custom"] == "Yes"
    context = event["requestContext"]
    assert context["http"]["method"] == "GET"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["routeKey"] == "GET /jobs/{id}"
    claims = context["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "zoe"
    assert all(isinstance(v, str) for v in claims.values())
    assert "body" not in event and event["isBase64Encoded"] is False
    assert upload["isBase64Encoded"] is True
    assert base64.b64decode(upload["body"]) == b"\xff\x00\xfe"
    assert "authorizer" not in upload["requestContext"]


def deploy_to_stand_in(
    router_env: dict[str, str], jwks_url: str, stage: dict[str, Any] | None = None
) -> dict[str, str]:
    """What the router role deploys, made with boto3: two functions with their environment
    and `Function` tags, and the HTTP API with a JWT authorizer, routes, CORS and, when
    given, the `$default` stage with these settings."""
    lam, apigw = aws.client("lambda"), aws.client("apigatewayv2")
    role = aws.client("iam").create_role(
        RoleName="fn", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(event, context):\n    return {}\n")
    aliases = {}
    for key, name in (("router", "tinyllama-router"), ("queue_health", "tinyllama-queue-health")):
        lam.create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.lambda_handler",
            Code={"ZipFile": code.getvalue()}, Tags={"Project": "tinyllama", "Function": key},
            Environment={"Variables": {**router_env, "TL_JWKS_URL": jwks_url}},
        )  # fmt: skip
        version = lam.publish_version(FunctionName=name)["Version"]
        aliases[key] = lam.create_alias(FunctionName=name, Name="prod", FunctionVersion=version)[
            "AliasArn"
        ]
    api = apigw.create_api(
        Name="tinyllama-api", ProtocolType="HTTP", Tags={"Project": "tinyllama"},
        CorsConfiguration={"AllowOrigins": ["http://localhost:4200", "capacitor://localhost"]},
    )["ApiId"]  # fmt: skip
    authorizer = apigw.create_authorizer(
        ApiId=api, AuthorizerType="JWT", Name="cognito",
        IdentitySource=["$request.header.Authorization"],
        JwtConfiguration={"Issuer": ISSUER, "Audience": [AUDIENCE]},
    )["AuthorizerId"]  # fmt: skip
    targets = {
        key: apigw.create_integration(
            ApiId=api, IntegrationType="AWS_PROXY", IntegrationUri=arn,
            PayloadFormatVersion="2.0",
        )["IntegrationId"]
        for key, arn in aliases.items()
    }  # fmt: skip
    for key, target, auth in (
        ("POST /infer", "router", True),
        ("GET /ping", "router", False),
        ("GET /queue-health", "queue_health", False),
    ):
        extra = {"AuthorizationType": "JWT", "AuthorizerId": authorizer} if auth else {}
        apigw.create_route(
            ApiId=api, RouteKey=key, Target=f"integrations/{targets[target]}", **extra
        )
    if stage is not None:
        apigw.create_stage(ApiId=api, StageName="$default", AutoDeploy=True, **stage)
    return {"api_id": api, "router_integration": targets["router"]}


def test_the_deployed_gateway_serves_what_the_stand_in_holds(router_env, jwks_url, keyset):
    """Before a deploy every answer is 503 saying what to run; after it, the deployed routes,
    authorizer and CORS origins are served, with each function's own environment; a route
    deployed later is picked up without a restart."""
    log = io.StringIO()
    # the JWKS base would be the stand-in; these test keys are served elsewhere
    deployed = DeployedGateway("tinyllama", "http://unused", access_log=log, refresh_s=0.2)
    live = LiveGateway(deployed, log).start()
    deployed.start()
    try:
        before = live.request("GET", "/ping")
        assert before.status == 503
        assert "run ansible-playbook playbooks/deploy.yml" in before.body["message"]
        made = deploy_to_stand_in(router_env, jwks_url)
        deployed.refresh()
        gateway = deployed.snapshot()
        assert gateway is not None
        assert {route.key for route in gateway.routes} == {
            "POST /infer", "GET /ping", "GET /queue-health",
        }  # fmt: skip
        assert gateway.allowed_origins == {"http://localhost:4200", "capacitor://localhost"}
        assert (gateway.verifier.issuer, gateway.verifier.audience) == (ISSUER, AUDIENCE)
        # the gateway's own JWKS URL follows the stand-in's layout; point it at the test keys
        gateway.verifier.jwks = authorizer_keys(jwks_url)
        assert live.request("GET", "/ping").status == 200
        assert live.request("GET", "/queue-health").status == 200
        assert live.infer(None).status == 401
        assert live.infer(keyset.token()).status in (202, 503)  # queued; no node to start
        assert live.request("GET", "/stop").status == 404  # not deployed, not served
        aws.client("apigatewayv2").create_route(
            ApiId=made["api_id"], RouteKey="POST /stop",
            Target=f"integrations/{made['router_integration']}",
        )  # fmt: skip
        deployed.refresh()
        assert deployed.snapshot() is not gateway
        assert "POST /stop" in {route.key for route in deployed.snapshot().routes}
    finally:
        deployed.stop()
        live.stop()


def test_the_deployed_gateway_keeps_serving_when_the_stand_in_is_unreachable(monkeypatch):
    deployed = DeployedGateway("tinyllama", "http://unused")
    sentinel = object()
    deployed._current = sentinel  # what it served last
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    deployed.refresh()
    assert deployed.snapshot() is sentinel
    assert deployed.problem.startswith("cannot read the deployment")


# --- the stage's throttling --------------------------------------------------------------
def test_a_throttled_route_is_429_as_api_gateway_answers_it(start_gateway):
    live = start_gateway(throttling=Throttling(routes={"GET /ping": Limit(burst=2, rate=0.5)}))
    replies = [live.request("GET", "/ping") for _ in range(3)]
    assert [r.status for r in replies] == [200, 200, 429]
    limited = replies[-1]
    assert limited.body == {"message": "Too Many Requests"}
    assert limited.header("x-request-id") is None  # no Lambda ran
    assert limited.header("retry-after") is None  # API Gateway sends none either
    assert limited.header("apigw-requestid")
    assert live.request("GET", "/health").status == 200  # another route, another bucket
    # each request is logged once it is answered, so two answered together log in any order
    records = live.wait_for_records(4)
    assert sorted((r["route"], r["status"]) for r in records) == [
        ("GET /health", 200), ("GET /ping", 200), ("GET /ping", 200), ("GET /ping", 429),
    ]  # fmt: skip


def test_throttling_comes_before_the_authorizer(start_gateway):
    live = start_gateway(throttling=Throttling(Limit(burst=1, rate=0.01)))
    assert live.infer(None).status == 401
    assert live.infer(None).status == 429


def test_the_deployed_gateway_applies_the_stages_throttling(router_env, jwks_url):
    """deploy.yml's stage settings, read from the stand-in: the default for every route,
    each route's own where it has one; a changed stage is picked up without a restart."""
    log = io.StringIO()
    deployed = DeployedGateway("tinyllama", "http://unused", access_log=log, refresh_s=60)
    live = LiveGateway(deployed, log).start()
    stage = {
        "DefaultRouteSettings": {"ThrottlingBurstLimit": 50, "ThrottlingRateLimit": 100.0},
        "RouteSettings": {"GET /ping": {"ThrottlingBurstLimit": 2, "ThrottlingRateLimit": 0.5}},
    }
    try:
        made = deploy_to_stand_in(router_env, jwks_url, stage)
        deployed.refresh()
        gateway = deployed.snapshot()
        assert gateway.throttling.limit("GET /ping") == Limit(2, 0.5)
        assert gateway.throttling.limit("GET /queue-health") == Limit(50, 100.0)
        assert [live.request("GET", "/ping").status for _ in range(3)] == [200, 200, 429]
        assert live.request("GET", "/queue-health").status == 200

        apigw = aws.client("apigatewayv2")
        apigw.delete_stage(ApiId=made["api_id"], StageName="$default")  # moto cannot update
        apigw.create_stage(ApiId=made["api_id"], StageName="$default", AutoDeploy=True)
        deployed.refresh()
        assert deployed.snapshot() is not gateway
        assert deployed.snapshot().throttling.limit("GET /ping") == Limit()
        assert live.request("GET", "/ping").status == 200
    finally:
        live.stop()


def test_a_deployment_without_a_stage_is_not_throttled(router_env, jwks_url):
    deploy_to_stand_in(router_env, jwks_url)
    deployed = DeployedGateway("tinyllama", "http://unused", access_log=io.StringIO())
    deployed.refresh()
    assert deployed.snapshot().throttling.limit("GET /ping") == Limit()


# --- query strings as payload format 2.0 passes them ---------------------------------
def test_a_repeated_or_empty_query_parameter_reaches_the_function_as_api_gateway_passes_it():
    """Payload format 2.0 joins a repeated name's values with commas (the Developer Guide's
    "Payload format differences"); an empty value is passed, not dropped."""
    assert query_parameters("limit=5&limit=6&cursor=&x") == {"limit": "5,6", "cursor": "", "x": ""}
    assert query_parameters("cursor=a%2Bb") == {"cursor": "a+b"}


def test_an_empty_cursor_or_a_repeated_limit_is_refused_naming_it(gateway, keyset):
    token = keyset.token(sub="query-user")
    for path, field in (("/jobs?cursor=", "cursor"), ("/jobs?limit=5&limit=6", "limit")):
        reply = gateway.request("GET", path, token=token)
        assert (reply.status, reply.body["field"]) == (400, field), (path, reply)

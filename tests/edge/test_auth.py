"""ID-token verification (tlops.edge.auth): signature, algorithm, claims, clock skew, the JWKS
cache against endpoints that fail or misbehave, the static keys from TL_JWKS, groups."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import rsa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa as crypto_rsa
from jwt.exceptions import InvalidKeyError

from tests.doubles.raw_http import RawHttpServer
from tests.doubles.tokens import AUDIENCE, ISSUER, KeySet
from tlops.edge import auth
from tlops.edge.auth import (
    LEEWAY_S,
    InvalidToken,
    JwksCache,
    KeysUnavailable,
    PureRS256,
    StaticKeys,
    TokenVerifier,
    bearer_token,
)
from tlops.local.services import free_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def segments(token: str) -> list[str]:
    return token.split(".")


def default_claims(**claims: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "user-1",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "token_use": "id",
        "iat": now,
        "exp": now + 3600,
        **claims,
    }


@pytest.fixture
def verifier(jwks_url: str) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(jwks_url))


@pytest.fixture(scope="module")
def stranger_key() -> crypto_rsa.RSAPrivateKey:
    """An RSA key that is not in the JWKS."""
    return crypto_rsa.generate_private_key(65537, 2048)


def refuse(verifier: TokenVerifier, token: Any) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    return info.value


# --- valid tokens ---------------------------------------------------------------
def test_valid_token_verifies(verifier, keyset):
    claims = verifier.verify(keyset.token(sub="alice-sub", email="a@example.com"))
    assert claims["sub"] == "alice-sub"
    assert claims["email"] == "a@example.com"
    assert claims["iss"] == ISSUER


def test_token_signed_by_second_key_verifies(verifier, keyset):
    assert verifier.verify(keyset.token(kid="kid-1", sub="bob"))["sub"] == "bob"


def test_audience_list_containing_the_client(verifier, keyset):
    assert verifier.verify(keyset.token(aud=["other", AUDIENCE]))["sub"]


def test_same_token_verifies_twice(verifier, keyset):
    token = keyset.token(sub="again")
    assert verifier.verify(token)["sub"] == "again"
    assert verifier.verify(token)["sub"] == "again"


# --- malformed and forged tokens --------------------------------------------------
@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "!!!.@@@.###",
        "..",
        b64json({"alg": "RS256", "kid": "kid-0"}) + ".%%%.sig",
        b64url(b"\xff\xfe") + "." + b64json({"sub": "x"}) + ".",
        b64json(["RS256"]) + "." + b64json({"sub": "x"}) + ".",
        None,
        42,
    ],
    ids=repr,
)
def test_malformed_tokens(verifier, token):
    refuse(verifier, token)


def test_tampered_payload(verifier, keyset):
    header, _, signature = segments(keyset.token(sub="alice"))
    forged = b64json(default_claims(sub="mallory"))
    refuse(verifier, f"{header}.{forged}.{signature}")


def test_tampered_signature(verifier, keyset):
    header, payload, signature = segments(keyset.token())
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[-1] ^= 0x01
    refuse(verifier, f"{header}.{payload}.{b64url(bytes(raw))}")


@pytest.mark.parametrize(
    "signature",
    [b"", b"\x00" * 256, b"\xff" * 256, b"\xff" * 512, b"\x01"],
    ids=["empty", "zeros", "ones-over-n", "too-long", "one-byte"],
)
def test_junk_signatures(verifier, keyset, signature):
    header, payload, _ = segments(keyset.token())
    refuse(verifier, f"{header}.{payload}.{b64url(signature)}")


def test_signature_from_another_token(verifier, keyset):
    header, payload, _ = segments(keyset.token(sub="alice"))
    _, _, signature = segments(keyset.token(sub="bob"))
    refuse(verifier, f"{header}.{payload}.{signature}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none(verifier, alg):
    header = b64json({"alg": alg, "kid": "kid-0", "typ": "JWT"})
    token = f"{header}.{b64json(default_claims())}."
    error = refuse(verifier, token)
    assert "algorithm" in str(error)


def test_hs256_signed_with_the_public_key(verifier, keyset):
    """The classic key-confusion attack: HMAC keyed with the RSA public key's PEM."""
    pem = (
        keyset.keys["kid-0"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64json({"alg": "HS256", "kid": "kid-0", "typ": "JWT"})
    signing_input = f"{header}.{b64json(default_claims())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    refuse(verifier, f"{signing_input}.{b64url(signature)}")


def test_hs256_via_pyjwt_refused(verifier):
    token = jwt.encode(default_claims(), "s" * 32, algorithm="HS256", headers={"kid": "kid-0"})
    refuse(verifier, token)


@pytest.mark.parametrize("alg", ["RS512", "PS256", "ES256"])
def test_other_algorithms_refused(verifier, alg):
    header = b64json({"alg": alg, "kid": "kid-0"})
    refuse(verifier, f"{header}.{b64json(default_claims())}.{b64url(b'x' * 256)}")


def test_unknown_kid(verifier, stranger_key):
    token = jwt.encode(
        default_claims(), stranger_key, algorithm="RS256", headers={"kid": "kid-unknown"}
    )
    error = refuse(verifier, token)
    assert "kid-unknown" in str(error)


def test_foreign_key_claiming_a_known_kid(verifier, stranger_key):
    token = jwt.encode(default_claims(), stranger_key, algorithm="RS256", headers={"kid": "kid-0"})
    refuse(verifier, token)


def test_signed_with_the_other_known_key(verifier, keyset):
    """kid-1's signature under a kid-0 header must not verify."""
    token = jwt.encode(
        default_claims(), keyset.keys["kid-1"], algorithm="RS256", headers={"kid": "kid-0"}
    )
    refuse(verifier, token)


def sign_by_hand(header: dict[str, Any], payload: bytes, key: crypto_rsa.RSAPrivateKey) -> str:
    """A compact RS256 JWS with exactly this header (PyJWT refuses odd headers)."""
    signing_input = f"{b64json(header)}.{b64url(payload)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def test_hand_signed_token_verifies(verifier, keyset):
    """The helper below is sound: with a proper header its token passes."""
    token = sign_by_hand(
        {"alg": "RS256", "kid": "kid-0"},
        json.dumps(default_claims(sub="by-hand")).encode(),
        keyset.keys["kid-0"],
    )
    assert verifier.verify(token)["sub"] == "by-hand"


@pytest.mark.parametrize("kid", [None, 0, ["kid-0"], {"id": "kid-0"}], ids=repr)
def test_kid_missing_or_not_a_string(verifier, keyset, kid):
    header: dict[str, Any] = {"alg": "RS256"} if kid is None else {"alg": "RS256", "kid": kid}
    payload = json.dumps(default_claims()).encode()
    error = refuse(verifier, sign_by_hand(header, payload, keyset.keys["kid-0"]))
    assert "key id" in str(error).lower()


@pytest.mark.parametrize("payload", [b"[1, 2]", b"not json", b'"a string"'])
def test_payload_not_a_json_object(verifier, keyset, payload):
    token = jwt.api_jws.PyJWS().encode(
        payload, keyset.keys["kid-0"], algorithm="RS256", headers={"kid": "kid-0"}
    )
    refuse(verifier, token)


# --- claims -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        # Far in the future: the values are computed when tests are collected, which may be
        # many minutes before this one runs.
        ({"nbf": int(time.time()) + 30 * 86400}, "not yet valid"),
        ({"nbf": "now"}, "not yet valid"),
        ({"iat": int(time.time()) + 30 * 86400}, "future"),
        ({"iat": "yesterday"}, "future"),
        ({"iss": "https://evil.example.com/pool"}, "issuer"),
        ({"iss": None}, "issuer"),
        ({"aud": "another-client"}, "audience"),
        ({"aud": ["a", "b"]}, "audience"),
        ({"aud": None}, "audience"),
        ({"sub": None}, "subject"),
        ({"sub": ""}, "subject"),
        ({"sub": 42}, "subject"),
        ({"exp": None}, "exp"),
        ({"exp": str(int(time.time()) + 3600)}, "exp"),
        ({"exp": True}, "exp"),
        ({"token_use": None}, "token_use"),
        ({"token_use": "refresh"}, "token_use"),
    ],
    ids=lambda value: value if isinstance(value, str) else repr(sorted(value)),
)
def test_bad_claims(verifier, keyset, claims, reason):
    error = refuse(verifier, keyset.token(**claims))
    assert reason in str(error)


def test_access_token_refused_where_id_token_expected(verifier, keyset):
    token = keyset.token(token_use="access", client_id=AUDIENCE, aud=None, scope="openid")
    error = refuse(verifier, token)
    assert "token_use" in str(error)


@pytest.mark.parametrize("exp", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_exp_refused(verifier, keyset, exp):
    refuse(verifier, keyset.token(exp=exp))


def test_expiry_checked_on_every_use_even_when_cached(jwks_url, keyset):
    now = [time.time()]
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(jwks_url), clock=lambda: now[0]
    )
    token = keyset.token(exp=int(now[0]) + 60)
    assert verifier.verify(token)["sub"]
    now[0] += 61 + LEEWAY_S
    error = refuse(verifier, token)
    assert "expired" in str(error)


def test_ten_seconds_of_clock_skew_are_allowed_by_default(jwks_url, keyset):
    """Cognito's clock and Lambda's are both synced, never to the same instant."""
    now = time.time()
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(jwks_url), clock=lambda: now
    )
    assert LEEWAY_S == 10
    assert verifier.verify(keyset.token(exp=now - 9))["sub"]
    assert verifier.verify(keyset.token(nbf=now + 9, iat=now + 9))["sub"]
    assert "expired" in str(refuse(verifier, keyset.token(exp=now - 11)))
    assert "not yet valid" in str(refuse(verifier, keyset.token(nbf=now + 11)))
    assert "future" in str(refuse(verifier, keyset.token(iat=now + 11)))


def test_leeway(jwks_url, keyset):
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(jwks_url), leeway=30)
    assert verifier.verify(keyset.token(exp=int(time.time()) - 10))["sub"]
    assert verifier.verify(keyset.token(nbf=int(time.time()) + 10))["sub"]
    refuse(verifier, keyset.token(exp=int(time.time()) - 60))


def test_refused_token_is_not_remembered(jwks_url, keyset):
    now = [time.time()]
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(jwks_url), clock=lambda: now[0]
    )
    token = keyset.token(nbf=int(now[0]) + 60)
    refuse(verifier, token)
    now[0] += 61
    assert verifier.verify(token)["sub"]


def test_cache_is_bounded(jwks_url, keyset):
    verifier = TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(jwks_url), cache_size=2
    )
    tokens = [keyset.token(sub=f"user-{i}") for i in range(4)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._verified) == 2
    assert list(verifier._verified) == tokens[2:]


# --- token_use=None (the HTTP API authorizer's view) --------------------------------
@pytest.fixture
def any_use_verifier(jwks_url: str) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(jwks_url), token_use=None)


def test_any_use_accepts_access_token_for_the_client(any_use_verifier, keyset):
    token = keyset.token(token_use="access", client_id=AUDIENCE, aud=None, sub="svc")
    assert any_use_verifier.verify(token)["sub"] == "svc"


def test_any_use_accepts_id_token(any_use_verifier, keyset):
    assert any_use_verifier.verify(keyset.token(sub="idt"))["sub"] == "idt"


@pytest.mark.parametrize(
    "claims",
    [
        {"client_id": "someone-else", "aud": None},
        {"client_id": None, "aud": None},
        # an access token names its client in client_id; an aud claim does not count
        {"client_id": "someone-else", "aud": AUDIENCE},
    ],
    ids=["wrong-client", "no-client", "aud-only"],
)
def test_any_use_refuses_access_token_for_another_client(any_use_verifier, keyset, claims):
    error = refuse(any_use_verifier, keyset.token(token_use="access", **claims))
    assert "audience" in str(error)


# --- keys unavailable -------------------------------------------------------------
def test_keys_unavailable_is_not_invalid_token(keyset):
    verifier = TokenVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks=JwksCache(f"http://127.0.0.1:{free_port()}/jwks.json", timeout=1),
    )
    with pytest.raises(KeysUnavailable):
        verifier.verify(keyset.token())
    # a malformed token is refused before the keys are needed
    refuse(verifier, "a.b")


# --- bearer_token -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"authorization": ""}, None),
        ({"authorization": "Basic dXNlcjpwdw=="}, None),
        ({"authorization": "Bearer"}, None),
        ({"authorization": "Bearer "}, None),
        ({"authorization": "Bearer    "}, None),
        ({"authorization": "Token abc"}, None),
        ({"authorization": "Bearerabc"}, None),
        ({"authorization": "Bearer abc.def.ghi"}, "abc.def.ghi"),
        ({"authorization": "bearer abc"}, "abc"),
        ({"authorization": "BEARER abc"}, "abc"),
        ({"authorization": "  Bearer abc  "}, "abc"),
        ({"authorization": "Bearer  abc"}, "abc"),
        ({"Authorization": "Bearer abc"}, None),  # header names arrive lower-cased
    ],
    ids=repr,
)
def test_bearer_token(headers, expected):
    assert bearer_token(headers) == expected


# --- PureRS256 -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def signing_pair() -> tuple[crypto_rsa.RSAPrivateKey, rsa.PublicKey]:
    private = crypto_rsa.generate_private_key(65537, 2048)
    numbers = private.public_key().public_numbers()
    return private, rsa.PublicKey(numbers.n, numbers.e)


def test_pure_rs256_verifies_sha256_pkcs1(signing_pair):
    private, public = signing_pair
    signature = private.sign(b"message", padding.PKCS1v15(), hashes.SHA256())
    algorithm = PureRS256()
    assert algorithm.verify(b"message", public, signature) is True
    assert algorithm.verify(b"massage", public, signature) is False


@pytest.mark.parametrize(
    "digest", [hashes.SHA1(), hashes.SHA512(), hashes.SHA384()], ids=lambda d: d.name
)
def test_pure_rs256_refuses_other_hashes(signing_pair, digest):
    private, public = signing_pair
    signature = private.sign(b"message", padding.PKCS1v15(), digest)
    assert PureRS256().verify(b"message", public, signature) is False


def test_pure_rs256_refuses_pss(signing_pair):
    private, public = signing_pair
    signature = private.sign(
        b"message",
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    assert PureRS256().verify(b"message", public, signature) is False


def test_pure_rs256_key_handling(keyset, signing_pair):
    algorithm = PureRS256()
    _, public = signing_pair
    assert algorithm.prepare_key(public) is public
    with pytest.raises(InvalidKeyError):
        algorithm.prepare_key(b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(NotImplementedError):
        algorithm.sign(b"m", public)
    with pytest.raises(NotImplementedError):
        PureRS256.to_jwk(public)
    jwk = keyset.jwks()["keys"][0]
    expected = keyset.keys[jwk["kid"]].public_key().public_numbers()
    for source in (jwk, json.dumps(jwk)):
        key = PureRS256.from_jwk(source)
        assert (key.n, key.e) == (expected.n, expected.e)
    for bad in ({"kty": "EC", "n": "AQ", "e": "AQAB"}, {"kty": "RSA", "e": "AQAB"}, {}):
        with pytest.raises(InvalidKeyError):
            PureRS256.from_jwk(bad)


# --- JwksCache ----------------------------------------------------------------------
class JwksEndpoint:
    """A loopback JWKS endpoint whose answer tests can change, counting requests."""

    def __init__(self, document: dict[str, Any]):
        self.document: Any = document
        self.status = 200
        self.raw: bytes | None = None
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                body = owner.raw if owner.raw is not None else json.dumps(owner.document).encode()
                self.send_response(owner.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.closed = False
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json?x=1"

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(keyset) -> Iterator[JwksEndpoint]:
    server = JwksEndpoint(keyset.jwks())
    yield server
    server.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_jwks_fetched_lazily_and_cached(endpoint, clock, keyset):
    cache = JwksCache(endpoint.url, clock=clock)
    assert endpoint.hits == 0
    key = cache.key("kid-0")
    numbers = keyset.keys["kid-0"].public_key().public_numbers()
    assert (key.n, key.e) == (numbers.n, numbers.e)
    cache.key("kid-1")
    cache.key("kid-0")
    assert endpoint.hits == 1


def test_session_jwks_server_counts_one_fetch(jwks_server, keyset):
    before = jwks_server.hits
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=JwksCache(jwks_server.url))
    for _ in range(3):
        verifier.verify(keyset.token())
    assert jwks_server.hits == before + 1


def test_jwks_refetched_after_ttl(endpoint, clock):
    cache = JwksCache(endpoint.url, ttl=60, clock=clock)
    cache.key("kid-0")
    clock.now += 59.9
    cache.key("kid-0")
    assert endpoint.hits == 1
    clock.now += 0.1
    cache.key("kid-0")
    assert endpoint.hits == 2


def test_jwks_ttl_capped_at_ten_minutes(endpoint, clock):
    cache = JwksCache(endpoint.url, ttl=3600, clock=clock)
    assert cache.ttl == 600
    cache.key("kid-0")
    clock.now += 600
    cache.key("kid-0")
    assert endpoint.hits == 2


def test_unknown_kid_refetches_at_most_once_per_interval(endpoint, clock):
    cache = JwksCache(endpoint.url, ttl=600, refetch_interval=30, clock=clock)
    cache.key("kid-0")
    assert endpoint.hits == 1
    for _ in range(5):  # the keys were just fetched: no refetch yet
        with pytest.raises(InvalidToken):
            cache.key("forged")
    assert endpoint.hits == 1
    clock.now += 30
    for _ in range(5):
        with pytest.raises(InvalidToken):
            cache.key("forged")
    assert endpoint.hits == 2
    clock.now += 29
    with pytest.raises(InvalidToken):
        cache.key("forged-again")
    assert endpoint.hits == 2
    clock.now += 1
    with pytest.raises(InvalidToken):
        cache.key("forged-again")
    assert endpoint.hits == 3


def test_rotated_key_found_by_refetch(endpoint, clock, stranger_key):
    cache = JwksCache(endpoint.url, refetch_interval=30, clock=clock)
    cache.key("kid-0")
    numbers = stranger_key.public_key().public_numbers()
    endpoint.document = {
        "keys": [
            {
                "kty": "RSA",
                "kid": "kid-new",
                "alg": "RS256",
                "use": "sig",
                "n": b64url(numbers.n.to_bytes(256, "big")),
                "e": b64url(numbers.e.to_bytes(3, "big")),
            }
        ]
    }
    clock.now += 30
    assert cache.key("kid-new").n == numbers.n
    with pytest.raises(InvalidToken):  # the old key is gone with the rotation
        cache.key("kid-0")


@pytest.mark.parametrize(
    "failure",
    ["http-500", "not-json", "not-an-object", "closed"],
)
def test_failed_refresh_keeps_serving_old_keys(endpoint, clock, failure):
    cache = JwksCache(endpoint.url, ttl=60, clock=clock, timeout=1)
    old = cache.key("kid-0")
    if failure == "http-500":
        endpoint.status = 500
    elif failure == "not-json":
        endpoint.raw = b"<html>"
    elif failure == "not-an-object":
        endpoint.document = [1, 2]
    else:
        endpoint.close()
    clock.now += 61
    assert cache.key("kid-0") is old
    assert cache.key("kid-1")
    if failure != "closed":
        assert endpoint.hits == 2
        # the failure counts as a fetch: no new attempt on every request
        cache.key("kid-0")
        assert endpoint.hits == 2
        # once the endpoint is back, the next due refresh picks the keys up again
        endpoint.status, endpoint.raw, endpoint.document = 200, None, {"keys": []}
        clock.now += 60
        with pytest.raises(InvalidToken):
            cache.key("kid-0")
        assert endpoint.hits == 3


def test_first_fetch_failure_raises_keys_unavailable():
    cache = JwksCache(f"http://127.0.0.1:{free_port()}/jwks.json", timeout=1)
    with pytest.raises(KeysUnavailable):
        cache.key("kid-0")


def test_a_failed_fetch_is_remembered_for_a_few_seconds(endpoint, clock):
    """Without keys to fall back on, requests in the next 5 s fail at once instead of each
    asking (and waiting out) an endpoint that just failed; then it is asked again."""
    endpoint.status = 500
    cache = JwksCache(endpoint.url, clock=clock, failure_ttl=5)
    for _ in range(3):
        with pytest.raises(KeysUnavailable, match="HTTP 500"):
            cache.key("kid-0")
    assert endpoint.hits == 1
    clock.now += 4.9
    with pytest.raises(KeysUnavailable, match="retried after 5 s"):
        cache.key("kid-0")
    assert endpoint.hits == 1
    endpoint.status = 200
    clock.now += 0.1
    assert cache.key("kid-0")
    assert endpoint.hits == 2


def test_prefetch_fetches_once_and_the_first_request_is_served_from_it(endpoint, clock):
    cache = JwksCache(endpoint.url, clock=clock)
    assert cache.prefetch()
    assert endpoint.hits == 1
    assert cache.key("kid-0") and cache.key("kid-1")
    assert cache.prefetch()
    assert endpoint.hits == 1


def test_a_failed_prefetch_is_not_remembered(endpoint, clock):
    """Unlike a request's fetch, a failed prefetch leaves nothing that refuses requests: the
    first request asks the endpoint again at once."""
    endpoint.status = 500
    cache = JwksCache(endpoint.url, clock=clock, failure_ttl=5)
    assert not cache.prefetch()
    endpoint.status = 200
    assert cache.key("kid-0")
    assert endpoint.hits == 2


def test_a_prefetch_of_a_jwks_without_usable_keys_is_false(endpoint, clock):
    endpoint.document = {"keys": []}
    cache = JwksCache(endpoint.url, clock=clock)
    assert not cache.prefetch()
    with pytest.raises(InvalidToken, match="unknown key id"):
        cache.key("kid-0")


@pytest.mark.parametrize("status", [404, 500])
def test_first_fetch_http_error_raises_keys_unavailable(endpoint, status):
    endpoint.status = status
    with pytest.raises(KeysUnavailable):
        JwksCache(endpoint.url).key("kid-0")


def test_https_endpoint_down_raises_keys_unavailable():
    with pytest.raises(KeysUnavailable):
        JwksCache(f"https://127.0.0.1:{free_port()}/jwks.json", timeout=1).key("kid-0")


def test_non_http_url_raises_keys_unavailable():
    with pytest.raises(KeysUnavailable):
        JwksCache("ftp://127.0.0.1/jwks.json").key("kid-0")


def test_oversized_jwks_refused(endpoint):
    endpoint.raw = b'{"keys": [], "pad": "' + b"x" * (256 * 1024) + b'"}'
    with pytest.raises(KeysUnavailable):
        JwksCache(endpoint.url).key("kid-0")


def test_unusable_jwks_entries_are_skipped(endpoint, keyset, clock):
    good = keyset.jwks()["keys"][0]
    endpoint.document = {
        "keys": [
            {**good, "kid": "enc-key", "use": "enc"},
            {**good, "kid": "rs512-key", "alg": "RS512"},
            {"kty": "EC", "kid": "ec-key", "crv": "P-256", "x": "AA", "y": "AA"},
            {k: v for k, v in good.items() if k != "kid"},
            {**good, "kid": "no-alg", "alg": "RS256"},
            good,
        ]
    }
    cache = JwksCache(endpoint.url, clock=clock)
    assert cache.key("kid-0")
    assert cache.key("no-alg")
    for kid in ("enc-key", "rs512-key", "ec-key"):
        with pytest.raises(InvalidToken):
            cache.key(kid)


# --- endpoints that misbehave at the HTTP level ----------------------------------------
def _answer(body: bytes, *, length: int | None = None) -> bytes:
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {length or len(body)}\r\n\r\n".encode() + body


MISBEHAVING = {
    "garbage-status-line": b"HELLO THERE\r\n\r\n",
    "bad-status-code": b"HTTP/1.1 abc OK\r\n\r\n",
    "truncated-body": _answer(b'{"keys": [', length=500),
    "closed-without-answer": b"",
    "header-without-end": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",
    "not-json": _answer(b"<html>maintenance</html>"),
    "nested-too-deep": _answer(b"[" * 100_000),
    "keys-not-a-list": _answer(b'{"keys": 5}'),
}


@pytest.mark.parametrize("answer", MISBEHAVING.values(), ids=MISBEHAVING.keys())
def test_a_broken_answer_is_keys_unavailable(answer):
    with RawHttpServer(answer) as server:
        with pytest.raises(KeysUnavailable):
            JwksCache(server.url, timeout=2).key("kid-0")
        assert server.hits == 1


@pytest.mark.parametrize(
    ("delay", "drip"), [(3.0, 0.0), (0.0, 0.1)], ids=["slow-to-answer", "a-byte-at-a-time"]
)
def test_a_slow_endpoint_costs_the_timeout_once_then_fails_fast(delay, drip):
    """A trickling endpoint finishes each socket operation in time, and its whole answer
    (7 s of it) would parse: KeysUnavailable, not InvalidToken, proves the fetch was cut
    at its timeout. The failure is then remembered: the next request does not ask again."""
    with RawHttpServer(_answer(b'{"keys": []}'), delay=delay, drip=drip) as srv:
        cache = JwksCache(srv.url, timeout=0.5)
        with pytest.raises(KeysUnavailable, match=r"within 0.5 s|timed out"):
            cache.key("kid-0")
        with pytest.raises(KeysUnavailable, match="retried after"):
            cache.key("kid-0")
        assert srv.hits == 1


@pytest.mark.parametrize(
    "keys",
    [
        ["not an object"],
        [{"kty": "RSA", "kid": "k", "n": 5, "e": "AQAB"}],
        [{"kty": "RSA", "kid": 7, "n": "AQAB", "e": "AQAB"}],
        [{"kty": "RSA", "kid": "k", "n": "###", "e": "AQAB"}],
        [{"kty": "RSA", "kid": "k", "n": "Ā", "e": "AQAB"}],
        [{"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"}],
    ],
    ids=[
        "string",
        "n-not-a-string",
        "kid-not-a-string",
        "n-not-base64",
        "n-not-ascii",
        "n-too-small",
    ],
)
def test_unusable_entries_are_skipped_not_crashed_on(keys):
    assert auth.parse_jwks({"keys": keys}) == {}


# --- the static keys (TL_JWKS) ---------------------------------------------------------
def test_static_keys_verify_without_any_fetch(keyset):
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=StaticKeys(keyset.jwks()))
    assert verifier.verify(keyset.token(sub="static"))["sub"] == "static"
    assert verifier.verify(keyset.token(kid="kid-1"))["sub"]


def test_a_kid_not_in_the_static_keys_says_to_run_deploy(keyset):
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=StaticKeys(keyset.jwks()))
    rotated = KeySet(count=3)
    error = refuse(verifier, rotated.token(kid="kid-2"))
    assert "unknown key id 'kid-2'" in str(error)
    assert "older than the pool's: run deploy.yml" in str(error)


@pytest.mark.parametrize(
    "document",
    [[], {}, {"keys": "x"}, {"keys": []}, {"keys": [{"kty": "EC", "kid": "e"}]}],
    ids=["list", "no-keys", "keys-not-a-list", "empty", "no-rsa-key"],
)
def test_static_keys_refuse_a_document_without_a_usable_key(document):
    with pytest.raises(ValueError):
        StaticKeys(document)


def test_compact_jwks_keeps_what_the_router_verifies_with(keyset):
    full = keyset.jwks()
    for jwk in full["keys"]:
        jwk["x5c"] = ["MIIC" + "A" * 1200]  # members the router does not use
    full["keys"].insert(0, {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"})
    full["keys"].append({**keyset.jwks()["keys"][0], "kid": "enc", "use": "enc"})
    compact = auth.compact_jwks(full)
    parsed = json.loads(compact)
    assert [jwk["kid"] for jwk in parsed["keys"]] == ["kid-0", "kid-1"]
    assert all(set(jwk) == {"kid", "kty", "alg", "use", "n", "e"} for jwk in parsed["keys"])
    assert " " not in compact
    # what the router reads back verifies tokens
    keys = StaticKeys(json.loads(compact))
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=keys)
    assert verifier.verify(keyset.token())["sub"]


def test_compact_jwks_fits_lambdas_environment_with_room_to_spare(keyset):
    """Two RSA-2048 keys, as a Cognito pool has, in well under Lambda's 4 KB of variables."""
    compact = auth.compact_jwks(keyset.jwks())
    assert len(compact.encode()) < 1024


def test_compact_jwks_is_the_same_text_for_the_same_keys(keyset):
    """A redeploy with unchanged keys must not change the function's configuration."""
    document = keyset.jwks()
    reversed_document = {"keys": [dict(reversed(j.items())) for j in reversed(document["keys"])]}
    assert auth.compact_jwks(document) == auth.compact_jwks(reversed_document)
    assert auth.compact_jwks(json.dumps(document)) == auth.compact_jwks(document)


@pytest.mark.parametrize(
    "document", [{"keys": []}, {"nope": 1}, "[1]"], ids=["no-keys", "not-jwks", "json-list"]
)
def test_compact_jwks_refuses_what_the_router_could_not_use(document):
    with pytest.raises(ValueError):
        auth.compact_jwks(document)


def test_compact_jwks_refuses_more_than_the_variable_can_hold():
    many = KeySet(count=6).jwks()
    with pytest.raises(ValueError, match="4 KB"):
        auth.compact_jwks(many)


def test_compact_jwks_leaves_out_entries_the_router_could_not_read(keyset):
    good = keyset.jwks()["keys"][0]
    document = {"keys": [good, {**good, "kid": "weak", "n": "AQAB"}]}
    assert [jwk["kid"] for jwk in json.loads(auth.compact_jwks(document))["keys"]] == ["kid-0"]

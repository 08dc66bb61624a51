"""Cognito ID-token verification, done by the router even behind the HTTP API authorizer.

The signature is RS256, checked against the user pool's JWKS. PyJWT parses the
token and enforces the algorithm allow-list; the RSA arithmetic is done by the
pure-Python `rsa` package because a Lambda zip must not carry native code
(`cryptography` is a compiled extension) and importing it would cost more than
the router's whole cold-start budget. Claims are checked here, against the few
rules Cognito ID tokens follow (iss, aud, token_use, exp, nbf, sub), with
`LEEWAY_S` of clock skew allowed.

The keys come from the function's configuration (`StaticKeys`, TL_JWKS, what
the deployed router uses: it has no route to Cognito) or are fetched from the
pool's JWKS URL (`JwksCache`: the local gateway, and the router without TL_JWKS).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import threading
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import jwt
import rsa
from jwt.algorithms import Algorithm
from jwt.exceptions import InvalidKeyError, PyJWTError

ALGORITHM = "RS256"
_MAX_JWKS_BYTES = 256 * 1024
# Seconds of clock skew tolerated on exp, nbf and iat: Lambda's clock and Cognito's are
# both NTP-synced, but not to the same instant, and a token minted this second must work.
LEEWAY_S = 10.0


class InvalidToken(Exception):
    """The token is not one this service accepts; the message says why (for logs only)."""


class KeysUnavailable(Exception):
    """The JWKS could not be fetched and no earlier copy is cached."""


# RFC 7518 §3.3: RS256 keys MUST be 2048 bits or larger.
_MIN_MODULUS_BITS = 2048


def _b64url_int(value: str) -> int:
    """Strictly: the lenient decoder would drop stray characters and read a wrong number."""
    padded = value + "=" * (-len(value) % 4)
    return int.from_bytes(base64.b64decode(padded, altchars=b"-_", validate=True), "big")


class PureRS256(Algorithm):
    """RSASSA-PKCS1-v1_5 with SHA-256, verification only, backed by the `rsa` package."""

    def prepare_key(self, key: Any) -> rsa.PublicKey:
        if not isinstance(key, rsa.PublicKey):
            raise InvalidKeyError("RS256 needs an RSA public key from the JWKS")
        return key

    def sign(self, msg: bytes, key: Any) -> bytes:
        raise NotImplementedError("this service only verifies tokens")

    def verify(self, msg: bytes, key: rsa.PublicKey, sig: bytes) -> bool:
        try:
            return rsa.verify(msg, sig, key) == "SHA-256"
        except rsa.VerificationError:
            return False

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False):
        raise NotImplementedError("this service only reads JWKS")

    @staticmethod
    def from_jwk(jwk: str | dict) -> rsa.PublicKey:
        data = json.loads(jwk) if isinstance(jwk, str) else jwk
        if data.get("kty") != "RSA" or "n" not in data or "e" not in data:
            raise InvalidKeyError("not an RSA JWK")
        n, e = _b64url_int(data["n"]), _b64url_int(data["e"])
        if n.bit_length() < _MIN_MODULUS_BITS or e < 3:
            raise InvalidKeyError(f"an RSA key of {n.bit_length()} bits is too weak for RS256")
        return rsa.PublicKey(n, e)


def _usable(jwk: Any) -> bool:
    """An RS256 signing key: the only kind a Cognito pool signs ID tokens with."""
    return (
        isinstance(jwk, dict)
        and isinstance(jwk.get("kid"), str)
        and isinstance(jwk.get("n"), str)
        and isinstance(jwk.get("e"), str)
        and jwk.get("kty") == "RSA"
        and jwk.get("use", "sig") == "sig"
        and jwk.get("alg", ALGORITHM) == ALGORITHM
    )


def _key_list(document: Any) -> list[Any]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS document: a JSON object with a "keys" list is expected')
    return document["keys"]


def parse_jwks(document: Any) -> dict[str, rsa.PublicKey]:
    """The usable keys of a JWKS document by `kid`; others are skipped. Raises ValueError
    when the document is not a JWKS at all."""
    keys = {}
    for jwk in _key_list(document):
        if not _usable(jwk):
            continue
        try:
            keys[jwk["kid"]] = PureRS256.from_jwk(jwk)
        except (ValueError, InvalidKeyError):
            continue
    return keys


# Lambda allows 4 KB for all of a function's variables together; two RSA-2048 keys take
# about 850 bytes, and this leaves room for the others.
JWKS_VARIABLE_MAX_BYTES = 2048
_JWK_MEMBERS = ("kid", "kty", "alg", "use", "n", "e")


def compact_jwks(document: dict[str, Any] | str) -> str:
    """The pool's JWKS reduced to what the router verifies with, as the compact JSON it
    reads from TL_JWKS: usable keys only, members kid/kty/alg/use/n/e, sorted by kid, so
    the same keys always give the same text (a redeploy changes nothing).

    Raises ValueError when no key is usable or the result would not fit the variable.
    """
    if isinstance(document, str):
        document = json.loads(document)
    parsed = parse_jwks(document)
    # the entries the keys came from, one per kid (the last, as parse_jwks keeps it)
    kept = {jwk["kid"]: jwk for jwk in _key_list(document) if _usable(jwk) and jwk["kid"] in parsed}
    if not kept:
        raise ValueError("the JWKS holds no RS256 signing key")
    compact = [
        {name: kept[kid][name] for name in _JWK_MEMBERS if name in kept[kid]}
        for kid in sorted(kept)
    ]
    text = json.dumps({"keys": compact}, separators=(",", ":"))
    if len(text) > JWKS_VARIABLE_MAX_BYTES:
        raise ValueError(
            f"the compacted JWKS is {len(text)} bytes, over the {JWKS_VARIABLE_MAX_BYTES} "
            "kept for it in the function's 4 KB of variables"
        )
    return text


class StaticKeys:
    """The pool's keys as the deploy wrote them into the function's configuration (TL_JWKS).

    The router has no route to Cognito's JWKS URL, so it never fetches: a token signed
    with a key the deploy has not seen yet is refused, and the log says what to run.
    """

    def __init__(self, document: Any):
        self._keys = parse_jwks(document)
        if not self._keys:
            raise ValueError("the JWKS holds no RS256 signing key")

    def key(self, kid: str) -> rsa.PublicKey:
        try:
            return self._keys[kid]
        except KeyError:
            raise InvalidToken(
                f"unknown key id {kid!r}; the keys in the function's configuration may be "
                "older than the pool's: run deploy.yml"
            ) from None


# What a failed JWKS fetch raises. HTTPException: a broken answer (bad status line,
# truncated body); RecursionError: a body nested too deeply for json.
_FETCH_ERRORS = (OSError, ValueError, RecursionError, http.client.HTTPException)


def _cut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = connection.sock
    if sock is not None:
        # Wakes a recv blocked in another thread (close alone would not, on Linux).
        with contextlib.suppress(OSError, ValueError):
            sock.shutdown(socket.SHUT_RDWR)


class JwksCache:
    """The pool's signing keys by `kid`, fetched lazily and kept for at most `ttl` seconds.

    An unknown `kid` triggers one refetch (keys may have rotated), but not more
    often than `refetch_interval`, so forged kids cannot hammer the JWKS endpoint.
    If a refresh fails, the previous keys stay in use; with none to serve, the
    failure is remembered for `failure_ttl` seconds, so requests do not each wait
    out the timeout against an endpoint that just failed. A fetch takes at most
    `timeout` seconds in all, however slowly the endpoint answers.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 600.0,
        refetch_interval: float = 30.0,
        timeout: float = 2.0,
        failure_ttl: float = 5.0,
        clock=time.monotonic,
    ):
        self.url = url
        self.ttl = min(ttl, 600.0)
        self.refetch_interval = refetch_interval
        self.timeout = timeout
        self.failure_ttl = failure_ttl
        self._clock = clock
        self._keys: dict[str, rsa.PublicKey] = {}
        self._fetched_at: float | None = None
        self._failed: tuple[float, str] | None = None  # when the last fetch failed, and why
        self._lock = threading.Lock()

    def _get(self) -> dict[str, Any]:
        """GET the JWKS with http.client: urllib's first urlopen builds an HTTPS-capable
        opener and loads the CA bundle even for plain http (~35 ms of a cold start)."""
        parts = urlsplit(self.url)
        if parts.scheme == "https":
            import ssl

            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname,
                parts.port,
                timeout=self.timeout,
                context=ssl.create_default_context(),
            )
        elif parts.scheme == "http":
            connection = http.client.HTTPConnection(
                parts.hostname, parts.port, timeout=self.timeout
            )
        else:
            raise ValueError(f"JWKS URL must be http(s): {self.url}")
        # The timeout above bounds each socket operation, not the fetch: an endpoint that
        # trickles its answer byte by byte would hold the request far longer.
        cut = threading.Event()
        watchdog = threading.Timer(self.timeout, _cut, (connection, cut))
        watchdog.start()
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", path or "/", headers={"Accept": "application/json"})
            response = connection.getresponse()
            body = response.read(_MAX_JWKS_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            if cut.is_set():
                raise TimeoutError(f"no complete answer within {self.timeout:g} s") from exc
            raise
        finally:
            watchdog.cancel()
            connection.close()
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}")
        if len(body) > _MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        return json.loads(body)

    def _fetch(self) -> None:
        self._keys = parse_jwks(self._get())
        self._fetched_at = self._clock()

    def prefetch(self) -> bool:
        """Fetch the keys now, before any request needs one (API Gateway fetches them when
        an authorizer is created or updated). A failure here is not remembered: the first
        request that needs a key asks the endpoint again. True when keys are cached."""
        with self._lock:
            if not self._keys:
                try:
                    self._fetch()
                except _FETCH_ERRORS:
                    return False
                self._failed = None
            return bool(self._keys)

    def _refresh(self, *, forced: bool) -> None:
        now = self._clock()
        age = None if self._fetched_at is None else now - self._fetched_at
        due = age is None or age >= self.ttl or (forced and age >= self.refetch_interval)
        if not due:
            return
        if not self._keys and self._failed is not None:
            failed_at, reason = self._failed
            if now - failed_at < self.failure_ttl:
                raise KeysUnavailable(
                    f"cannot fetch JWKS from {self.url}: {reason} "
                    f"({now - failed_at:.1f} s ago; retried after {self.failure_ttl:g} s)"
                )
        try:
            self._fetch()
        except _FETCH_ERRORS as exc:
            reason = str(exc) or type(exc).__name__
            if not self._keys:
                self._failed = (now, reason)
                raise KeysUnavailable(f"cannot fetch JWKS from {self.url}: {reason}") from exc
            self._fetched_at = now  # keep serving the previous keys; retry after a while
        else:
            self._failed = None

    def key(self, kid: str) -> rsa.PublicKey:
        with self._lock:
            self._refresh(forced=False)
            if kid not in self._keys:
                self._refresh(forced=True)
            try:
                return self._keys[kid]
            except KeyError:
                raise InvalidToken(f"unknown key id {kid!r}") from None


class TokenVerifier:
    """Verifies Cognito ID tokens: signature, issuer, audience (app client id), use, lifetime.

    A client sends the same token for up to an hour, and the signature check is
    most of the cost (pure-Python RSA plus PyJWT's segment parsing, ~0.5 ms), so
    tokens whose signature verified are remembered (bounded, least recently used
    dropped first). Their claims, expiry included, are checked on every use.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JwksCache | StaticKeys,
        token_use: str | None = "id",  # noqa: S107 - a claim value, not a password
        leeway: float = LEEWAY_S,
        clock=time.time,
        cache_size: int = 1024,
    ):
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.token_use = token_use
        self.leeway = leeway
        self._clock = clock
        self._jws = jwt.PyJWS(algorithms=[])
        self._jws.register_algorithm(ALGORITHM, PureRS256())
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def verify(self, token: str) -> dict[str, Any]:
        """Return the token's claims, or raise InvalidToken (KeysUnavailable if JWKS is down)."""
        with self._cache_lock:
            claims = self._verified.get(token) if isinstance(token, str) else None
            if claims is not None:
                self._verified.move_to_end(token)
        if claims is None:
            claims = self._verify_signature(token)
        self._check_claims(claims)
        with self._cache_lock:
            self._verified[token] = claims
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return claims

    def _verify_signature(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or token.count(".") != 2:
            raise InvalidToken("not a compact JWS")
        try:
            header = self._jws.get_unverified_header(token)
        except PyJWTError as exc:
            raise InvalidToken(f"bad header: {exc}") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("no key id")
        key = self.jwks.key(kid)
        try:
            decoded = self._jws.decode_complete(token, key=key, algorithms=[ALGORITHM])
            claims = json.loads(decoded["payload"])
        except (PyJWTError, ValueError) as exc:
            raise InvalidToken(f"bad signature or payload: {exc}") from None
        if not isinstance(claims, dict):
            raise InvalidToken("payload is not a JSON object")
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not _is_number(exp):
            raise InvalidToken("exp missing or not a number")
        if now > exp + self.leeway:
            raise InvalidToken("expired")
        if nbf is not None and (not _is_number(nbf) or now + self.leeway < nbf):
            raise InvalidToken("not yet valid")
        iat = claims.get("iat")
        if iat is not None and (not _is_number(iat) or now + self.leeway < iat):
            raise InvalidToken("issued in the future")
        if claims.get("iss") != self.issuer:
            raise InvalidToken("wrong issuer")
        if self.token_use is not None and claims.get("token_use") != self.token_use:
            raise InvalidToken(f"token_use is not {self.token_use!r}")
        # ID tokens name the app client in `aud`, access tokens in `client_id`
        # (the HTTP API authorizer, token_use=None, accepts either).
        if claims.get("token_use") == "access":
            audiences = [claims.get("client_id")]
        else:
            audience = claims.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise InvalidToken("wrong audience")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("no subject")


# 2**53: the largest range where floats hold every integer; far beyond any real date.
_MAX_NUMERIC_DATE = 2**53


def _is_number(value: Any) -> bool:
    """A usable NumericDate: finite, and small enough to add to a float without overflow."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return -_MAX_NUMERIC_DATE < value < _MAX_NUMERIC_DATE  # NaN compares false


def groups(claims: dict[str, Any]) -> frozenset[str]:
    """The Cognito groups named by `cognito:groups` in the claims of a token this service
    verified itself: a JSON list of group names, as Cognito writes it into ID and access
    tokens:
    https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-id-token.html

    Anything else names no group: a string, whatever it spells (`"admins"`, `"[admins]"`),
    is not what Cognito issues. The string form is API Gateway's flattened copy of the
    claims in `requestContext.authorizer`, which the router never reads: it verifies the
    token itself. Names are compared whole, so `notadmins` is not `admins`.
    """
    value = claims.get("cognito:groups")
    if not isinstance(value, list):
        return frozenset()
    return frozenset(name for name in value if isinstance(name, str) and name)


# RFC 8176 §2: "mfa", multiple-factor authentication. Cognito's `amr` claim is a list of
# such values, e.g. ["pwd", "otp", "mfa"], naming the methods the sign-in completed:
# https://docs.aws.amazon.com/cognito/latest/developerguide/cognito-user-pools-step-up-authentication.html
MFA_METHOD = "mfa"


def signed_in_with_mfa(claims: dict[str, Any]) -> bool:
    """Whether a verified token's `amr` claim says its sign-in used a second factor: a JSON
    list that names `mfa`. Absent, a string or anything else: no (fail closed)."""
    methods = claims.get("amr")
    return isinstance(methods, list) and MFA_METHOD in methods


def bearer_token(headers: dict[str, str]) -> str | None:
    """The token from an `Authorization: Bearer …` header (header names lower-cased)."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()

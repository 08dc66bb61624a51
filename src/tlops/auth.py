"""Cognito ID-token verification, done by the router even behind the HTTP API authorizer.

The signature is RS256, checked against the user pool's JWKS. PyJWT parses the
token and enforces the algorithm allow-list; the RSA arithmetic is done by the
pure-Python `rsa` package because a Lambda zip must not carry native code
(`cryptography` is a compiled extension) and importing it would cost more than
the router's whole cold-start budget. Claims are checked here, against the few
rules Cognito ID tokens follow (iss, aud, token_use, exp, nbf, sub).
"""

from __future__ import annotations

import base64
import http.client
import json
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


class InvalidToken(Exception):
    """The token is not one this service accepts; the message says why (for logs only)."""


class KeysUnavailable(Exception):
    """The JWKS could not be fetched and no earlier copy is cached."""


def _b64url_int(value: str) -> int:
    padded = value + "=" * (-len(value) % 4)
    return int.from_bytes(base64.urlsafe_b64decode(padded), "big")


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
        return rsa.PublicKey(_b64url_int(data["n"]), _b64url_int(data["e"]))


class JwksCache:
    """The pool's signing keys by `kid`, fetched lazily and kept for at most `ttl` seconds.

    An unknown `kid` triggers one refetch (keys may have rotated), but not more
    often than `refetch_interval`, so forged kids cannot hammer the JWKS endpoint.
    If a refresh fails, the previous keys stay in use.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 600.0,
        refetch_interval: float = 30.0,
        timeout: float = 2.0,
        clock=time.monotonic,
    ):
        self.url = url
        self.ttl = min(ttl, 600.0)
        self.refetch_interval = refetch_interval
        self.timeout = timeout
        self._clock = clock
        self._keys: dict[str, rsa.PublicKey] = {}
        self._fetched_at: float | None = None
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
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", path or "/", headers={"Accept": "application/json"})
            response = connection.getresponse()
            body = response.read(_MAX_JWKS_BYTES + 1)
        finally:
            connection.close()
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}")
        if len(body) > _MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("JWKS document is not a JSON object")
        return document

    def _fetch(self) -> None:
        document = self._get()
        keys = {}
        for jwk in document.get("keys", []):
            if jwk.get("use", "sig") != "sig" or jwk.get("alg", ALGORITHM) != ALGORITHM:
                continue
            try:
                keys[jwk["kid"]] = PureRS256.from_jwk(jwk)
            except (KeyError, ValueError, InvalidKeyError):
                continue
        self._keys = keys
        self._fetched_at = self._clock()

    def _refresh(self, *, forced: bool) -> None:
        now = self._clock()
        age = None if self._fetched_at is None else now - self._fetched_at
        due = age is None or age >= self.ttl or (forced and age >= self.refetch_interval)
        if not due:
            return
        try:
            self._fetch()
        except (OSError, ValueError) as exc:
            if not self._keys:
                raise KeysUnavailable(f"cannot fetch JWKS from {self.url}: {exc}") from exc
            self._fetched_at = now  # keep serving the previous keys; retry after a while

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
        jwks: JwksCache,
        token_use: str | None = "id",  # noqa: S107 - a claim value, not a password
        leeway: float = 0.0,
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


def bearer_token(headers: dict[str, str]) -> str | None:
    """The token from an `Authorization: Bearer …` header (header names lower-cased)."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()

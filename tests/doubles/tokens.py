"""Cognito's side of a token without a user pool: signing keys, ID tokens, a JWKS endpoint.

Needs `cryptography` (a dev dependency) to make and use the private keys.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TESTPOOL"
AUDIENCE = "test-client-id"


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class KeySet:
    """RSA signing keys made on the spot, their JWKS, and an ID-token factory."""

    def __init__(self, count: int = 2, issuer: str = ISSUER, audience: str = AUDIENCE):
        self.issuer = issuer
        self.audience = audience
        self.keys = {f"kid-{i}": rsa.generate_private_key(65537, 2048) for i in range(count)}

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
        """A signed ID token; claims override the defaults, a claim set to None is left out."""
        now = int(time.time())
        payload = {
            "sub": str(uuid.uuid4()),
            "iss": self.issuer,
            "aud": self.audience,
            "token_use": "id",
            "iat": now,
            "auth_time": now,
            "exp": now + 3600,
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(
            payload, self.keys[kid], algorithm="RS256", headers={"kid": kid, **(headers or {})}
        )


class JwksServer:
    """Serves a JWKS document on loopback and counts the fetches."""

    def __init__(self, document: dict[str, Any]):
        self.document = document
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                """Quiet: tests read results, not request lines."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

"""A test double of Cognito's hosted-UI endpoints: `/oauth2/authorize` and `/oauth2/token`.

It checks what Cognito checks for a public client with PKCE: the client id, a
registered redirect URI (exact match), `response_type=code`, an S256 challenge;
at the token endpoint the same redirect URI, a code used once, and a verifier
whose SHA-256 is the challenge. Tokens are signed with the tests' KeySet, so
the gateway and router accept them. `browser` plays the user's browser: it
follows the authorize URL and the redirect to the CLI's loopback listener.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.doubles.tokens import KeySet


class HostedUiDouble:
    def __init__(self, keyset: KeySet, *, client_id: str, callback_ports: list[int]):
        self.keyset = keyset
        self.client_id = client_id
        self.redirect_uris = {f"http://127.0.0.1:{port}/callback" for port in callback_ports}
        self.codes: dict[str, dict[str, str]] = {}
        self.deny = False  # answer the next authorize with error=access_denied
        self.token_claims: list[dict[str, Any]] = []  # claims for successive tokens; then fresh
        self.issued = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                if parts.path != "/oauth2/authorize":
                    self._json(404, {"error": "not_found"})
                    return
                q = dict(urllib.parse.parse_qsl(parts.query))
                problem = owner.check_authorize(q)
                if problem:
                    self._json(400, {"error": "invalid_request", "error_description": problem})
                    return
                if owner.deny:
                    answer = {"error": "access_denied", "state": q["state"]}
                else:
                    code = secrets.token_urlsafe(16)
                    owner.codes[code] = q
                    answer = {"code": code, "state": q["state"]}
                self.send_response(302)
                self.send_header(
                    "location", f"{q['redirect_uri']}?{urllib.parse.urlencode(answer)}"
                )
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                status, body = owner.exchange(form)
                self._json(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def check_authorize(self, q: dict[str, str]) -> str:
        if q.get("client_id") != self.client_id:
            return "unknown client_id"
        if q.get("response_type") != "code":
            return "response_type must be code"
        if q.get("redirect_uri") not in self.redirect_uris:
            return "redirect_mismatch"
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return "PKCE S256 required for a public client"
        if not q.get("state"):
            return "state missing"
        return ""

    def exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        request = self.codes.pop(form.get("code", ""), None)  # a code works once
        if request is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant"}
        if form.get("redirect_uri") != request["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != request["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "code_verifier"}
        claims = self.token_claims.pop(0) if self.token_claims else {}
        self.issued += 1
        return 200, {
            "id_token": self.keyset.token(**{"sub": "hosted-user", **claims}),
            "access_token": "opaque-access",
            "refresh_token": "opaque-refresh",
            "token_type": "Bearer",
            "expires_in": 3600,
        }

    def browser(self, url: str) -> None:
        """Follow the authorize URL to the redirect, as a browser would (errors ignored)."""
        with contextlib.suppress(urllib.error.URLError, OSError):
            urllib.request.urlopen(url, timeout=10).close()

    def __enter__(self) -> HostedUiDouble:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

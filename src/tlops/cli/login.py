"""`tlops login`: the Cognito hosted-UI authorization-code flow with PKCE, on a loopback port.

The app client is public (no secret), so the code exchange is protected by
PKCE (RFC 7636, S256): the CLI keeps a random verifier, sends only its SHA-256
to the authorize endpoint, and proves it holds the verifier when it trades the
code for tokens. The redirect comes back to a listener on 127.0.0.1 that
accepts one callback and closes after at most `timeout` seconds; a connection
that sends nothing is dropped after `CONNECTION_TIMEOUT_S`, so it can neither
hold the listener past that deadline nor keep the real callback waiting.

Cognito matches callback URLs exactly, port included, so a loopback client
cannot use "any port" (RFC 8252 §7.3): the app client registers a few ports
(`auth_callback_ports` in the inventory) and the CLI picks a random free one.

Tokens are returned to the caller and live in its memory only; nothing is
written to disk.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import json
import random
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_CALLBACK_PORTS = (53682, 53683, 53684, 53685, 53686)
DEFAULT_SCOPES = ("openid", "email", "profile")
CALLBACK_TIMEOUT_S = 30.0
# The listener serves one connection at a time; a browser sends its request at once, but
# also opens connections it may never use (preconnects). One that stays silent this long
# is dropped, so the callback queued behind it is still served.
CONNECTION_TIMEOUT_S = 1.0

_PAGE = (
    "<!doctype html><meta charset=utf-8><title>tlops login</title>"
    "<p>{message}</p><p>You can close this tab.</p>"
)


class LoginError(Exception):
    """The login did not produce tokens; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class HostedUi:
    base_url: str  # https://<prefix>.auth.<region>.amazoncognito.com
    client_id: str
    callback_ports: Sequence[int] = DEFAULT_CALLBACK_PORTS
    scopes: Sequence[str] = DEFAULT_SCOPES


def pkce_pair() -> tuple[str, str]:
    """A code verifier (43 to 128 unreserved characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)  # 86 characters
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclasses.dataclass
class _Callback:
    state: str
    params: dict[str, str] | None = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


def _listener(port: int, expected: _Callback, deadline: float) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the CLI prints its own progress."""

        def setup(self) -> None:
            # read by StreamRequestHandler.setup as the connection's socket timeout; never
            # past the login's own deadline
            self.timeout = max(0.01, min(CONNECTION_TIMEOUT_S, deadline - time.monotonic()))
            super().setup()

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            if parts.path != "/callback":
                self.send_error(404)
                return
            params = dict(urllib.parse.parse_qsl(parts.query))
            if params.get("state") != expected.state:
                message, status = "This answer is not for the login in progress.", 400
            else:
                expected.params = params
                expected.done.set()
                failed = "error" in params
                message = "Login failed." if failed else "Logged in to tinyllama-ops."
                status = 400 if failed else 200
            body = _PAGE.format(message=message).encode()
            self.send_response(status)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return http.server.HTTPServer(("127.0.0.1", port), Handler)


def _bind(
    ports: Sequence[int], expected: _Callback, deadline: float
) -> tuple[http.server.HTTPServer, int]:
    for port in random.sample(list(ports), len(ports)):
        try:
            return _listener(port, expected, deadline), port
        except OSError:
            continue
    raise LoginError(
        f"none of the registered callback ports ({', '.join(map(str, ports))}) is free on "
        "127.0.0.1: close what uses them, or register others (auth_callback_ports)"
    )


def authorize_url(ui: HostedUi, redirect_uri: str, state: str, challenge: str) -> str:
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": ui.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(ui.scopes),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{ui.base_url.rstrip('/')}/oauth2/authorize?{query}"


def _exchange(ui: HostedUi, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
    form = urllib.parse.urlencode(
        {
            "grant_type": "authorization_code",
            "client_id": ui.client_id,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the configured hosted UI
        f"{ui.base_url.rstrip('/')}/oauth2/token",
        data=form,
        headers={"content-type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
            tokens = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise LoginError(f"the token endpoint refused the code ({exc.code}): {detail}") from None
    except (OSError, ValueError) as exc:
        raise LoginError(f"the token endpoint could not be reached: {exc}") from None
    if not isinstance(tokens, dict) or "id_token" not in tokens:
        raise LoginError("the token endpoint answered without an id_token")
    return tokens


def login(
    ui: HostedUi,
    *,
    open_url: Callable[[str], Any] | None = None,
    announce: Callable[[str], Any] = lambda _: None,
    timeout: float = CALLBACK_TIMEOUT_S,
) -> dict[str, Any]:
    """Run the flow; return the token endpoint's answer (`id_token`, `access_token`, …)."""
    if open_url is None:
        import webbrowser

        open_url = webbrowser.open
    verifier, challenge = pkce_pair()
    expected = _Callback(state=secrets.token_urlsafe(16))
    deadline = time.monotonic() + timeout
    server, port = _bind(ui.callback_ports, expected, deadline)
    redirect_uri = f"http://127.0.0.1:{port}/callback"
    url = authorize_url(ui, redirect_uri, expected.state, challenge)
    server.timeout = 0.2
    try:
        announce(f"Opening the login page (waiting up to {timeout:g} s):\n  {url}")
        threading.Thread(target=open_url, args=(url,), daemon=True).start()
        while not expected.done.is_set() and time.monotonic() < deadline:
            server.handle_request()
    finally:
        server.server_close()
    if expected.params is None:
        raise LoginError(
            f"no answer from the login page within {timeout:g} s: run `tlops login` again"
        )
    if "error" in expected.params:
        reason = expected.params.get("error_description") or expected.params["error"]
        raise LoginError(f"the login was refused: {reason}")
    code = expected.params.get("code")
    if not code:
        raise LoginError("the login page came back without a code")
    return _exchange(ui, code, redirect_uri, verifier)

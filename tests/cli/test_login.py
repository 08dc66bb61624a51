"""`tlops login` against a double of the hosted UI: PKCE S256, the loopback callback, failures."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from tests.doubles.hosted_ui import HostedUiDouble
from tests.doubles.tokens import AUDIENCE
from tests.support.gateway_fixtures import *  # noqa: F403 - the gateway fixtures
from tests.support.gateway_fixtures import jwt_claims
from tlops.cli import login
from tlops.local.services import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def ports() -> list[int]:
    return [free_port(), free_port()]


@pytest.fixture
def hosted(keyset, ports) -> Iterator[HostedUiDouble]:
    with HostedUiDouble(keyset, client_id=AUDIENCE, callback_ports=ports) as double:
        yield double


def ui_for(hosted: HostedUiDouble, ports: list[int]) -> login.HostedUi:
    return login.HostedUi(base_url=hosted.url, client_id=AUDIENCE, callback_ports=ports)


def test_pkce_pair_is_s256_of_a_long_random_verifier():
    verifier, challenge = login.pkce_pair()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert login.pkce_pair()[0] != verifier


def test_login_returns_an_id_token_through_the_loopback_callback(hosted, ports):
    opened: list[str] = []

    def browser(url: str) -> None:
        opened.append(url)
        hosted.browser(url)

    tokens = login.login(ui_for(hosted, ports), open_url=browser, timeout=10)
    claims = jwt_claims(tokens["id_token"])
    assert (claims["sub"], claims["aud"], claims["token_use"]) == ("hosted-user", AUDIENCE, "id")
    [url] = opened
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] in {f"http://127.0.0.1:{p}/callback" for p in ports}
    assert query["scope"] == "openid email profile"
    # the listener is closed once the login is over
    port = int(urllib.parse.urlsplit(query["redirect_uri"]).port)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_no_answer_within_the_timeout_is_a_clear_error(hosted, ports):
    with pytest.raises(login.LoginError, match=r"no answer from the login page within 0.5 s"):
        login.login(ui_for(hosted, ports), open_url=lambda _: None, timeout=0.5)


def test_a_refused_login_says_so(hosted, ports):
    hosted.deny = True
    with pytest.raises(login.LoginError, match="refused: access_denied"):
        login.login(ui_for(hosted, ports), open_url=hosted.browser, timeout=10)


def test_a_callback_with_another_state_is_ignored(hosted, ports):
    """A forged redirect (wrong state) does not end the login; the real one still works."""

    def forger_then_browser(url: str) -> None:
        redirect = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["redirect_uri"]
        try:
            urllib.request.urlopen(f"{redirect}?code=stolen&state=forged", timeout=5)
        except urllib.error.HTTPError as exc:
            assert exc.code == 400
        hosted.browser(url)

    tokens = login.login(ui_for(hosted, ports), open_url=forger_then_browser, timeout=10)
    assert jwt_claims(tokens["id_token"])["sub"] == "hosted-user"


def _redirect_port(url: str) -> int:
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    return int(urllib.parse.urlsplit(query["redirect_uri"]).port)


# How long a login thread may run before the test calls it hung: far past any deadline the
# tests set, so a busy machine cannot fail them; what ended a login is read from its outcome.
HUNG_S = 60


def _in_thread(run) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["tokens"] = run()
        except login.LoginError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_a_silent_connection_does_not_hold_the_callback_up(hosted, ports):
    """A browser opens connections it never uses (preconnects); one that sends nothing is
    dropped, and the real callback behind it still completes the login in time."""
    silent: list[socket.socket] = []

    def preconnect_then_browser(url: str) -> None:
        silent.append(socket.create_connection(("127.0.0.1", _redirect_port(url))))
        hosted.browser(url)

    try:
        thread, outcome = _in_thread(
            lambda: login.login(ui_for(hosted, ports), open_url=preconnect_then_browser, timeout=6)
        )
        thread.join(timeout=HUNG_S)
        assert not thread.is_alive(), "the login hung past its deadline"
        assert "error" not in outcome, outcome  # done before its own 6 s deadline
        assert jwt_claims(outcome["tokens"]["id_token"])["sub"] == "hosted-user"
    finally:
        for sock in silent:
            sock.close()


def test_a_silent_connection_cannot_keep_the_listener_past_its_deadline(hosted, ports):
    silent: list[socket.socket] = []

    def preconnect_only(url: str) -> None:
        silent.append(socket.create_connection(("127.0.0.1", _redirect_port(url))))

    try:
        thread, outcome = _in_thread(
            lambda: login.login(ui_for(hosted, ports), open_url=preconnect_only, timeout=1.5)
        )
        thread.join(timeout=HUNG_S)
        assert not thread.is_alive(), "the login hung past its deadline"
        assert "no answer from the login page within 1.5 s" in str(outcome["error"])
    finally:
        for sock in silent:
            sock.close()


def test_a_wrong_verifier_is_refused_by_the_token_endpoint(hosted, ports, monkeypatch):
    real = login.pkce_pair
    monkeypatch.setattr(login, "pkce_pair", lambda: (real()[0], real()[1]))  # mismatched pair
    with pytest.raises(login.LoginError, match=r"refused the code .*code_verifier"):
        login.login(ui_for(hosted, ports), open_url=hosted.browser, timeout=10)


def test_all_callback_ports_taken_names_them(hosted, ports):
    holders = []
    for port in ports:
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        holders.append(holder)
    try:
        with pytest.raises(login.LoginError, match=rf"{ports[0]}.*auth_callback_ports"):
            login.login(ui_for(hosted, ports), open_url=hosted.browser, timeout=1)
    finally:
        for holder in holders:
            holder.close()


def test_an_unreachable_token_endpoint_is_a_clear_error(hosted, ports):
    """The login page answers, the token endpoint does not: the base URL given to the CLI is a
    dead port, and the 'browser' takes the authorize step to the double itself."""
    dead = f"http://127.0.0.1:{free_port()}"
    ui = login.HostedUi(base_url=dead, client_id=AUDIENCE, callback_ports=ports)
    with pytest.raises(login.LoginError, match="token endpoint could not be reached"):
        login.login(
            ui, open_url=lambda url: hosted.browser(url.replace(dead, hosted.url)), timeout=10
        )


# --- the CLI's client logs in again when a token is refused --------------------------------
def test_a_refused_token_is_renewed_once_through_the_login(hosted, ports, gateway, node_alive):
    """The first token the hosted UI issues has expired already; the gateway refuses it, the
    client logs in again and the same request then goes through."""
    from tlops.cli.client import Api, TokenSource

    hosted.token_claims = [{"exp": int(time.time()) - 60}]
    tokens = TokenSource(
        fetch=lambda: login.login(ui_for(hosted, ports), open_url=hosted.browser)["id_token"]
    )
    api = Api(gateway.url, tokens)
    accepted = api.submit({"prompt": "hello"})
    assert accepted["status"] == "queued"
    assert hosted.issued == 2
    assert api.job(accepted["id"])["status"] == "queued"
    assert hosted.issued == 2  # the renewed token is kept


def test_a_fixed_token_is_not_renewed(gateway, keyset):
    from tlops.cli.client import Api, ApiError, TokenSource

    api = Api(gateway.url, TokenSource(token=keyset.token(exp=int(time.time()) - 60)))
    with pytest.raises(ApiError, match="tlops login"):
        api.submit({"prompt": "hello"})

"""The CLI's API client over real HTTP: the token goes only over https or to loopback, never
follows a redirect, and results are read only from https URLs (or loopback http, the
stand-in's)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tlops.cli import client, main
from tlops.cli.client import Api, ApiError, TokenSource
from tlops.cli.exits import ExitCode
from tlops.cli.session import CliError

pytestmark = pytest.mark.integration


class Recorder:
    """A loopback server that records the headers of each request and answers with
    `status`, a `location` and `body`."""

    def __init__(self, status: int = 200, location: str = "", body: Any = None):
        self.status, self.location, self.body = status, location, body
        self.seen: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.seen.append({k.lower(): v for k, v in self.headers.items()})
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                data = json.dumps(owner.body).encode()
                self.send_response(owner.status)
                if owner.location:
                    self.send_header("location", owner.location)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    """An "elsewhere" server, and an API that redirects every request to it."""
    elsewhere = Recorder(body={"status": "queued", "id": "stolen"})
    api = Recorder(status=307, location=elsewhere.url + "/collect")
    yield api, elsewhere
    api.close()
    elsewhere.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_an_api_redirect_is_refused_and_the_token_stays_home(servers, status):
    api_server, elsewhere = servers
    api_server.status = status
    api = Api(api_server.url, TokenSource(token="secret-token"))
    with pytest.raises(ApiError, match=r"redirected POST /infer to http://127\.0\.0\.1") as refused:
        api.submit({"prompt": "hello"})
    assert refused.value.status == status
    assert api_server.seen[0]["authorization"] == "Bearer secret-token"
    assert elsewhere.seen == []  # nothing went there, the token least of all


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirected_get_is_refused_too(servers, status):
    """urllib follows any redirect of a GET, copying Authorization along."""
    api_server, elsewhere = servers
    api_server.status = status
    api = Api(api_server.url, TokenSource(token="secret-token"))
    with pytest.raises(ApiError, match="not followed"):
        api.job("8b0c2b1e-3c5d-4e6f-8a7b-9c0d1e2f3a4b")
    assert elsewhere.seen == []


def test_a_result_url_may_redirect_but_never_to_plain_http_elsewhere(servers):
    api_server, elsewhere = servers
    # loopback to loopback (the stand-in): followed
    assert client.fetch_url(api_server.url + "/result") == {"status": "queued", "id": "stolen"}
    assert len(elsewhere.seen) == 1
    # to a non-loopback http URL: refused
    api_server.location = "http://example.com/result.json"
    with pytest.raises(ApiError, match="not an https URL"):
        client.fetch_url(api_server.url + "/result")


@pytest.mark.parametrize(
    "url",
    [
        "http://replies.s3.amazonaws.com/x.json",
        "http://10.0.0.5/x.json",
        "ftp://127.0.0.1/x.json",
        "file:///etc/passwd",
        "x.json",
    ],
)
def test_result_urls_that_are_not_https_are_refused(url):
    with pytest.raises(ApiError, match="not an https URL"):
        client.fetch_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://replies.s3.eu-west-1.amazonaws.com/a/b.json?X-Amz-Signature=x",
        "http://127.0.0.1:5055/replies/a.json",
        "http://localhost:5055/replies/a.json",
        "http://[::1]:5055/replies/a.json",
    ],
)
def test_https_and_loopback_result_urls_pass_the_check(url):
    client.check_result_url(url)


# --- the token goes over https, or to loopback only --------------------------------------
PLAIN_HTTP_ELSEWHERE = [
    "http://abc123.execute-api.eu-west-1.amazonaws.com",
    "http://10.0.0.5:8080",
    "http://[2001:db8::1]:8080",
    "http://127.0.0.1.example.com",  # a name that starts like loopback is a name
    "HTTP://api.example.com/",
    "ftp://127.0.0.1",
]


@pytest.mark.parametrize("url", PLAIN_HTTP_ELSEWHERE)
def test_the_token_is_not_sent_over_plain_http_to_a_host_that_is_not_loopback(url):
    fetched: list[str] = []

    def fetch() -> str:
        fetched.append("login")
        return "secret-token"

    with pytest.raises(CliError) as refused:
        Api(url, TokenSource(fetch=fetch)).submit({"prompt": "hello"})
    message = str(refused.value)
    assert url in message
    assert "https" in message and "loopback" in message
    assert fetched == []  # not even a login was started for it


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8787", "http://127.8.9.10:8787", "http://localhost:8787",
     "http://[::1]:8787", "https://abc123.execute-api.eu-west-1.amazonaws.com"],
)  # fmt: skip
def test_https_and_loopback_api_urls_may_carry_the_token(url):
    """The local stack's gateway listens on loopback over plain http."""
    client.check_api_url(url)


def test_a_loopback_api_over_http_gets_the_token():
    server = Recorder(status=202, body={"status": "queued", "id": "j"})
    try:
        port = server.server.server_address[1]
        api = Api(f"http://localhost:{port}", TokenSource(token="secret-token"))
        assert api.submit({"prompt": "hello"}) == {"status": "queued", "id": "j"}
        assert server.seen[0]["authorization"] == "Bearer secret-token"
    finally:
        server.close()


def test_the_cli_refuses_a_plain_http_api_with_a_setup_error(capsys):
    url = "http://api.example.com"
    code = main(["infer", "hello", "--api-url", url, "--token", "secret-token"])
    assert code == ExitCode.SETUP
    err = capsys.readouterr().err
    assert f"refusing to send the token to {url}" in err
    assert "Traceback" not in err


# --- an API that cannot be reached says what to do next (issue 22) -------------------
def closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_refused_local_api_says_to_start_the_local_stack():
    api = Api(f"http://127.0.0.1:{closed_loopback_port()}", TokenSource(token="t"), timeout=2)
    with pytest.raises(ApiError) as refused:
        api.request("GET", "/status")
    assert refused.value.status == 0
    assert "nothing listens there" in str(refused.value)
    assert "tlops local up" in str(refused.value)


def test_a_silent_api_says_how_long_it_waited():
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        api = Api(f"http://127.0.0.1:{silent.getsockname()[1]}", TokenSource(token="t"),
                  timeout=0.3)  # fmt: skip
        with pytest.raises(ApiError) as waited:
            api.request("GET", "/status")
    assert "no answer within 0.3 s" in str(waited.value)


def test_a_name_that_does_not_resolve_is_named(monkeypatch):
    def no_such_name(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    api = Api("https://api.example.invalid", TokenSource(token="t"), timeout=2)
    with pytest.raises(ApiError) as unresolved:
        api.request("GET", "/status")
    assert "'api.example.invalid' does not resolve" in str(unresolved.value)
    assert "TL_API_URL" in str(unresolved.value)

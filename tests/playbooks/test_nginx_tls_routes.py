"""The nginx_tls role's configuration, rendered from its template and run by the real nginx,
with a small echo server in vLLM's place: only the routes it names reach vLLM, each only with
a bearer key, everything else is refused at nginx (issue 20, item 1).

The template is rendered here with the role's defaults and vars (as Ansible's template module
renders it: trim_blocks), so this runs in seconds; the whole role under supervisord is
tests/playbooks/test_node_roles.py (the slow tier) and molecule/nginx_tls.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from tlops.local.services import free_port

pytestmark = pytest.mark.integration

ROLE = Path(__file__).resolve().parents[2] / "roles" / "nginx_tls"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TOKEN = "a-test-key-handed-to-the-stand-in-0123456789"


class Echo:
    """vLLM's stand-in: answers 200 with what it was asked, and keeps every request."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                owner.seen.append(
                    {"method": self.command, "path": self.path,
                     "authorization": self.headers.get("authorization"),
                     "body": self.rfile.read(length).decode()}
                )  # fmt: skip
                body = json.dumps({"echo": self.path}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def role_variables(overrides: dict[str, Any]) -> dict[str, Any]:
    """The role's defaults and vars with `overrides`, their own templates rendered."""
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values |= yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    values |= overrides
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    for _ in range(3):  # a value may name another
        values = {
            name: env.from_string(value).render(values)
            if isinstance(value, str) and "{{" in value and not name.startswith("_nginx_tls_op")
            else value
            for name, value in values.items()
        }
    return values


def render(values: dict[str, Any]) -> str:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True
    )
    template = env.from_string((ROLE / "templates" / "nginx.conf.j2").read_text())
    return template.render({**values, "ansible_managed": "rendered by a test"})


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"nginx did not listen on {port}")


@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nginx(tmp_path_factory, echo) -> Iterator[int]:
    base = tmp_path_factory.mktemp("nginx")
    for folder in ("run", "log"):
        (base / folder).mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(base / "tls.key"), "-out", str(base / "tls.crt"),
         "-days", "1", "-subj", "/CN=tinyllama-node"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    values = role_variables(
        {
            "nginx_tls_user": "",
            "nginx_tls_listen_address": "127.0.0.1",
            "nginx_tls_https_port": port,
            "nginx_tls_http_port": 0,
            "nginx_tls_upstream": f"http://127.0.0.1:{echo.port}",
            "nginx_tls_config_dir": str(base),
            "nginx_tls_run_dir": str(base / "run"),
            "nginx_tls_log_dir": str(base / "log"),
            "nginx_tls_certificate_file": str(base / "tls.crt"),
            "nginx_tls_key_file": str(base / "tls.key"),
            # one a second, and a burst that the tests before the flood stay within
            "nginx_tls_rate_limit_per_s": 1,
            "nginx_tls_rate_limit_burst": 40,
        }
    )
    config = base / "nginx.conf"
    config.write_text(render(values))
    command = [NGINX, "-e", "stderr", "-p", str(base), "-c", str(config)]
    checked = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def call(port: int, method: str, path: str, token: str | None = None) -> tuple[int, str]:
    body = json.dumps({"model": "m", "prompt": "hi"}).encode() if method == "POST" else None
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}{path}", data=body, method=method, headers=headers
    )
    context = ssl._create_unverified_context()  # the test's own self-signed certificate
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def reached(echo: Echo, path: str) -> list[dict[str, Any]]:
    return [seen for seen in echo.seen if seen["path"].split("?")[0] == path]


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_a_completion_without_a_token_is_refused_before_vllm(nginx, echo, path):
    status, _ = call(nginx, "POST", path)
    assert status in (401, 403)
    assert reached(echo, path) == []


def test_a_token_that_is_not_a_bearer_one_is_refused_too(nginx, echo):
    request = urllib.request.Request(
        f"https://127.0.0.1:{nginx}/v1/models", headers={"authorization": "Basic dTpw"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10, context=ssl._create_unverified_context())
    assert refused.value.code in (401, 403)
    assert reached(echo, "/v1/models") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/metrics"), ("POST", "/tokenize"), ("POST", "/v1/load_lora_adapter"),
     ("GET", "/"), ("GET", "/v1/completions/../../metrics"), ("GET", "/v2/models"),
     ("POST", "/v1/completions/x")],
)  # fmt: skip
def test_every_other_path_is_forbidden_even_with_a_token(nginx, echo, method, path):
    status, _ = call(nginx, method, path, token=TOKEN)
    assert status == 403
    assert not any(
        seen["path"].startswith(("/metrics", "/tokenize", "/v1/load", "/v2", "/v1/completions/"))
        or seen["path"] == "/"
        for seen in echo.seen
    )


def test_with_the_token_a_completion_reaches_vllm_with_its_authorization(nginx, echo):
    status, body = call(nginx, "POST", "/v1/completions?stream=false", token=TOKEN)
    assert status == 200 and json.loads(body) == {"echo": "/v1/completions?stream=false"}
    [seen] = reached(echo, "/v1/completions")
    assert seen["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(seen["body"])["prompt"] == "hi"
    status, _ = call(nginx, "GET", "/v1/models", token=TOKEN)
    assert status == 200 and reached(echo, "/v1/models")[0]["authorization"] == f"Bearer {TOKEN}"


def test_health_answers_without_a_token_for_a_load_balancer(nginx, echo):
    assert call(nginx, "GET", "/health")[0] == 200


def test_a_flood_from_one_address_is_answered_429(nginx):
    """limit_req per client address: far more than the rate and the burst, some refused."""
    statuses = [call(nginx, "GET", "/health")[0] for _ in range(100)]
    assert 429 in statuses

"""The node roles for real on this machine: supervisord, nginx_tls, watcher, idle_watchdog.

One converge (then a second, which must change nothing) of the roles as the local node
applies them, under a prefix in a temporary directory, with vLLM replaced by a small
OpenAI-shaped server that can stream (vLLM itself is exercised by the local stack's cold
boot). What the tests look at is what a client and an operator would: TLS versions offered
and refused, the redirect of plain HTTP, a streamed answer passed through unbuffered,
supervisord's programs, the environment files and what a killed watcher does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tlops import contract
from tlops.contract import boot as boot_record
from tlops.local import supervisor
from tlops.local.imds import ImdsDouble
from tlops.local.services import free_port
from tlops.node import boot, settings

# Two converges of four roles (about two minutes): the slow tier, `make test-slow`.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.long_pole(minutes=3)]

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")
ROLES = ["supervisor", "nginx_tls", "watcher", "idle_watchdog"]


class Upstream:
    """What nginx proxies to and the watcher and boot reporter call, in vLLM's place:
    `/v1/completions` answers at once, or, with `"stream": true`, sends one event, waits
    for `release`, then sends the rest."""

    def __init__(self) -> None:
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = b'{"data": [{"id": "stand-in"}]}' if self.path == "/v1/models" else b"{}"
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if not payload.get("stream"):
                    body = json.dumps(
                        {"choices": [{"text": " hi"}], "model": "stand-in",
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
                    ).encode()  # fmt: skip
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for event in (b"data: first\n\n", None, b"data: [DONE]\n\n"):
                    if event is None:
                        owner.release.wait(30)
                        continue
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def run_roles(playbook: Path, extra: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.timer",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
    }
    done = subprocess.run(
        [str(PLAYBOOK_BIN), str(playbook), "-i", "inventories/local", "-e", f"@{extra}"],
        cwd=REPO, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        check=False, timeout=600,
    )  # fmt: skip
    start = done.stdout.find("{")
    report = json.JSONDecoder().raw_decode(done.stdout, start)[0] if start >= 0 else {}
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return report


def changed_tasks(report: dict[str, Any]) -> list[str]:
    return [
        task["task"]["name"]
        for play in report["plays"]
        for task in play["tasks"]
        if task["hosts"].get("local-node", {}).get("changed")
    ]


class Node:
    def __init__(self, prefix: Path, ports: dict[str, int], redis_url: str, record: Path):
        self.prefix, self.ports, self.redis_url, self.record = prefix, ports, redis_url, record

    @property
    def config(self) -> Path:
        return self.prefix / "etc" / "supervisord.conf"

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            ["supervisorctl", "-c", str(self.config), *args],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return done.stdout

    def env_names(self, name: str) -> set[str]:
        lines = (self.prefix / "etc" / f"{name}.env").read_text().splitlines()
        return {line.partition("=")[0] for line in lines if line and not line.startswith("#")}


def wait_for(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if result := check():
                return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def node(tmp_path_factory, redis_server) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("node")
    prefix = base / "node"
    upstream = Upstream()
    imds = ImdsDouble("i-0123456789abcdef0").start()
    ports = {"tls": free_port(), "http": free_port()}
    record = base / "watchdog-standin.json"
    redis_url = redis_server.url
    extra = {
        "node_prefix": str(prefix),
        "node_checkout": str(REPO),
        "node_imds_url": imds.url,
        "node_redis_url": redis_url,
        "vllm_port": upstream.port,
        "vllm_served_model_name": "stand-in",
        "nginx_tls_https_port": ports["tls"],
        "nginx_tls_http_port": ports["http"],
        "supervisor_socket": f"/tmp/tlops-test-{os.getpid()}.sock",
        "idle_watchdog_module": "tests.doubles.watchdog_standin",
        "idle_watchdog_pythonpath": f"{REPO / 'src'}:{REPO}",
        "idle_watchdog_environment": {"TL_STANDIN_RECORD": str(record)},
        "watcher_boot_timeout_s": 120,
    }
    extra_file = base / "vars.json"
    extra_file.write_text(json.dumps(extra))
    playbook = base / "roles.yml"
    playbook.write_text(
        yaml.safe_dump(
            [{"name": "Apply node roles", "hosts": "node", "gather_facts": True,
              "gather_subset": ["min"], "roles": ROLES}]
        )
    )  # fmt: skip
    running = Node(prefix, ports, redis_url, record)
    try:
        running.first = run_roles(playbook, extra_file)
        running.cert_mtime = (prefix / "etc" / "nginx" / "tls.crt").stat().st_mtime_ns
        running.second = run_roles(playbook, extra_file)
        running.upstream = upstream
        yield running
    finally:
        running.ctl("shutdown")
        upstream.stop()
        imds.stop()


# --- the play -----------------------------------------------------------------------------
def test_a_second_run_changes_nothing(node):
    assert changed_tasks(node.first)
    assert changed_tasks(node.second) == []


def test_the_self_signed_certificate_is_generated_once(node):
    assert (node.prefix / "etc/nginx/tls.crt").stat().st_mtime_ns == node.cert_mtime
    assert (node.prefix / "etc/nginx/tls.key").stat().st_mode & 0o777 == 0o600


def test_supervisord_runs_every_program(node):
    states = supervisor.supervisor_states(node.config)
    assert {states[p] for p in ("nginx", "watcher", "idle-watchdog")} == {"RUNNING"}
    assert states["boot"] in ("RUNNING", "EXITED")  # once per boot; done once ready


# --- nginx_tls ----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _old_tls_versions_are_meant(recwarn):
    """ssl warns that TLS 1.0 and 1.1 are deprecated: offering them is the point here."""


def tls_version(port: int, version: ssl.TLSVersion) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer it; the server must refuse
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return tls.version()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_12_and_13_are_served(node, version):
    assert tls_version(node.ports["tls"], version) == version.name.replace("v", "v").replace(
        "_", "."
    )


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_before_12_is_refused(node, version):
    with pytest.raises(ssl.SSLError):
        tls_version(node.ports["tls"], version)


def test_plain_http_is_redirected_to_https(node):
    request = urllib.request.Request(f"http://127.0.0.1:{node.ports['http']}/v1/models")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.build_opener(NoRedirect).open(request, timeout=5)
    assert answer.value.code == 301
    location = answer.value.headers["location"]
    assert location == f"https://127.0.0.1:{node.ports['tls']}/v1/models"


def test_plain_http_on_the_tls_port_is_not_served(node):
    with socket.create_connection(("127.0.0.1", node.ports["tls"]), timeout=5) as raw:
        raw.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400")  # nginx: plain HTTP sent to an HTTPS port
    assert b"stand-in" not in answer


def test_a_streamed_answer_passes_through_unbuffered(node):
    """The first event reaches the client while the upstream still holds the rest back:
    a buffering proxy would keep it until the answer ended (and this read would time out)."""
    context = ssl._create_unverified_context()  # the node's self-signed certificate
    body = json.dumps({"model": "stand-in", "prompt": "hi", "stream": True}).encode()
    key = (node.prefix.parent / "node-inference.key").read_text().strip()  # inventories/local
    request = urllib.request.Request(
        f"https://127.0.0.1:{node.ports['tls']}/v1/completions",
        data=body,
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    node.upstream.release.clear()
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        assert answer.headers["content-type"] == "text/event-stream"
        first = answer.readline()
        assert first == b"data: first\n"
        node.upstream.release.set()
        assert b"[DONE]" in answer.read()


# --- watcher and boot reporter -------------------------------------------------------------
def test_the_environment_files_are_the_programs_own_and_private(node):
    for name in ("watcher", "boot", "idle-watchdog", "vllm"):
        path = node.prefix / "etc" / f"{name}.env"
        if name == "vllm":
            assert not path.exists()  # the vllm role is not in this play
            continue
        assert path.stat().st_mode & 0o777 == 0o600, name
    watcher_names = {field.metadata["env"] for field in settings.OPTIONS}
    boot_names = {name for name, _ in boot.VARIABLES.values()}
    common = {"TL_AWS_ENDPOINT_URL", "TL_AWS_REGION", "AWS_DEFAULT_REGION", "PYTHONPATH",
              "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}  # fmt: skip
    assert node.env_names("watcher") - common <= watcher_names
    assert {"TL_REDIS_URL", "TL_INFERENCE_URL", "TL_MODEL"} <= node.env_names("watcher")
    assert node.env_names("boot") - common <= boot_names
    # nothing of the environment is in supervisord's own configuration
    program = (node.prefix / "etc/supervisor.d/watcher.conf").read_text()
    assert node.redis_url not in program and "standin-secret" not in program


def test_the_boot_reporter_reached_ready(node, redis_server):
    client = redis_server.client()
    record = wait_for(
        lambda: (
            (r := client.hgetall(contract.NODE_BOOT_KEY)).get(boot_record.PHASE) == "ready" and r
        ),
        "the boot reporter",
    )
    assert record[boot_record.INSTANCE] == "i-0123456789abcdef0"  # from the IMDSv2 double
    assert client.exists(contract.HEARTBEAT_KEY)  # the watcher under supervisord is up


def test_a_killed_watcher_is_restarted(node):
    pid = int(node.ctl("pid", "watcher").strip())
    os.kill(pid, signal.SIGKILL)
    restarted = wait_for(
        lambda: (p := node.ctl("pid", "watcher").strip()).isdigit() and int(p) != pid and p,
        "supervisord to restart the watcher",
    )
    assert int(restarted) != pid


# --- idle_watchdog ------------------------------------------------------------------------
def test_the_watchdog_runs_under_supervisord_with_its_settings(node):
    seen = wait_for(lambda: json.loads(node.record.read_text()), "the watchdog stand-in")
    assert seen["argv"] == ["run"]
    assert {"TL_REDIS_URL", "TL_WATCHER_STATE_DIR", "TL_WATCHDOG_IDLE_MINUTES",
            "TL_WATCHDOG_IMDS_URL", "TL_PROJECT", "TL_AWS_REGION"} <= set(seen["env"])  # fmt: skip
    from tlops.node import watchdog

    names = set(watchdog.environment(redis_url="redis://x").keys())
    assert set(seen["env"]) - {"TL_AWS_ENDPOINT_URL", "TL_AWS_REGION", "TL_STANDIN_RECORD"} <= (
        names | {"TL_WATCHER_STATE_DIR", "TL_WATCHDOG_IDLE_MINUTES", "TL_WATCHDOG_IMDS_URL",
                 "TL_PROJECT", "TL_REDIS_URL"}
    )  # fmt: skip

"""nginx_tls on a node: TLS 1.2 and 1.3 only, plain HTTP refused, vLLM behind it.

The TLS checks run from the controller against the container's own address, as
a client off the node would connect, with sslyze: it carries an OpenSSL of its
own that still speaks SSL 3.0 to TLS 1.1, so "refused" means the server refused
(Debian's own OpenSSL client would not even offer TLS 1.1). A control server
in the container that does accept TLS 1.1 shows the scan would see it.
"""

from __future__ import annotations

import socket
import ssl

import pytest
from sslyze import (
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)

CONFIG = "/etc/tlops/nginx/nginx.conf"
CERTIFICATE = "/etc/tlops/nginx/tls.crt"
KEY = "/etc/tlops/nginx/tls.key"
SERVER_NAME = "tinyllama-node"  # nginx_tls_self_signed_common_name's default
UPSTREAM_BODY = "upstream ok"  # what prepare.yml's stand-in for vLLM serves at /health

PROTOCOLS = {
    "SSL 2.0": ScanCommand.SSL_2_0_CIPHER_SUITES,
    "SSL 3.0": ScanCommand.SSL_3_0_CIPHER_SUITES,
    "TLS 1.0": ScanCommand.TLS_1_0_CIPHER_SUITES,
    "TLS 1.1": ScanCommand.TLS_1_1_CIPHER_SUITES,
    "TLS 1.2": ScanCommand.TLS_1_2_CIPHER_SUITES,
    "TLS 1.3": ScanCommand.TLS_1_3_CIPHER_SUITES,
}


def scan(address: str, port: int) -> dict[str, list[str]]:
    """The cipher suites the server accepts, per protocol version."""
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=SERVER_NAME, port=port, ip_address=address),
        scan_commands=set(PROTOCOLS.values()),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = scanner.get_results()
    assert result.scan_status is ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    accepted = {}
    for name, command in PROTOCOLS.items():
        attempt = getattr(result.scan_result, command.value)
        assert attempt.status is ScanCommandAttemptStatusEnum.COMPLETED, (name, attempt.error_trace)
        accepted[name] = [
            suite.cipher_suite.name for suite in attempt.result.accepted_cipher_suites
        ]
    return accepted


def exchange(sock: socket.socket, request: bytes) -> str:
    sock.sendall(request)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("latin-1")


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n\r\n".encode()


@pytest.fixture(scope="module")
def accepted(address: str) -> dict[str, list[str]]:
    return scan(address, 443)


def test_nginx_runs_under_the_nodes_supervisord(host, supervisor):
    assert supervisor().get("nginx") == "RUNNING"
    assert host.run(f"nginx -t -q -c {CONFIG}").rc == 0
    # the distribution's own nginx.service would listen on 80 with its default site
    distro = host.service("nginx")
    assert not distro.is_enabled
    assert not distro.is_running


def test_it_listens_for_tls_and_plain_http_on_every_address(host):
    assert host.socket("tcp://0.0.0.0:443").is_listening
    assert host.socket("tcp://0.0.0.0:80").is_listening


@pytest.mark.parametrize("version", ["TLS 1.2", "TLS 1.3"])
def test_tls_1_2_and_1_3_are_accepted(accepted, version):
    assert accepted[version], f"{version} refused; accepted: {accepted}"


@pytest.mark.parametrize("version", ["SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1"])
def test_older_protocols_are_refused(accepted, version):
    assert accepted[version] == [], f"{version} accepted with {accepted[version]}"


def test_tls_1_2_offers_forward_secret_aead_suites_only(accepted):
    for suite in accepted["TLS 1.2"]:
        assert suite.startswith("TLS_ECDHE_"), suite
        assert "_GCM_" in suite or "CHACHA20_POLY1305" in suite, suite


def test_the_scan_sees_tls_1_1_where_a_server_accepts_it(host, address):
    # A control, so "refused" above is the server's doing: the same certificate served by
    # OpenSSL with TLS 1.1 allowed must show up as TLS 1.1 accepted.
    unit = "tl-tls11-control"
    command = (
        f"systemd-run --unit {unit} --quiet openssl s_server -accept 4433 -www -quiet"
        f" -tls1_1 -cipher DEFAULT:@SECLEVEL=0 -cert {CERTIFICATE} -key {KEY}"
    )
    assert host.run(command).rc == 0
    try:
        assert (
            host.run("timeout 10 sh -c 'until ss -ltn | grep -q :4433; do sleep 0.2; done'").rc == 0
        )
        control = scan(address, 4433)
        assert control["TLS 1.1"], control
        assert control["TLS 1.2"] == [] and control["TLS 1.3"] == [], control
    finally:
        host.run(f"systemctl stop {unit}")


def test_https_proxies_to_the_server_behind_with_a_certificate_for_the_node(host, address):
    context = ssl.create_default_context(cadata=host.file(CERTIFICATE).content_string)
    with (
        socket.create_connection((address, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        answer = exchange(tls, get("/health"))
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), head
    assert "strict-transport-security: max-age=63072000" in head.lower()
    assert UPSTREAM_BODY in body


def test_plain_http_gets_only_a_redirect_to_https(address):
    with socket.create_connection((address, 80), timeout=10) as sock:
        answer = exchange(sock, get("/health"))
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 301"), head
    assert f"location: https://{SERVER_NAME}/health" in head.lower()
    assert UPSTREAM_BODY not in body


def test_plain_http_on_the_tls_port_is_refused(address):
    with socket.create_connection((address, 443), timeout=10) as sock:
        answer = exchange(sock, get("/health"))
    assert answer.startswith("HTTP/1.1 400"), answer[:200]
    assert UPSTREAM_BODY not in answer


def test_the_private_key_is_readable_by_root_only(host):
    key = host.file(KEY)
    assert key.user == "root"
    assert key.mode == 0o600


def over_tls(host, address: str, request: bytes) -> str:
    context = ssl.create_default_context(cadata=host.file(CERTIFICATE).content_string)
    with (
        socket.create_connection((address, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        return exchange(tls, request)


def test_an_unauthenticated_completion_is_refused_at_nginx(host, address):
    """No `Authorization: Bearer`: 401 from nginx itself, vLLM never asked (issue 20)."""
    body = b'{"model": "m", "prompt": "hi"}'
    request = (
        f"POST /v1/completions HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    head = over_tls(host, address, request).partition("\r\n")[0]
    assert head.split()[1] in ("401", "403"), head


@pytest.mark.parametrize("path", ["/metrics", "/tokenize", "/v1/load_lora_adapter", "/"])
def test_every_route_it_does_not_name_is_forbidden_even_with_a_token(host, address, path):
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n"
        "Authorization: Bearer some-token\r\n\r\n"
    ).encode()
    answer = over_tls(host, address, request)
    assert answer.startswith("HTTP/1.1 403"), answer[:200]
    assert "upstream index" not in answer  # the stand-in's / (prepare.yml) stays unreached

"""The IMDSv2 double over real HTTP: what the node's client may rely on, and its failures."""

from __future__ import annotations

import http.client
import subprocess
import sys

import pytest

from tlops.local.imds import (
    INSTANCE_ID_PATH,
    REGION_PATH,
    TOKEN_HEADER,
    TOKEN_PATH,
    TTL_HEADER,
    ImdsDouble,
)
from tlops.local.services import free_port, wait_until
from tlops.node.imds import Imds, MetadataUnavailable

pytestmark = pytest.mark.integration

NODE = "i-0123456789abcdef0"


def call(double: ImdsDouble, method: str, path: str, **headers: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", int(double.url.rsplit(":", 1)[1]), timeout=2)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.fixture
def double():
    with ImdsDouble(NODE) as server:
        yield server


def test_a_token_then_the_instance_id(double):
    status, token = call(double, "PUT", TOKEN_PATH, **{TTL_HEADER: "60"})
    assert status == 200 and len(token) > 20
    assert call(double, "GET", INSTANCE_ID_PATH, **{TOKEN_HEADER: token}) == (200, NODE)
    assert Imds(double.url).instance_id() == NODE


def test_imdsv1_and_bad_tokens_are_refused_with_401(double):
    assert call(double, "GET", INSTANCE_ID_PATH)[0] == 401
    assert call(double, "GET", INSTANCE_ID_PATH, **{TOKEN_HEADER: "made-up"})[0] == 401


def test_an_expired_token_is_refused(double):
    _, token = call(double, "PUT", TOKEN_PATH, **{TTL_HEADER: "1"})
    double.expire_tokens()
    assert call(double, "GET", INSTANCE_ID_PATH, **{TOKEN_HEADER: token})[0] == 401


@pytest.mark.parametrize("ttl", [None, "0", "21601", "soon"])
def test_a_token_needs_a_lifetime_within_the_limits(double, ttl):
    headers = {} if ttl is None else {TTL_HEADER: ttl}
    assert call(double, "PUT", TOKEN_PATH, **headers)[0] == 400


def test_a_proxied_token_request_is_forbidden(double):
    headers = {TTL_HEADER: "60", "X-Forwarded-For": "10.0.0.1"}
    assert call(double, "PUT", TOKEN_PATH, **headers)[0] == 403


def test_the_region_with_a_token_and_every_metadata_path_needs_one(double):
    _, token = call(double, "PUT", TOKEN_PATH, **{TTL_HEADER: "60"})
    assert call(double, "GET", REGION_PATH, **{TOKEN_HEADER: token}) == (200, "eu-west-1")
    # Without a token IMDS answers 401 on any metadata path, known or not (the local stack's
    # readiness probe asks /latest/meta-data/ and expects that).
    for path in (REGION_PATH, "/latest/meta-data/", "/latest/meta-data/nothing-here"):
        assert call(double, "GET", path)[0] == 401


def test_other_paths_and_methods(double):
    _, token = call(double, "PUT", TOKEN_PATH, **{TTL_HEADER: "60"})
    assert call(double, "GET", "/latest/meta-data/nothing-here", **{TOKEN_HEADER: token})[0] == 404
    assert call(double, "GET", "/latest/user-data")[0] == 404
    assert call(double, "GET", TOKEN_PATH)[0] == 405


def test_failing_and_hanging_on_request(double):
    client = Imds(double.url, timeout_s=0.3)
    double.fail(503)
    with pytest.raises(MetadataUnavailable, match="answered 503"):
        client.instance_id()
    double.recover()
    double.hang()
    with pytest.raises(MetadataUnavailable, match="timed out"):
        client.instance_id()
    assert double.requests == 2  # the hung request was received, not answered
    double.recover()
    assert client.instance_id() == NODE


def test_stopped_means_connection_refused_and_start_comes_back_on_the_same_port(double):
    url = double.url
    double.stop()
    with pytest.raises(MetadataUnavailable, match="refused"):
        Imds(url).instance_id()
    double.start()
    assert double.url == url and Imds(url).instance_id() == NODE


def test_the_instance_id_can_come_from_a_file_written_later(tmp_path):
    where = tmp_path / "instance-id"
    with ImdsDouble(instance_id_file=where) as double:
        with pytest.raises(MetadataUnavailable, match="answered 404"):
            Imds(double.url).instance_id()
        where.write_text(NODE + "\n")
        assert Imds(double.url).instance_id() == NODE
    with pytest.raises(ValueError, match="either the instance id or the file"):
        ImdsDouble(NODE, instance_id_file=where)


def test_the_client_refuses_what_is_not_an_instance_id():
    with (
        ImdsDouble("not-an-id") as double,
        pytest.raises(MetadataUnavailable, match="no instance id"),
    ):
        Imds(double.url).instance_id()


def test_the_command_line_entry_serves_until_sigterm():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tlops.local.imds", "--port", str(port), "--instance-id", NODE],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: Imds(url).instance_id() == NODE, "the IMDS double")
    finally:
        process.terminate()
        code = process.wait(timeout=15)
    assert code == 0
    assert f"IMDSv2 double on http://127.0.0.1:{port}" in (
        process.stdout.read() if process.stdout else ""
    )


def test_the_command_line_refuses_a_bad_instance_id():
    done = subprocess.run(
        [sys.executable, "-m", "tlops.local.imds", "--port", "1", "--instance-id", "web-1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--instance-id must look like i-" in done.stderr

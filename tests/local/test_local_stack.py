"""`LocalStack` with real processes on free ports: moto server, the queue agent (its
redis-server), the gateway and the relay.

Full up/down cycles cost a few seconds each, so most assertions share one
module-scoped stack; the restart and teardown checks get a cycle of their own.
These stacks leave inference out (`inference=False`), which keeps them fast; one
cycle at the end brings up the whole node part for real (node.yml configures the
local node, its agent follows the stand-in's instance) and follows a prompt
through a cold boot of the node, from the gateway to S3, then stops the node.
Every stack is brought down in a finally, so no test leaves a process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from tests.support.gateway_fixtures import ACCESS_LOG_KEYS, jwt_claims, post_json
from tests.support.stack_fixtures import new_stack, pid_gone, stack_env
from tlops import contract
from tlops.cli.playbooks import deploy_local
from tlops.common import aws
from tlops.local import users
from tlops.local.stack import (
    EDGE_SERVICES,
    SERVICE_PORT,
    LocalStack,
    StackError,
    free_port,
)

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=7)]


def gateway_access_log(stack: LocalStack) -> list[dict[str, Any]]:
    """The gateway's JSON access lines from its log file (the router's own logs are skipped)."""
    records = []
    for line in (stack.state_dir / "gateway.log").read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and set(record) == ACCESS_LOG_KEYS:
                records.append(record)
    return records


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    """A stack brought up, then deployed to with deploy.yml (as `tlops demo` does)."""
    local = new_stack(tmp_path_factory.mktemp("stack"))
    with stack_env(local):
        try:
            local.up()
            deploy_local(local)
            yield local
        finally:
            local.down()


@pytest.fixture
def redis_of(stack) -> Iterator[redis_py.Redis]:
    client = redis_py.Redis.from_url(stack.redis_url, decode_responses=True)
    yield client
    client.close()


# --- one stack, many looks ----------------------------------------------------------------
def test_up_brings_every_service_up_on_the_given_ports(stack):
    status = stack.status()
    assert set(status["services"]) == set(EDGE_SERVICES)
    for name, service in status["services"].items():
        assert service["up"], name
        assert service["pid"]
        assert service["port"] == stack.ports.get(SERVICE_PORT.get(name, ""))
    assert status["services"]["relay"]["port"] is None  # it listens on nothing
    assert status["services"]["queue"]["port"] == stack.ports["redis"]
    assert "TL_INFERENCE_URL" not in stack.env()


def test_stack_json_records_pids_and_ports_and_the_deploy_its_outputs(stack):
    state = json.loads(stack.state_file.read_text())
    assert state["ports"] == stack.ports
    assert set(state["pids"]) == set(EDGE_SERVICES)
    assert "resources" not in state  # `up` creates no AWS resources; deploy.yml does
    outputs = stack.outputs()
    assert outputs["user_pool_id"].startswith("eu-west-1_")
    assert outputs["reply_bucket"] == "tinyllama-replies-standin"  # the local inventory's suffix
    assert stack.status()["deployed"] == {
        k: outputs[k] for k in ("user_pool_id", "client_id", "reply_bucket")
    }


def test_the_deployed_resources_exist_in_the_stand_in(stack):
    outputs = stack.outputs()
    idp = aws.client("cognito-idp")
    pool = idp.describe_user_pool(UserPoolId=outputs["user_pool_id"])["UserPool"]
    assert pool["Name"] == "tinyllama-users"
    client = idp.describe_user_pool_client(
        UserPoolId=outputs["user_pool_id"], ClientId=outputs["client_id"]
    )["UserPoolClient"]
    assert client["ClientName"] == "tinyllama-cli"
    aws.client("s3").head_bucket(Bucket=outputs["reply_bucket"])
    [found] = [
        instance
        for page in aws.client("ec2").describe_instances(
            Filters=[{"Name": "tag:Role", "Values": ["gpu"]}]
        )["Reservations"]
        for instance in page["Instances"]
    ]
    tags = {t["Key"]: t["Value"] for t in found["Tags"]}
    assert (tags["Project"], tags["Role"]) == ("tinyllama", "gpu")
    assert found["InstanceType"] == "g4dn.xlarge"
    config = aws.client("lambda").get_function_configuration(
        FunctionName="tinyllama-router", Qualifier="prod"
    )
    assert config["Environment"]["Variables"]["TL_REDIS_URL"] == stack.redis_url


def test_env_names_every_endpoint(stack):
    env = stack.env()
    outputs = stack.outputs()
    assert env["TL_API_URL"] == f"http://127.0.0.1:{stack.ports['gateway']}"
    assert env["TL_AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{stack.ports['moto']}"
    assert env["TL_REDIS_URL"] == f"redis://127.0.0.1:{stack.ports['redis']}/0"
    assert env["TL_JWT_ISSUER"].endswith("/" + outputs["user_pool_id"])
    assert env["TL_JWT_AUDIENCE"] == outputs["client_id"]
    assert env["TLOPS_STATE_DIR"] == str(stack.state_dir)
    assert env["TL_JWKS_URL"].startswith(env["TL_AWS_ENDPOINT_URL"])
    with urllib.request.urlopen(env["TL_JWKS_URL"], timeout=5) as response:
        assert json.load(response)["keys"]
    with urllib.request.urlopen(env["TL_API_URL"] + "/ping", timeout=5) as response:
        assert json.load(response) == {"status": "ok"}


def test_a_stand_in_token_through_the_gateway_is_queued_in_redis(stack, redis_of):
    outputs = stack.outputs()
    token = users.id_token(
        pool_id=outputs["user_pool_id"], client_id=outputs["client_id"], username="erin"
    )
    status, headers, body = post_json(
        stack.env()["TL_API_URL"] + "/infer", {"prompt": "hello from the stack"}, token
    )
    assert status == 202, body
    assert body["status"] in ("queued", "starting")
    job = redis_of.hgetall(contract.job_key(body["id"]))
    assert job["status"] == "queued"
    assert job["sub"] == jwt_claims(token)["sub"]
    assert job["prompt"] == "hello from the stack"
    assert body["id"] in [f["id"] for _, f in redis_of.xrange(contract.JOB_STREAM)]
    if body["status"] == "starting":  # the node was stopped: the router asked control, which
        # the relay runs when the wake's request object appears in the control bucket
        deadline = time.monotonic() + 10
        while True:
            [node] = aws.client("ec2").describe_instances(
                Filters=[{"Name": "tag:Role", "Values": ["gpu"]}]
            )["Reservations"][0]["Instances"]
            if node["State"]["Name"] in ("pending", "running"):
                break
            assert time.monotonic() < deadline, "control did not start the node"
            time.sleep(0.1)
    request_id = {k.lower(): v for k, v in headers.items()}["x-request-id"]
    deadline = time.monotonic() + 5
    while not [r for r in gateway_access_log(stack) if r["requestId"] == request_id]:
        assert time.monotonic() < deadline, "no access-log line in gateway.log"
        time.sleep(0.05)
    [record] = [r for r in gateway_access_log(stack) if r["requestId"] == request_id]
    assert (record["route"], record["status"]) == ("POST /infer", 202)
    assert record["jwtSub"] == job["sub"]
    # nothing secret on disk: the token is nowhere under the state directory
    for path in stack.state_dir.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_second_up_is_harmless_and_keeps_the_processes(stack):
    before = stack.load()
    state = stack.up()
    assert state["pids"] == before["pids"]
    assert stack.outputs()["user_pool_id"]  # a second up keeps what was deployed
    assert all(s["up"] for s in stack.status()["services"].values())


def test_a_stack_object_without_ports_adopts_the_running_ones(stack):
    """`tlops local status` in another shell knows nothing but the state dir."""
    other = LocalStack(state_dir=stack.state_dir)  # default ports, inference on
    status = other.status()
    assert set(status["services"]) == set(EDGE_SERVICES)  # what was started, not its own plan
    assert {n: s["port"] for n, s in status["services"].items()} == {
        n: stack.ports.get(SERVICE_PORT.get(n, "")) for n in EDGE_SERVICES
    }
    assert all(s["up"] for s in status["services"].values())


# --- the queue agent and the relay (the last of them deletes the queue) --------------------
def _wait(check, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _answers(url: str) -> bool:
    client = redis_py.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis_py.RedisError:
        return False
    finally:
        client.close()


def _group_served(stack) -> str:
    queue = stack.status()["services"]["queue"]
    return queue["group"] if queue.get("queue") == "serving" else ""


def test_the_queue_is_the_deployed_group_served_by_the_agent(stack):
    group = _wait(lambda: _group_served(stack), "the agent never served the deployed group")
    [found] = [
        g
        for g in aws.client("elasticache").describe_replication_groups()["ReplicationGroups"]
        if g["ReplicationGroupId"] == group
    ]
    assert found["Status"] == "available" and group.startswith("tinyllama-queue-")
    redis_pid = stack.load()["pids"]["redis"]
    assert "redis-server" in Path(f"/proc/{redis_pid}/cmdline").read_bytes().decode()
    assert _answers(stack.redis_url)
    assert "redis" not in json.loads(stack.state_file.read_text())["pids"]  # the agent's, not up's


def test_a_hung_queue_is_ended_by_up_and_the_queue_answers_again(stack):
    """redis-server stopped (SIGSTOP): `up` ends it (it ignores SIGTERM while stopped) and
    the agent starts it again on the same port; the old process continued is long gone."""
    hung = stack.load()["pids"]["redis"]
    os.kill(hung, signal.SIGSTOP)
    try:
        stack.up()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)
    _wait(lambda: _answers(stack.redis_url), "the queue did not answer after up")
    assert pid_gone(hung)
    _wait(lambda: stack.load()["pids"].get("redis") not in (None, hung), "no new server recorded")


def test_a_killed_queue_comes_back_with_its_data_while_its_group_exists(stack, redis_of):
    redis_of.set("survives-a-restart", "yes")
    time.sleep(1.5)  # appendfsync everysec: on disk within a second
    killed = _wait(lambda: stack.load()["pids"].get("redis"), "no server recorded")
    os.kill(killed, signal.SIGKILL)
    assert pid_gone(killed)
    _wait(lambda: _answers(stack.redis_url), "the agent did not start the queue again")
    assert redis_py.Redis.from_url(stack.redis_url).get("survives-a-restart") == b"yes"


def test_the_relay_runs_control_once_for_each_request_in_the_control_bucket(stack):
    s3, bucket = aws.client("s3"), stack.outputs()["control_bucket"]

    def observed() -> int:
        body = s3.get_object(Bucket=bucket, Key="state.json")["Body"].read()
        return json.loads(body)["observed_ms"]

    before = observed()
    body = json.dumps({"action": "observe", "by": "a test", "at_ms": 1}).encode()
    s3.put_object(Bucket=bucket, Key="requests/observe/by-a-test.json", Body=body)
    _wait(lambda: observed() > before, "control never recorded the state for the request")
    relay = json.loads(stack.relay_state_file.read_text())
    delivered = [m for m in relay["seen"] if "requests/observe/by-a-test.json" in m]
    assert len(delivered) == 1
    # outside the notification's prefix: not delivered
    s3.put_object(Bucket=bucket, Key="elsewhere/observe.json", Body=body)
    time.sleep(1.0)
    relay = json.loads(stack.relay_state_file.read_text())
    assert not [m for m in relay["seen"] if "elsewhere/" in m]


def test_a_deleted_group_takes_the_queue_and_its_data_and_a_new_one_comes_empty(stack):
    from tlops.control import queue

    elasticache = aws.client("elasticache")
    group = _wait(lambda: _group_served(stack), "no group served")
    redis_py.Redis.from_url(stack.redis_url).set("from-the-old-queue", "1")
    assert queue.delete(elasticache, "tinyllama", "tinyllama-queue") == [group]
    _wait(lambda: not _answers(stack.redis_url), "the queue still answers after the delete")
    _wait(lambda: not (stack.state_dir / "queue" / group).exists(), "its data outlived it")
    _wait(lambda: stack.status()["services"]["queue"]["queue"] == "absent", "still serving")
    assert stack.status()["services"]["queue"]["up"]  # no group is expected, not a fault

    from tlops.control.queue import QueueSpec
    from tlops.control.wake import ensure_queue

    spec = QueueSpec(id_prefix="tinyllama-queue", subnet_group="tinyllama-queue",
                     tags={"Project": "tinyllama", "Role": "queue"})  # fmt: skip
    created, made = ensure_queue(elasticache, spec, "tinyllama")
    assert made and created["ReplicationGroupId"] != group  # a fresh id: the old one is taken
    _wait(lambda: _group_served(stack) == created["ReplicationGroupId"], "new group not served")
    assert redis_py.Redis.from_url(stack.redis_url).get("from-the-old-queue") is None


# --- restarts and teardown, on a cycle of their own ---------------------------------------
def test_kill_9_then_up_restarts_then_down_leaves_nothing(tmp_path):
    local = new_stack(tmp_path)
    with stack_env(local):
        try:
            first = local.up()
            pids = dict(first["pids"])

            # the gateway dies hard: `up` starts a new one, the rest is kept
            os.kill(pids["gateway"], signal.SIGKILL)
            assert pid_gone(pids["gateway"])
            assert not local.status()["services"]["gateway"]["up"]
            second = local.up()
            assert second["pids"]["gateway"] != pids["gateway"]
            assert {n: second["pids"][n] for n in ("moto", "queue", "relay")} == {
                n: pids[n] for n in ("moto", "queue", "relay")
            }
            assert all(s["up"] for s in local.status()["services"].values())

            # the stand-in dies: it forgets everything, so what deploy.yml wrote about it is
            # dropped, and the gateway says to deploy again
            local.outputs_file.write_text('{"user_pool_id": "eu-west-1_gone"}')
            os.kill(second["pids"]["moto"], signal.SIGKILL)
            assert pid_gone(second["pids"]["moto"])
            third = local.up()
            assert third["pids"]["queue"] == pids["queue"]
            assert "redis" not in third["pids"]  # nothing deployed: no queue group, no server
            assert third["pids"]["moto"] != second["pids"]["moto"]
            assert third["pids"]["gateway"] != second["pids"]["gateway"]
            assert pid_gone(second["pids"]["gateway"])
            assert not local.outputs_file.exists()
            answer = post_json(local.api_url + "/infer", {"prompt": "again"}, "a.b.c")
            assert answer[0] == 503
            assert "run ansible-playbook playbooks/deploy.yml" in answer[2]["message"]

            # down: every recorded process and its group is gone, and the state with it
            recorded = list(third["pids"].values())
            stopped = local.down()
            assert sorted(stopped) == sorted(EDGE_SERVICES)
            for pid in recorded:
                assert pid_gone(pid, timeout=5), f"pid {pid} survived `down`"
            assert not local.state_file.exists()
            assert not (tmp_path / "queue").exists()
            # down twice is harmless; status then says everything is down
            assert local.down() == []
            assert not any(s["up"] for s in local.status()["services"].values())
            assert local.load() == {}
        finally:
            local.down()


class _Impostor(BaseHTTPRequestHandler):
    """Answers 200 to anything, like a gateway someone else left on the port."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        """Quiet."""


def test_up_on_a_port_another_server_answers_fails_loudly(tmp_path):
    impostor = ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    local = LocalStack(
        state_dir=tmp_path,
        ports={"moto": free_port(), "redis": free_port(), "gateway": impostor.server_address[1]},
        inference=False,
    )
    with stack_env(local):
        try:
            with pytest.raises(StackError, match=r"gateway cannot start: port \d+ .* in use"):
                local.up()
        finally:
            local.down()
            impostor.shutdown()
            impostor.server_close()


def test_up_on_a_taken_port_says_so(tmp_path):
    """A port that accepts connections but never answers: `up` names the port and stops
    before starting anything there, instead of hanging."""
    with contextlib.closing(__import__("socket").socket()) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        local = LocalStack(
            state_dir=tmp_path,
            ports={"moto": port, "redis": free_port(), "gateway": free_port()},
            inference=False,
        )
        with stack_env(local):
            try:
                with pytest.raises(StackError, match=f"moto cannot start: port {port} .* in use"):
                    local.up()
                assert not local.state_file.exists() or "moto" not in local.load().get("pids", {})
            finally:
                local.down()


def test_the_state_dir_comes_from_the_environment(tmp_path, monkeypatch):
    from tlops.local.stack import default_state_dir

    monkeypatch.setenv("TLOPS_STATE_DIR", str(tmp_path / "explicit"))
    assert LocalStack().state_dir == tmp_path / "explicit"
    monkeypatch.delenv("TLOPS_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "tlops" / "local"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "tlops" / "local"

"""What a 503 and a retry mean for `POST /infer`: nothing is queued behind a 503, even when
Redis stalls with the admission already in its socket buffer; a retry with the same
Idempotency-Key gets the first job instead of a second one.

A real redis-server is stopped with SIGSTOP (it keeps accepting connections in the kernel
backlog, and runs what was sent once it gets SIGCONT), so the router's reply timeout fires
while its script waits to run.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_py

from tests.edge.test_router import body, infer_event, stream_ids
from tests.support.gateway_fixtures import *  # noqa: F403 - the gateway fixtures
from tests.support.router_fixtures import *  # noqa: F403 - the router fixtures
from tlops import contract
from tlops.contract.control import Action
from tlops.edge.router import Router, RouterConfig
from tlops.local.services import RedisProcess

pytestmark = pytest.mark.integration


def keyed(token: str, key: str, payload: Any = None) -> dict[str, Any]:
    return infer_event(token, payload, headers={"idempotency-key": key})


# --- Idempotency-Key -----------------------------------------------------------------------
def test_a_retry_after_a_lost_answer_gets_the_first_job(router, heartbeat, redis_client, keyset):
    token = keyset.token(sub="retrier")
    lost = router.handle(keyed(token, "8c1d4f3e-retry"))  # the client never saw this answer
    retry = router.handle(keyed(token, "8c1d4f3e-retry"))

    assert (lost["statusCode"], retry["statusCode"]) == (202, 202)
    assert body(retry) == {"status": "queued", "id": body(lost)["id"]}
    assert retry["headers"]["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in lost["headers"]
    assert stream_ids(redis_client) == [body(lost)["id"]]
    assert len(redis_client.keys("job:*")) == 1


def test_a_retry_through_the_gateway_after_the_client_hung_up(
    gateway, keyset, node_alive, redis_client
):
    """The client sends its request and drops the connection before the answer (a timeout,
    a lost network): its retry with the same key names the job that was queued."""
    token = keyset.token(sub="hung-up")
    payload = json.dumps({"prompt": "hello"}).encode()
    request = (
        b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nIdempotency-Key: k-1\r\n".encode()
        + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload
    )
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(request)  # and gone, without reading the answer
    deadline = time.monotonic() + 5
    while not redis_client.xlen(contract.JOB_STREAM) and time.monotonic() < deadline:
        time.sleep(0.02)

    retry = gateway.infer(token, {"prompt": "hello"}, headers={"Idempotency-Key": "k-1"})

    assert retry.status == 202
    assert retry.header("idempotent-replayed") == "true"
    assert stream_ids(redis_client) == [retry.body["id"]]


def test_the_same_key_with_another_body_is_409(router, heartbeat, redis_client, keyset):
    token = keyset.token()
    assert router.handle(keyed(token, "k", {"prompt": "one"}))["statusCode"] == 202
    reused = router.handle(keyed(token, "k", {"prompt": "two"}))
    assert reused["statusCode"] == 409
    assert body(reused)["error"] == "idempotency_key_reused"
    assert len(stream_ids(redis_client)) == 1


def test_defaults_spelled_out_are_the_same_request(router, heartbeat, redis_client, keyset):
    token = keyset.token()
    first = router.handle(keyed(token, "k", {"prompt": "x"}))
    again = router.handle(keyed(token, "k", {"prompt": "x", "idle": 5}))
    assert body(again)["id"] == body(first)["id"]


def test_keys_belong_to_their_user(router, heartbeat, redis_client, keyset):
    alice = router.handle(keyed(keyset.token(sub="alice"), "shared"))
    bob = router.handle(keyed(keyset.token(sub="bob"), "shared"))
    assert (alice["statusCode"], bob["statusCode"]) == (202, 202)
    assert body(alice)["id"] != body(bob)["id"]
    assert "idempotent-replayed" not in bob["headers"]


def test_a_replay_is_not_counted_against_the_rate_limit(router, heartbeat, redis_client, keyset):
    token = keyset.token(sub="busy")
    first = router.handle(keyed(token, "first"))
    for _ in range(4):
        assert router.handle(infer_event(token))["statusCode"] == 202
    assert router.handle(infer_event(token))["statusCode"] == 429
    replays = [router.handle(keyed(token, "first")) for _ in range(3)]
    assert {r["statusCode"] for r in replays} == {202}
    assert {body(r)["id"] for r in replays} == {body(first)["id"]}
    assert redis_client.zcard(contract.rate_key("busy")) == 5


def test_a_replay_starts_the_node_the_first_attempt_did_not(
    router, gpu_node, relay, redis_client, keyset
):
    """The first attempt queued its job and then died before it could ask for the node (the
    function timed out, say): the retry asks control, which starts it, for the same job."""
    token = keyset.token()
    redis_client.set(contract.HEARTBEAT_KEY, "1", ex=60)  # the first attempt saw a node up
    first = router.handle(keyed(token, "boot"))
    redis_client.delete(contract.HEARTBEAT_KEY)  # which has stopped since

    retry = router.handle(keyed(token, "boot"))

    assert retry["statusCode"] == 202
    assert body(retry)["status"] == "starting"
    assert body(retry)["id"] == body(first)["id"]
    assert retry["headers"]["x-gpu-coldboot"] == "true"
    assert retry["headers"]["idempotent-replayed"] == "true"
    assert len(relay.requests(Action.WAKE)) == 1
    relay.deliver()
    assert relay.state()["node"] == {"instance": gpu_node, "state": "running",
                                     "type": "g4dn.xlarge"}  # fmt: skip
    assert stream_ids(redis_client) == [body(first)["id"]]


def test_a_replay_of_a_finished_job_asks_nothing_of_control(router, relay, redis_client, keyset):
    from botocore.stub import Stubber

    from tests.support.router_fixtures import router_s3

    token = keyset.token()
    redis_client.set(contract.HEARTBEAT_KEY, "1", ex=60)
    first = router.handle(keyed(token, "done"))
    redis_client.delete(contract.HEARTBEAT_KEY)
    redis_client.hset(contract.job_key(body(first)["id"]), "status", "done")
    with Stubber(router_s3()) as stubber:  # any read of the state or wake asked would raise
        retry = router.handle(keyed(token, "done"))
        stubber.assert_no_pending_responses()
    assert (retry["statusCode"], body(retry)["id"]) == (202, body(first)["id"])
    assert relay.keys() == []


@pytest.mark.parametrize(
    "value", ["", "has space", "a" * 129, "semi;colon", "ünïcode", "k1,k2"], ids=repr
)
def test_a_bad_idempotency_key_is_400_naming_the_header(router, redis_client, keyset, value):
    result = router.handle(keyed(keyset.token(), value))
    assert result["statusCode"] == 400
    answer = body(result)
    assert (answer["error"], answer["field"]) == ("invalid_request", "Idempotency-Key")
    assert stream_ids(redis_client) == []


@pytest.mark.parametrize("value", ["a", "A-z_0.9:x", "b" * 128])
def test_keys_of_the_allowed_alphabet_pass(router, heartbeat, keyset, value):
    assert router.handle(keyed(keyset.token(), value))["statusCode"] == 202


# --- a stalled Redis ------------------------------------------------------------------------
@pytest.fixture
def stalled_redis(tmp_path) -> Iterator[RedisProcess]:
    """A redis-server of its own, so that stopping it disturbs no other test."""
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.send_signal(signal.SIGCONT)
        server.stop()


class Traffic:
    """Threads, each with its own Router (one per warm Lambda container), sending POST /infer
    without pause; `quiet()` holds them between requests, so a stall can begin with
    none in flight."""

    def __init__(self, keyset, threads: int):
        self.keyset = keyset
        self.answers: list[tuple[int, Any]] = []
        self.errors: list[BaseException] = []
        self._done = threading.Event()
        self._cond = threading.Condition()
        self._held = False
        self._in_flight = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        router = Router(RouterConfig.from_env())
        token = self.keyset.token()
        try:
            while not self._done.is_set():
                with self._cond:
                    self._cond.wait_for(lambda: not self._held)
                    self._in_flight += 1
                try:
                    result = router.handle(infer_event(token))
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        self._cond.notify_all()
                with self._cond:
                    self.answers.append((result["statusCode"], body(result)))
        except BaseException as exc:
            self.errors.append(exc)

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def quiet(self) -> None:
        with self._cond:
            self._held = True
            assert self._cond.wait_for(lambda: self._in_flight == 0, timeout=10)

    def go(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def stop(self) -> None:
        self._done.set()
        self.go()
        for thread in self._threads:
            thread.join(timeout=30)


def test_nothing_is_queued_behind_a_503_when_redis_stalls(
    router_env, monkeypatch, stalled_redis, keyset
):
    monkeypatch.setenv("TL_REDIS_URL", stalled_redis.url)
    monkeypatch.setenv("TL_RATE_BURST", "100000")
    monkeypatch.setenv("TL_RATE_PER_MINUTE", "1000000")
    monkeypatch.setenv("TL_QUEUE_CAP_TOTAL", "1000000")  # this test is about stalls, not caps
    monkeypatch.setenv("TL_QUEUE_CAP_PER_USER", "1000000")
    reference = redis_py.Redis.from_url(stalled_redis.url, decode_responses=True)
    reference.set(contract.HEARTBEAT_KEY, "1", ex=600)  # the node is up: control is not asked

    traffic = Traffic(keyset, threads=12).start()
    time.sleep(0.5)  # every thread has a warm connection, its clock offset measured
    traffic.quiet()
    stalled_redis.process.send_signal(signal.SIGSTOP)
    answered_before = len(traffic.answers)
    traffic.go()
    time.sleep(2.5)  # each thread's next EVALSHA now waits in Redis' socket buffer
    during = traffic.answers[answered_before:]
    stalled_redis.process.send_signal(signal.SIGCONT)
    time.sleep(0.5)
    traffic.stop()
    time.sleep(1.0)  # Redis has run whatever it still held
    reference.ping()

    assert traffic.errors == []
    statuses = [status for status, _ in traffic.answers]
    assert set(statuses) <= {202, 503}
    assert len(during) >= 12 and {status for status, _ in during} == {503}
    assert statuses.count(202) > 24  # before and after the stall
    accepted = {answer["id"] for status, answer in traffic.answers if status == 202}
    for status, answer in traffic.answers:
        if status == 503:
            assert answer == {"error": "queue_unavailable"}
    queued = {key.removeprefix(contract.JOB_KEY_PREFIX) for key in reference.keys("job:*")}
    entries = [fields["id"] for _, fields in reference.xrange(contract.JOB_STREAM)]
    # every 202 has its job; no job and no stream entry exists that was not answered 202
    assert queued == accepted
    assert sorted(entries) == sorted(accepted)
    reference.close()


def test_the_router_measures_redis_clock_once_per_connection(
    router_env, monkeypatch, stalled_redis, keyset
):
    """The deadline costs one TIME per connection, not one per request."""
    monkeypatch.setenv("TL_REDIS_URL", stalled_redis.url)
    reference = redis_py.Redis.from_url(stalled_redis.url, decode_responses=True)
    reference.set(contract.HEARTBEAT_KEY, "1", ex=600)
    reference.config_resetstat()
    router = Router(RouterConfig.from_env())
    for _ in range(5):
        assert router.handle(infer_event(keyset.token()))["statusCode"] == 202
    stats = reference.info("commandstats")
    assert stats["cmdstat_time"]["calls"] == 1 + 5  # the router's one, the scripts' own
    reference.close()

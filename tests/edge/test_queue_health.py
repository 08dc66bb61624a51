"""`GET /queue-health` against a real redis-server: source-network gate and PING round trip."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import tlops.edge.queue_health
from tests.conftest import http_event
from tests.doubles.silent import SilentServer
from tests.lambdas import LambdaContext, load_handler, sample_event
from tests.support.router_fixtures import *  # noqa: F403 - the fixtures (the node, the control bucket)
from tlops import contract
from tlops.edge.queue_health import DEFAULT_ALLOWED_CIDRS, QueueHealth, parse_cidrs

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def health_event(source_ip: str) -> dict[str, Any]:
    return http_event("GET", "/queue-health", source_ip=source_ip)


def body(result: dict[str, Any]) -> Any:
    assert result["headers"]["content-type"] == "application/json"
    return json.loads(result["body"])


@pytest.fixture
def health_env(redis_url, monkeypatch) -> str:
    monkeypatch.setenv("TL_REDIS_URL", redis_url)
    monkeypatch.delenv("TL_QUEUE_HEALTH_CIDRS", raising=False)
    return redis_url


@pytest.fixture
def health(health_env) -> QueueHealth:
    return QueueHealth.from_env()


def assert_ok(result: dict[str, Any]) -> None:
    assert result["statusCode"] == 200
    answer = body(result)
    assert set(answer) == {"redis", "latencyMs", "queueDepth", "deadLetters", "watcher"}
    assert answer["redis"] == "ok"
    assert isinstance(answer["latencyMs"], int | float)
    assert not isinstance(answer["latencyMs"], bool)
    assert 0 <= answer["latencyMs"] < 200


# --- allowed sources ------------------------------------------------------------------
@pytest.mark.parametrize("ip", ["127.0.0.1", "10.20.1.5", "10.20.0.0", "10.20.3.255", "::1"])
def test_allowed_source_gets_redis_ok(health, ip):
    event = health_event(ip)
    result = health.handle(event)
    assert_ok(result)
    assert result["headers"]["x-request-id"] == event["requestContext"]["requestId"]


def test_sample_event_from_the_vpc(health):
    result = health.handle(sample_event("queue_health"))
    assert_ok(result)
    assert result["headers"]["x-request-id"] == "UsXwnhkLjoEEMfg="


# --- refused sources ------------------------------------------------------------------
@pytest.mark.parametrize(
    "ip", ["8.8.8.8", "10.20.4.1", "10.21.0.1", "2001:db8::1", "not-an-ip", "", "999.1.1.1"]
)
def test_other_sources_are_403(health, ip):
    result = health.handle(health_event(ip))
    assert result["statusCode"] == 403
    answer = body(result)
    assert answer["error"] == "forbidden"
    assert "redis" not in answer


def test_event_without_a_source_ip_is_403(health):
    event = health_event("127.0.0.1")
    del event["requestContext"]["http"]["sourceIp"]
    assert health.handle(event)["statusCode"] == 403


def test_refusal_comes_before_any_redis_call(health_env, monkeypatch):
    """A refused caller learns nothing about Redis: 403 even while Redis is unreachable."""
    with SilentServer() as silent:
        monkeypatch.setenv("TL_REDIS_URL", f"redis://127.0.0.1:{silent.port}/0")
        result = QueueHealth.from_env().handle(health_event("8.8.8.8"))
    assert result["statusCode"] == 403


# --- Redis failures -------------------------------------------------------------------
def test_redis_down_is_503_fail(health, redis_server, capsys):
    assert health.handle(health_event("127.0.0.1"))["statusCode"] == 200  # warm connection
    redis_server.stop()
    try:
        stale = health.handle(health_event("127.0.0.1"))
        refused = health.handle(health_event("127.0.0.1"))
    finally:
        redis_server.start()
    captured = capsys.readouterr()
    for result in (stale, refused):
        assert result["statusCode"] == 503
        answer = body(result)
        assert set(answer) == {"redis", "error"}
        assert answer["redis"] == "fail"
        assert isinstance(answer["error"], str) and answer["error"]
    assert "Traceback" not in captured.out + captured.err
    logged = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert any(r.get("message") == "redis ping failed" for r in logged)

    assert_ok(health.handle(health_event("127.0.0.1")))  # reconnects once Redis is back


def test_redis_that_never_answers_is_503(health_env, monkeypatch):
    with SilentServer() as silent:
        monkeypatch.setenv("TL_REDIS_URL", f"redis://127.0.0.1:{silent.port}/0")
        result = QueueHealth.from_env().handle(health_event("127.0.0.1"))
    assert result["statusCode"] == 503
    assert body(result)["redis"] == "fail"


def test_redis_error_reply_is_503(redis_url, redis_client, monkeypatch):
    # a password Redis does not expect: AUTH is answered with an error reply
    url = redis_url.replace("redis://", "redis://:wrong-password@")
    result = QueueHealth(url).handle(health_event("127.0.0.1"))
    assert result["statusCode"] == 503
    assert body(result)["redis"] == "fail"


class FakeClock:
    """Stands in for the `time` module inside tlops.queue_health only."""

    def __init__(self, *readings: float):
        self._readings = iter(readings)

    def perf_counter(self) -> float:
        return next(self._readings)

    @staticmethod
    def time() -> float:
        return 1_700_000_000.0


@pytest.mark.parametrize(
    ("elapsed_s", "status"),
    [(0.25, 503), (0.2, 503), (0.19999, 200), (0.0, 200)],
)
def test_slow_ping_is_503(health, monkeypatch, elapsed_s, status):
    monkeypatch.setattr(tlops.edge.queue_health, "time", FakeClock(100.0, 100.0 + elapsed_s))
    result = health.handle(health_event("127.0.0.1"))
    assert result["statusCode"] == status
    answer = body(result)
    if status == 503:
        assert answer["redis"] == "fail"
        assert "PING took" in answer["error"]
        assert "200 ms" in answer["error"]
    else:
        assert answer["redis"] == "ok"
        assert answer["latencyMs"] == pytest.approx(elapsed_s * 1000, abs=0.01)


# --- the queue's state ----------------------------------------------------------------
def test_empty_queue_reports_zeroes_and_no_watcher(health):
    answer = body(health.handle(health_event("127.0.0.1")))
    assert (answer["queueDepth"], answer["deadLetters"], answer["watcher"]) == (0, 0, None)


def test_depth_counts_undelivered_and_unacknowledged_jobs(health, redis_client):
    for n in range(5):
        redis_client.xadd(contract.JOB_STREAM, {"id": f"job-{n}", "sub": "s"})
    # no watcher yet: every entry is waiting
    assert body(health.handle(health_event("127.0.0.1")))["queueDepth"] == 5
    redis_client.xgroup_create(contract.JOB_STREAM, contract.CONSUMER_GROUP, id="0")
    delivered = redis_client.xreadgroup(
        contract.CONSUMER_GROUP, "w1", {contract.JOB_STREAM: ">"}, count=3
    )[0][1]
    redis_client.xack(contract.JOB_STREAM, contract.CONSUMER_GROUP, delivered[0][0])
    # 2 never delivered + 2 delivered and not acknowledged; the acknowledged one is done
    assert body(health.handle(health_event("127.0.0.1")))["queueDepth"] == 4


def test_dead_letters_and_heartbeat_are_reported(health, redis_client):
    redis_client.xadd(contract.DEAD_LETTER_STREAM, {"id": "x", "reason": "r"})
    redis_client.xadd(contract.DEAD_LETTER_STREAM, {"id": "y", "reason": "r"})
    written = round(time.time() * 1000) - 4000
    beat = {"consumer": "c", "done": 7, "failed": 1, "in_flight": 3, "ts_ms": written}
    redis_client.set(contract.HEARTBEAT_KEY, json.dumps(beat), ex=30)
    answer = body(health.handle(health_event("127.0.0.1")))
    assert answer["deadLetters"] == 2
    watcher = answer["watcher"]
    assert (watcher["inFlight"], watcher["done"], watcher["failed"]) == (3, 7, 1)
    assert 4000 <= watcher["heartbeatAgeMs"] < 60_000


def test_unreadable_heartbeat_is_said_not_crashed_on(health, redis_client):
    redis_client.set(contract.HEARTBEAT_KEY, "not json", ex=30)
    result = health.handle(health_event("127.0.0.1"))
    assert result["statusCode"] == 200
    assert body(result)["watcher"] == {"heartbeatAgeMs": None, "error": "unreadable heartbeat"}


# --- configuration --------------------------------------------------------------------
def test_custom_cidrs(health_env, monkeypatch):
    monkeypatch.setenv("TL_QUEUE_HEALTH_CIDRS", " 192.0.2.0/24 , 2001:db8::/32 ")
    health = QueueHealth.from_env()
    assert_ok(health.handle(health_event("192.0.2.7")))
    assert_ok(health.handle(health_event("2001:db8::1")))
    for ip in ("127.0.0.1", "10.20.1.5", "192.0.3.1"):
        assert health.handle(health_event(ip))["statusCode"] == 403


@pytest.mark.parametrize(
    "cidrs", ["banana", "10.20.0.0/33", "10.20.0.1/22", "10.20.0.0/22,nope", "300.0.0.0/8"]
)
def test_invalid_cidr_list_names_the_variable(health_env, monkeypatch, cidrs):
    monkeypatch.setenv("TL_QUEUE_HEALTH_CIDRS", cidrs)
    with pytest.raises(RuntimeError, match="TL_QUEUE_HEALTH_CIDRS"):
        QueueHealth.from_env()


def test_parse_cidrs_skips_empty_parts():
    networks = parse_cidrs("10.0.0.0/8,, ,::1/128,")
    assert [str(n) for n in networks] == ["10.0.0.0/8", "::1/128"]


def test_default_cidrs_are_the_vpc_and_loopback():
    assert [str(n) for n in parse_cidrs(DEFAULT_ALLOWED_CIDRS)] == [
        "10.20.0.0/22",
        "127.0.0.0/8",
        "::1/128",
    ]


def test_missing_redis_url_is_a_runtime_error(monkeypatch):
    monkeypatch.delenv("TL_REDIS_URL", raising=False)
    with pytest.raises(RuntimeError, match="TL_REDIS_URL"):
        QueueHealth.from_env()


# --- the Lambda entry point -----------------------------------------------------------
def test_lambda_src_handler_serves_the_sample_event(health_env, monkeypatch):
    monkeypatch.setattr(tlops.edge.queue_health, "_health", None)
    handler = load_handler("queue_health")

    assert_ok(handler.lambda_handler(sample_event("queue_health"), LambdaContext()))
    warm = tlops.edge.queue_health._health
    assert warm is not None
    refused = handler.lambda_handler(health_event("8.8.8.8"), object())
    assert refused["statusCode"] == 403
    assert tlops.edge.queue_health._health is warm


# --- the scheduled probe: the same look, as metrics ------------------------------------
def emitted(capsys) -> dict[str, float]:
    """Metric name → value of every EMF line printed."""
    found = {}
    for line in capsys.readouterr().out.splitlines():
        record = json.loads(line)
        if "_aws" in record:
            [name] = [m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
            assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TLFIF"
            found[name] = record[name]
    return found


def test_the_scheduled_event_is_a_probe_that_emits_metrics(health_env, redis_client, capsys,
                                                             monkeypatch):  # fmt: skip
    monkeypatch.setattr(tlops.edge.queue_health, "_health", None)
    redis_client.xadd(contract.DEAD_LETTER_STREAM, {"id": "x"})
    found = tlops.edge.queue_health.lambda_handler(sample_event("scheduled"), LambdaContext())
    assert found["redis"] == "ok" and "statusCode" not in found  # nobody to answer
    assert emitted(capsys) == {"QueueHealthFailed": 0, "QueueDepth": 0, "DeadLetterEntries": 1}


def test_the_probe_reports_a_failing_queue_as_1(health, redis_server, capsys):
    redis_server.stop()
    try:
        found = health.probe(sample_event("scheduled"))
    finally:
        redis_server.start()
    assert found["redis"] == "fail"
    assert emitted(capsys) == {"QueueHealthFailed": 1}


def test_an_http_event_is_never_taken_for_the_schedule():
    assert tlops.edge.queue_health.is_scheduled(sample_event("scheduled"))
    assert not tlops.edge.queue_health.is_scheduled(sample_event("queue_health"))


# --- the probe while the stack sleeps: no queue is no failure ---------------------------------
def probe_with_the_queue_down(redis_server, capsys) -> dict:
    """The scheduled probe while redis-server is stopped; what it returned."""
    health = QueueHealth.from_env()
    capsys.readouterr()
    redis_server.stop()
    try:
        return health.probe(sample_event("scheduled"))
    finally:
        redis_server.start()


def test_the_probe_while_asleep_reports_no_failure(router_env, gpu_node, relay, redis_server,
                                                    capsys):  # fmt: skip
    assert relay.observe()["state"] == "asleep"  # the node stopped, no queue group
    found = probe_with_the_queue_down(redis_server, capsys)
    assert found == {"redis": "asleep", "queueDepth": 0, "deadLetters": 0}
    assert emitted(capsys) == {"QueueHealthFailed": 0}


@pytest.mark.parametrize("node_running", [False, True], ids=["napping", "awake"])
def test_the_probe_reports_a_queue_down_as_1_unless_asleep(
    router_env, gpu_node, relay, redis_server, capsys, node_running
):
    from tlops.common import aws

    relay.make_queue()
    if node_running:
        aws.client("ec2").start_instances(InstanceIds=[gpu_node])
    assert relay.observe()["state"] == ("awake" if node_running else "napping")
    found = probe_with_the_queue_down(redis_server, capsys)
    assert found["redis"] == "fail"
    assert emitted(capsys) == {"QueueHealthFailed": 1}

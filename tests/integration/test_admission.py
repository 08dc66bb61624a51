"""Per-user rate limit and enqueue in one atomic script (tlops.admission), on a real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tlops import contract
from tlops.admission import Admission, RateLimits, admit
from tlops.contract import InferRequest, new_job_id, queued_job_fields
from tlops.contract.records import JobRecord
from tlops.local.services import free_port
from tlops.resp import RedisUnavailable, RespClient

pytestmark = pytest.mark.integration

LIMITS = RateLimits(burst=5, burst_window_ms=1000, sustained=20, sustained_window_ms=60_000)
JOB_TTL_S = 300


@pytest.fixture
def client(redis_url: str) -> Iterator[RespClient]:
    resp = RespClient(redis_url, timeout=2.0)
    yield resp
    resp.close()


def submit(
    client: RespClient,
    sub: str = "user-a",
    *,
    job_id: str | None = None,
    limits: RateLimits = LIMITS,
    job_ttl_s: int = JOB_TTL_S,
    request: InferRequest | None = None,
) -> tuple[Admission, str]:
    job_id = job_id or new_job_id()
    fields = queued_job_fields(
        request or InferRequest(prompt=f"prompt for {job_id}"),
        sub=sub,
        job_id=job_id,
        reply_bucket="replies",
    )
    result = admit(
        client, sub=sub, job_id=job_id, job_fields=fields, limits=limits, job_ttl_s=job_ttl_s
    )
    return result, job_id


def stream_ids(redis_client) -> list[str]:
    return [fields["id"] for _, fields in redis_client.xrange(contract.JOB_STREAM)]


# --- the burst limit -----------------------------------------------------------------
def test_sixth_request_in_a_burst_is_limited(client, redis_client):
    queued = [submit(client) for _ in range(5)]
    assert [result.outcome for result, _ in queued] == ["queued"] * 5
    result, limited_id = submit(client)
    assert result.outcome == "limited"
    assert not redis_client.exists(contract.job_key(limited_id))
    assert result.retry_after_s == 1  # a 1 s window: the oldest leaves within a second
    assert result.node_alive is False
    assert result.enqueued_at_ms == 0
    assert stream_ids(redis_client) == [job_id for _, job_id in queued]


def test_limits_are_per_sub(client):
    for _ in range(5):
        assert submit(client, "user-a")[0].outcome == "queued"
    assert submit(client, "user-a")[0].outcome == "limited"
    assert submit(client, "user-b")[0].outcome == "queued"
    assert submit(client, "user-a")[0].outcome == "limited"


def test_limited_request_writes_nothing(client, redis_client):
    for _ in range(5):
        submit(client)
    rate_key = contract.rate_key("user-a")
    counted = redis_client.zcard(rate_key)
    keys_before = set(redis_client.keys("*"))
    for _ in range(3):
        result, job_id = submit(client)
        assert result.outcome == "limited"
        assert not redis_client.exists(contract.job_key(job_id))
    assert redis_client.xlen(contract.JOB_STREAM) == 5
    assert redis_client.zcard(rate_key) == counted == 5  # refused requests are not counted
    assert set(redis_client.keys("*")) == keys_before


def test_burst_window_slides(client):
    limits = RateLimits(burst=2, burst_window_ms=300, sustained=100, sustained_window_ms=60_000)
    assert [submit(client, limits=limits)[0].outcome for _ in range(2)] == ["queued"] * 2
    limited, _ = submit(client, limits=limits)
    assert limited.outcome == "limited"
    assert limited.retry_after_s == 1  # under a second, rounded up to whole seconds
    time.sleep(0.35)  # let the window pass
    assert submit(client, limits=limits)[0].outcome == "queued"


# --- the sustained limit --------------------------------------------------------------
def test_twenty_first_request_in_a_minute_is_limited(client, redis_client):
    limits = LIMITS._replace(burst=100)  # only the sustained limit applies
    for _ in range(20):
        assert submit(client, limits=limits)[0].outcome == "queued"
    result, job_id = submit(client, limits=limits)
    assert result.outcome == "limited"
    # the oldest request leaves the 60 s window in (almost) a minute
    assert 2 <= result.retry_after_s <= 60
    assert not redis_client.exists(contract.job_key(job_id))
    assert redis_client.xlen(contract.JOB_STREAM) == 20
    assert submit(client, "user-b", limits=limits)[0].outcome == "queued"


def test_default_limits_are_the_issue_numbers(client):
    assert RateLimits() == LIMITS
    results = [submit(client, limits=RateLimits())[0].outcome for _ in range(7)]
    assert results == ["queued"] * 5 + ["limited"] * 2


def test_sustained_window_slides(client):
    limits = RateLimits(burst=100, burst_window_ms=1000, sustained=3, sustained_window_ms=300)
    assert [submit(client, limits=limits)[0].outcome for _ in range(3)] == ["queued"] * 3
    assert submit(client, limits=limits)[0].outcome == "limited"
    time.sleep(0.35)
    assert submit(client, limits=limits)[0].outcome == "queued"


def test_retry_after_is_the_larger_of_both_limits(client):
    limits = RateLimits(burst=2, burst_window_ms=1000, sustained=2, sustained_window_ms=10_000)
    submit(client, limits=limits)
    submit(client, limits=limits)
    result, _ = submit(client, limits=limits)
    assert result.outcome == "limited"
    assert 2 <= result.retry_after_s <= 10  # the sustained window, not the 1 s burst


def test_rate_key_expires_with_the_sustained_window(client, redis_client):
    submit(client)
    pttl = redis_client.pttl(contract.rate_key("user-a"))
    assert 0 < pttl <= LIMITS.sustained_window_ms


# --- the enqueue -------------------------------------------------------------------------
def test_queued_job_record_stream_entry_and_ttl(client, redis_client):
    request = InferRequest(prompt="héllo €", idle=7, max_tokens=64, temperature=0.5)
    before_s, before_us = redis_client.time()
    result, job_id = submit(client, "user-a", request=request)
    after_s, after_us = redis_client.time()
    assert result.outcome == "queued"
    assert result.retry_after_s == 0

    stored = redis_client.hgetall(contract.job_key(job_id))
    expected = queued_job_fields(request, sub="user-a", job_id=job_id, reply_bucket="replies")
    assert {name: value for name, value in stored.items() if name != "ts"} == expected
    ts = int(stored["ts"])
    assert before_s * 1000 + before_us // 1000 <= ts <= after_s * 1000 + after_us // 1000 + 1
    assert result.enqueued_at_ms == ts

    ttl = redis_client.ttl(contract.job_key(job_id))
    assert 0 < ttl <= JOB_TTL_S

    entries = redis_client.xrange(contract.JOB_STREAM)
    assert len(entries) == 1
    assert entries[0][1] == {"id": job_id, "sub": "user-a"}

    record = JobRecord.from_hash(job_id, stored)
    assert record.status is contract.JobStatus.QUEUED
    assert (record.idle, record.max_tokens, record.temperature) == (7, 64, 0.5)
    assert record.ts == ts


def test_job_ttl_is_applied(client, redis_client):
    _, job_id = submit(client, job_ttl_s=7)
    assert 0 < redis_client.ttl(contract.job_key(job_id)) <= 7


def test_stream_order_follows_admission(client, redis_client):
    ids = [submit(client, f"user-{i}")[1] for i in range(4)]
    assert stream_ids(redis_client) == ids


def test_same_job_id_is_a_collision(client, redis_client):
    first, job_id = submit(client, "user-a")
    assert first.outcome == "queued"
    original = redis_client.hgetall(contract.job_key(job_id))
    second, _ = submit(
        client, "user-b", job_id=job_id, request=InferRequest(prompt="something else", idle=30)
    )
    assert second.outcome == "collision"
    assert second.node_alive is False
    assert redis_client.hgetall(contract.job_key(job_id)) == original
    assert stream_ids(redis_client) == [job_id]
    # a collision is not counted against the caller's limits
    assert redis_client.zcard(contract.rate_key("user-b")) == 0
    assert redis_client.zcard(contract.rate_key("user-a")) == 1


def test_invalid_job_id_refused_before_redis(client, redis_client):
    with pytest.raises(ValueError):
        submit(client, job_id="../etc")
    assert redis_client.dbsize() == 0


def test_redis_down_raises_unavailable():
    client = RespClient(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisUnavailable):
        submit(client)


def test_works_after_script_cache_flush(client, redis_client):
    assert submit(client)[0].outcome == "queued"
    redis_client.script_flush()
    assert submit(client)[0].outcome == "queued"
    assert redis_client.xlen(contract.JOB_STREAM) == 2


# --- the heartbeat ------------------------------------------------------------------------
def test_node_alive_only_with_heartbeat(client, redis_client):
    assert submit(client, "u1")[0].node_alive is False
    redis_client.set(contract.HEARTBEAT_KEY, "gpu-1", ex=30)
    assert submit(client, "u2")[0].node_alive is True
    redis_client.delete(contract.HEARTBEAT_KEY)
    assert submit(client, "u3")[0].node_alive is False
    redis_client.set("watcher:heartbeat:other", "x")
    assert submit(client, "u4")[0].node_alive is False


# --- atomicity ----------------------------------------------------------------------------
def test_concurrent_burst_admits_exactly_the_limit(redis_url, redis_client):
    redis_client.script_flush()  # every thread starts on the NOSCRIPT path
    threads_count = 20
    barrier = threading.Barrier(threads_count)
    outcomes: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def fire() -> None:
        resp = RespClient(redis_url, connect_timeout=2.0, timeout=5.0)
        try:
            resp.ping()  # connect before the race
            barrier.wait(timeout=10)
            result, _ = submit(resp, "same-user")
            with lock:
                outcomes.append(result.outcome)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            resp.close()

    threads = [threading.Thread(target=fire) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(outcomes) == ["limited"] * 15 + ["queued"] * 5
    assert redis_client.xlen(contract.JOB_STREAM) == 5
    assert len(redis_client.keys(contract.JOB_KEY_PREFIX + "*")) == 5
    assert redis_client.zcard(contract.rate_key("same-user")) == 5

"""Per-user rate limit and enqueue in one atomic script (tlops.admission), on a real Redis:
the windows, the enqueue, the deadline, the Idempotency-Key, the sleep's closing mark, and
the windows alone (`limit`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tlops import contract
from tlops.contract import new_job_id, records
from tlops.contract.request import InferRequest
from tlops.edge.admission import Admission, Idempotency, RateLimits, admit, limit
from tlops.edge.resp import RedisUnavailable, RedisUnreachable, RespClient
from tlops.local.services import free_port

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
    within_s: float = 2.0,
    idempotency: Idempotency | None = None,
) -> tuple[Admission, str]:
    job_id = job_id or new_job_id()
    fields = records.queued(
        request or InferRequest(prompt=f"prompt for {job_id}"),
        sub=sub,
        job_id=job_id,
        reply_bucket="replies",
    )
    result = admit(
        client,
        sub=sub,
        job_id=job_id,
        job_fields=fields,
        limits=limits,
        job_ttl_s=job_ttl_s,
        within_s=within_s,
        idempotency=idempotency,
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
    expected = records.queued(request, sub="user-a", job_id=job_id, reply_bucket="replies")
    assert {name: value for name, value in stored.items() if name != "ts"} == expected
    ts = int(stored["ts"])
    assert before_s * 1000 + before_us // 1000 <= ts <= after_s * 1000 + after_us // 1000 + 1
    assert result.enqueued_at_ms == ts

    ttl = redis_client.ttl(contract.job_key(job_id))
    assert 0 < ttl <= JOB_TTL_S

    entries = redis_client.xrange(contract.JOB_STREAM)
    assert len(entries) == 1
    assert entries[0][1] == {"id": job_id, "sub": "user-a"}

    assert stored["status"] == contract.JobStatus.QUEUED
    assert (stored["idle"], stored["max_tokens"], float(stored["temperature"])) == ("7", "64", 0.5)


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


def test_a_refused_connection_says_unreachable_which_is_how_a_sleeping_queue_looks():
    client = RespClient(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisUnreachable):
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


# --- the deadline ------------------------------------------------------------------------
def test_a_script_run_past_its_deadline_writes_nothing(client, redis_client):
    result, job_id = submit(client, within_s=-1.0)
    assert result.outcome == "late"
    assert redis_client.dbsize() == 0  # no record, no stream, not even a rate-window entry
    assert not redis_client.exists(contract.job_key(job_id))


def test_the_deadline_is_in_redis_clock_not_ours(redis_url, redis_client):
    """A Lambda whose clock is an hour off still gets its deadline right: the client measured
    the offset to Redis' clock when it connected."""
    for skew in (-3600.0, 3600.0):
        skewed = RespClient(redis_url, timeout=2.0, clock=lambda skew=skew: time.time() + skew)
        try:
            assert submit(skewed, f"user{skew}", within_s=0.5)[0].outcome == "queued"
            assert submit(skewed, f"user{skew}", within_s=-0.5)[0].outcome == "late"
        finally:
            skewed.close()
    assert redis_client.xlen(contract.JOB_STREAM) == 2


# --- the Idempotency-Key ---------------------------------------------------------------------
def _keyed(request: InferRequest, key: str = "retry-1") -> Idempotency:
    return Idempotency(key, records.fingerprint(request))


def test_a_retry_with_the_same_key_and_request_gets_the_first_job(client, redis_client):
    request = InferRequest(prompt="once")
    first, first_id = submit(client, request=request, idempotency=_keyed(request))
    again, _ = submit(client, request=request, idempotency=_keyed(request))

    assert (first.outcome, first.job_id, first.job_status) == ("queued", first_id, "queued")
    assert (again.outcome, again.job_id, again.job_status) == ("replayed", first_id, "queued")
    assert stream_ids(redis_client) == [first_id]
    assert redis_client.zcard(contract.rate_key("user-a")) == 1  # the replay was not counted
    stored = redis_client.hgetall(contract.idempotency_key("user-a", "retry-1"))
    assert stored == {records.IDEM_JOB: first_id, records.IDEM_FINGERPRINT: _keyed(request)[1]}
    ttl = redis_client.ttl(contract.idempotency_key("user-a", "retry-1"))
    assert contract.IDEMPOTENCY_TTL_SECONDS - 5 < ttl <= contract.IDEMPOTENCY_TTL_SECONDS


def test_a_replay_passes_even_when_the_user_is_over_the_limit(client):
    request = InferRequest(prompt="first")
    _, first_id = submit(client, request=request, idempotency=_keyed(request))
    for _ in range(4):
        submit(client)
    assert submit(client)[0].outcome == "limited"
    replay, _ = submit(client, request=request, idempotency=_keyed(request))
    assert (replay.outcome, replay.job_id) == ("replayed", first_id)


def test_a_replay_reports_how_far_the_job_got(client, redis_client):
    request = InferRequest(prompt="x")
    _, job_id = submit(client, request=request, idempotency=_keyed(request))
    redis_client.hset(contract.job_key(job_id), "status", "done")
    assert submit(client, request=request, idempotency=_keyed(request))[0].job_status == "done"
    redis_client.delete(contract.job_key(job_id))  # its record's TTL ran out
    assert submit(client, request=request, idempotency=_keyed(request))[0].job_status == ""


def test_the_same_key_with_another_request_is_reused_and_writes_nothing(client, redis_client):
    first = InferRequest(prompt="one")
    submit(client, request=first, idempotency=_keyed(first))
    keys_before = set(redis_client.keys("*"))
    other = InferRequest(prompt="two")
    result, job_id = submit(client, request=other, idempotency=_keyed(other))
    assert result.outcome == "reused"
    assert not redis_client.exists(contract.job_key(job_id))
    assert set(redis_client.keys("*")) == keys_before
    assert redis_client.xlen(contract.JOB_STREAM) == 1


def test_keys_are_scoped_per_user(client, redis_client):
    request = InferRequest(prompt="same")
    a, a_id = submit(client, "user-a", request=request, idempotency=_keyed(request))
    b, b_id = submit(client, "user-b", request=request, idempotency=_keyed(request))
    assert (a.outcome, b.outcome) == ("queued", "queued")
    assert a_id != b_id
    assert stream_ids(redis_client) == [a_id, b_id]


def test_a_late_keyed_request_leaves_the_key_free(client, redis_client):
    request = InferRequest(prompt="late")
    assert submit(client, request=request, idempotency=_keyed(request), within_s=-1)[0].outcome == (
        "late"
    )
    retry, retry_id = submit(client, request=request, idempotency=_keyed(request))
    assert (retry.outcome, retry.job_id) == ("queued", retry_id)


def test_the_request_fingerprint_ignores_defaults_but_not_fields():
    assert records.fingerprint(InferRequest(prompt="x")) == records.fingerprint(
        InferRequest(prompt="x", idle=5)
    )
    assert records.fingerprint(InferRequest(prompt="x")) != records.fingerprint(
        InferRequest(prompt="x", idle=6)
    )


# --- the windows alone (POST /stop) ------------------------------------------------------------
STOP_LIMITS = RateLimits(burst=2, burst_window_ms=60_000, sustained=2, sustained_window_ms=60_000)


def test_limit_passes_the_limit_then_tells_how_long_to_wait(client, redis_client):
    key = contract.stop_rate_key("admin-1")
    assert [limit(client, key=key, member=f"m{i}", limits=STOP_LIMITS) for i in range(2)] == [0, 0]
    retry = limit(client, key=key, member="m3", limits=STOP_LIMITS)
    assert 55 <= retry <= 60
    assert redis_client.zcard(key) == 2  # the refused one is not counted
    assert 0 < redis_client.pttl(key) <= 60_000
    assert limit(client, key=contract.stop_rate_key("admin-2"), member="m", limits=STOP_LIMITS) == 0


def test_limit_and_admission_share_one_window_definition(client):
    """The same limits give the same answers through either script."""
    limits = RateLimits(burst=2, burst_window_ms=300, sustained=100, sustained_window_ms=60_000)
    key = contract.rate_key("user-a")
    assert [submit(client, limits=limits)[0].outcome for _ in range(2)] == ["queued"] * 2
    assert limit(client, key=key, member="x", limits=limits) == 1
    time.sleep(0.35)
    assert limit(client, key=key, member="y", limits=limits) == 0
    assert submit(client, limits=limits)[0].outcome == "queued"


# --- the closing mark (the stack falls asleep) -------------------------------------------------
def test_while_the_queue_closes_nothing_is_admitted(client, redis_client):
    redis_client.set(contract.CLOSING_KEY, "1", px=60_000)
    keys_before = set(redis_client.keys("*"))
    result, job_id = submit(client)
    assert result.outcome == "closing"
    assert set(redis_client.keys("*")) == keys_before  # no record, entry, window or open job
    redis_client.delete(contract.CLOSING_KEY)  # a node that starts clears the mark
    assert submit(client, job_id=job_id)[0].outcome == "queued"


def test_a_key_admitted_before_the_mark_still_replays(client, redis_client):
    request = InferRequest(prompt="before")
    _, first_id = submit(client, request=request, idempotency=_keyed(request))
    redis_client.set(contract.CLOSING_KEY, "1", px=60_000)
    replay, _ = submit(client, request=request, idempotency=_keyed(request))
    assert (replay.outcome, replay.job_id) == ("replayed", first_id)
    other = InferRequest(prompt="after")
    assert submit(client, request=other, idempotency=_keyed(other, "new"))[0].outcome == "closing"


def test_every_admitted_job_is_open_caps_or_not(client, redis_client):
    """The sleep counts the open jobs: admission records them even with the caps off."""
    _, job_id = submit(client)
    assert redis_client.zrange(contract.OPEN_JOBS_KEY, 0, -1) == [job_id]

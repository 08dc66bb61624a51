"""Napping → asleep: the queue probe's handshake (tlops.edge.sleep) on a real Redis and moto.

One Lua script decides, in Redis' clock: a watcher heartbeat is `awake` (and notes the
time), a current boot record `booting`, a job queued or running or a delivery not
acknowledged `busy`, a nap shorter than `sleep_after` `recent`, `sleep_after` 0 `never`;
all clear, it sets `queue:closing` and the probe saves what outlives the queue to
`survivors.json` and asks control for a deep sleep. `force` skips the nap's length and a
boot's record, never a job. Control then deletes the queue, only under a stopped node.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tlops.edge.queue_health
from tests.edge.test_router import body, infer_event
from tests.lambdas import LambdaContext, sample_event
from tests.support.control_fixtures import outcome
from tests.support.router_fixtures import *  # noqa: F403 - the fixtures
from tlops import contract
from tlops.common import aws
from tlops.contract import boot, records
from tlops.contract.control import Action
from tlops.edge import sleep
from tlops.edge.queue_health import QueueHealth
from tlops.edge.resp import RespClient
from tlops.edge.sleep import Verdict

pytestmark = pytest.mark.integration

TWO_HOURS_S = 7200  # roles/router/defaults: router_sleep_after_minutes, 120
HOUR_MS = 3_600_000


@pytest.fixture
def queue(redis_url) -> Iterator[RespClient]:
    """The probe's own client of the queue."""
    client = RespClient(redis_url)
    yield client
    client.close()


def redis_ms(redis_client) -> int:
    seconds, micros = redis_client.time()
    return seconds * 1000 + micros // 1000


def napped(redis_client, ms: int) -> None:
    """The queue's last sign of life `ms` ago (a heartbeat the probe noted then)."""
    redis_client.set(contract.LAST_AWAKE_KEY, redis_ms(redis_client) - ms)


def sleep_requests(relay) -> list[dict[str, Any]]:
    return [relay.read(key) for key in relay.requests(Action.SLEEP)]


# --- the verdicts that keep the queue -----------------------------------------------------------
def test_a_heartbeat_is_awake_and_notes_the_time(queue, redis_client, relay):
    redis_client.set(contract.HEARTBEAT_KEY, "1", ex=60)
    before = redis_ms(redis_client)
    looked = sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S)
    after = redis_ms(redis_client)

    assert looked.verdict == Verdict.AWAKE
    assert before <= looked.now_ms <= after
    assert int(redis_client.get(contract.LAST_AWAKE_KEY)) == looked.now_ms
    assert not redis_client.exists(contract.CLOSING_KEY)
    assert relay.keys() == []  # nothing saved, nothing asked


@pytest.mark.parametrize("phase", ["starting instance", "starting services", "loading model"])
def test_a_current_boot_is_booting(queue, redis_client, relay, phase):
    napped(redis_client, 3 * HOUR_MS)
    redis_client.hset(contract.NODE_BOOT_KEY, mapping={
        boot.PHASE: phase, boot.SINCE_MS: redis_ms(redis_client) - 5_000,
    })  # fmt: skip
    looked = sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S)
    assert looked.verdict == Verdict.BOOTING
    assert not redis_client.exists(contract.CLOSING_KEY)
    assert relay.keys() == []


def test_a_boot_record_left_behind_long_ago_does_not_keep_the_queue(queue, redis_client, relay):
    napped(redis_client, 3 * HOUR_MS)
    redis_client.hset(contract.NODE_BOOT_KEY, mapping={
        boot.PHASE: "loading model",
        boot.SINCE_MS: redis_ms(redis_client) - boot.STALE_AFTER_MS - 60_000,
    })  # fmt: skip
    looked = sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S)
    assert looked.verdict == Verdict.CLOSING


def test_a_queued_job_is_busy(router, queue, redis_client, relay, keyset):
    relay.record("running")  # the router queues without asking for a wake
    job_id = body(router.handle(infer_event(keyset.token())))["id"]
    assert redis_client.hget(contract.job_key(job_id), "status") == "queued"
    napped(redis_client, 3 * HOUR_MS)

    looked = sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S)

    assert (looked.verdict, looked.detail) == (Verdict.BUSY, 1)
    assert not redis_client.exists(contract.CLOSING_KEY)
    assert sleep_requests(relay) == []
    # and once it ran and is done, it keeps the queue no more
    redis_client.hset(contract.job_key(job_id), "status", "done")
    redis_client.xtrim(contract.JOB_STREAM, maxlen=0)  # its entry: not the newest sign of life
    assert sleep.tick(queue, sleep_after_s=TWO_HOURS_S).verdict == Verdict.CLOSING


def test_a_delivery_not_acknowledged_is_busy(queue, redis_client, relay):
    napped(redis_client, 3 * HOUR_MS)
    old = redis_ms(redis_client) - 3 * HOUR_MS
    redis_client.xadd(contract.JOB_STREAM, {"id": contract.new_job_id(), "sub": "s"}, id=f"{old}-0")
    redis_client.xgroup_create(contract.JOB_STREAM, contract.CONSUMER_GROUP, id="0")
    redis_client.xreadgroup(contract.CONSUMER_GROUP, "w1", {contract.JOB_STREAM: ">"}, count=1)

    looked = sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S)

    assert (looked.verdict, looked.detail) == (Verdict.BUSY, 1)
    assert relay.keys() == []


def test_force_never_closes_a_queue_with_a_job(router, queue, redis_client, relay, keyset):
    relay.record("running")
    router.handle(infer_event(keyset.token()))
    looked = sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S, force=True)
    assert looked.verdict == Verdict.BUSY
    assert not redis_client.exists(contract.CLOSING_KEY)
    assert sleep_requests(relay) == []


def test_a_first_look_at_an_unused_queue_starts_its_nap(queue, redis_client, relay):
    looked = sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S)
    assert (looked.verdict, looked.detail) == (Verdict.RECENT, TWO_HOURS_S * 1000)
    assert int(redis_client.get(contract.LAST_AWAKE_KEY)) == looked.now_ms


def test_a_nap_shorter_than_sleep_after_is_recent(queue, redis_client, relay):
    napped(redis_client, 600_000)  # ten minutes
    looked = sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S)
    assert looked.verdict == Verdict.RECENT
    left = TWO_HOURS_S * 1000 - 600_000  # what is left of the two hours
    assert left - 5_000 <= looked.detail <= left
    assert relay.keys() == []


def test_a_recent_job_counts_as_a_sign_of_life(queue, redis_client, relay):
    napped(redis_client, 3 * HOUR_MS)
    minute_ago = redis_ms(redis_client) - 60_000
    redis_client.xadd(contract.JOB_STREAM, {"id": contract.new_job_id(), "sub": "s"},
                      id=f"{minute_ago}-0")  # fmt: skip
    assert sleep.tick(queue, sleep_after_s=TWO_HOURS_S).verdict == Verdict.RECENT


def test_sleep_after_zero_never_sleeps(queue, redis_client, relay):
    napped(redis_client, 30 * 24 * HOUR_MS)
    looked = sleep.fall_asleep(queue, relay.bucket, sleep_after_s=0)
    assert looked.verdict == Verdict.NEVER
    assert not redis_client.exists(contract.CLOSING_KEY)
    assert relay.keys() == []


# --- all clear: closing ---------------------------------------------------------------------------
def test_an_idle_nap_closes_the_queue_and_saves_what_outlives_it(queue, redis_client, relay):
    napped(redis_client, 2 * HOUR_MS + 1_000)
    redis_client.rpush(contract.NODE_BOOT_TIMES_KEY, 40_000, 30_000)
    for n in range(3):
        redis_client.xadd(contract.DEAD_LETTER_STREAM, {"id": f"dead-{n}", "reason": "r"})
    live = contract.idempotency_key("alice", "k-1")
    redis_client.hset(live, mapping={records.IDEM_JOB: "j-1", records.IDEM_FINGERPRINT: "f"})
    redis_client.expire(live, 3000)

    looked = sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S)

    assert looked.verdict == Verdict.CLOSING
    ttl_ms = redis_client.pttl(contract.CLOSING_KEY)
    assert 0 < ttl_ms <= contract.CLOSING_TTL_SECONDS * 1000  # it lapses by itself
    saved = relay.read("survivors.json")
    assert saved["at_ms"] == looked.now_ms
    assert saved["boot_times"] == ["40000", "30000"]
    assert [d["fields"]["id"] for d in saved["dead_letters"]] == ["dead-0", "dead-1", "dead-2"]
    [kept] = saved["idempotency"]
    assert kept["key"] == live
    assert kept["fields"] == {records.IDEM_JOB: "j-1", records.IDEM_FINGERPRINT: "f"}
    assert 0 < kept["ttl_ms"] <= 3_000_000
    [key] = relay.requests(Action.SLEEP)
    assert key == f"requests/sleep/closing-{looked.now_ms}.json"
    asked = relay.read(key)
    assert (asked["by"], asked["deep"], asked["stop_node"]) == ("queue_health", True, False)


def test_the_newest_dead_letters_are_the_ones_saved(queue, redis_client, relay):
    napped(redis_client, 3 * HOUR_MS)
    for n in range(sleep.DEAD_LETTERS_KEPT + 5):
        redis_client.xadd(contract.DEAD_LETTER_STREAM, {"id": f"dead-{n}"})
    sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S)
    saved = relay.read("survivors.json")["dead_letters"]
    assert len(saved) == 100
    assert (saved[0]["fields"]["id"], saved[-1]["fields"]["id"]) == ("dead-5", "dead-104")


def test_a_job_that_expired_unrun_does_not_keep_the_queue(queue, redis_client, relay):
    """Its record says expired; its stream entry will only ever be marked so, not run."""
    napped(redis_client, 3 * HOUR_MS)
    job_id, old = contract.new_job_id(), redis_ms(redis_client) - 3 * HOUR_MS
    redis_client.hset(contract.job_key(job_id), mapping={"status": "expired", "sub": "s"})
    redis_client.zadd(contract.OPEN_JOBS_KEY, {job_id: old})
    redis_client.xadd(contract.JOB_STREAM, {"id": job_id, "sub": "s"}, id=f"{old}-0")
    assert sleep.tick(queue, sleep_after_s=TWO_HOURS_S).verdict == Verdict.CLOSING

    # the same job still queued keeps it
    redis_client.delete(contract.CLOSING_KEY)
    redis_client.hset(contract.job_key(job_id), "status", "queued")
    assert sleep.tick(queue, sleep_after_s=TWO_HOURS_S).verdict == Verdict.BUSY


@pytest.mark.parametrize("keeper", ["recent", "booting", "awake"])
def test_force_skips_the_nap_and_a_boot_and_stops_the_node_first(
    queue, redis_client, relay, keeper
):
    if keeper == "recent":
        napped(redis_client, 60_000)
    elif keeper == "booting":
        redis_client.hset(contract.NODE_BOOT_KEY, mapping={
            boot.PHASE: "loading model", boot.SINCE_MS: redis_ms(redis_client),
        })  # fmt: skip
    else:
        redis_client.set(contract.HEARTBEAT_KEY, "1", ex=60)
    assert sleep.tick(queue, sleep_after_s=TWO_HOURS_S).verdict != Verdict.CLOSING

    looked = sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S, force=True)

    assert looked.verdict == Verdict.CLOSING
    [asked] = sleep_requests(relay)
    assert (asked["deep"], asked["stop_node"]) == (True, True)


# --- the rest of the handshake: the mark, then control ------------------------------------------
def test_after_the_mark_a_request_is_held_and_control_deletes_the_queue(
    router, gpu_node, queue, redis_client, relay, redis_server, keyset
):
    relay.make_queue()
    assert relay.observe(queue_url=redis_server.url)["state"] == "napping"
    napped(redis_client, 3 * HOUR_MS)
    redis_client.rpush(contract.NODE_BOOT_TIMES_KEY, 40_000, 30_000)
    assert sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S).verdict == "closing"

    late = router.handle(infer_event(keyset.token(sub="late")))  # races the deletion
    assert body(late)["status"] == "waking"
    assert redis_client.xlen(contract.JOB_STREAM) == 0

    control = relay.control(makes_queue=True, queue_url=redis_server.url)
    [slept] = relay.deliver(control, only=Action.SLEEP)
    assert slept == {"action": "sleep", "outcome": "asleep", "deleted": ["tinyllama-queue-1"]}
    groups = aws.client("elasticache").describe_replication_groups()["ReplicationGroups"]
    assert [g["Status"] for g in groups] == ["deleting"]
    recorded = relay.state()
    assert (recorded["state"], recorded["queue"]) == ("asleep", None)
    assert recorded["boot_times_ms"] == [40_000, 30_000]  # the wake's ETA needs them
    assert len(relay.held("late")) == 1

    # the held request's wake comes next: a new queue, under a fresh id (the deleted one's
    # stays taken while ElastiCache deletes it), and the node started
    [woken] = relay.deliver(control, only=Action.WAKE)
    assert (woken["outcome"], woken["queue"], woken["created"]) == (
        "awake", "tinyllama-queue-2", True,
    )  # fmt: skip
    assert relay.state()["state"] == "awake"


def test_control_keeps_the_queue_under_a_node_that_runs(gpu_node, queue, redis_client, relay):
    """A wake that started the node between the mark and the deletion wins."""
    relay.make_queue()
    napped(redis_client, 3 * HOUR_MS)
    assert sleep.fall_asleep(queue, relay.bucket, sleep_after_s=TWO_HOURS_S).verdict == "closing"
    aws.client("ec2").start_instances(InstanceIds=[gpu_node])

    slept = outcome(relay.deliver(makes_queue=True), Action.SLEEP)

    assert (slept["outcome"], slept["reason"]) == ("not taken", "the node is running")
    groups = aws.client("elasticache").describe_replication_groups()["ReplicationGroups"]
    assert [g["Status"] for g in groups] == ["available"]


# --- run by the queue probe ---------------------------------------------------------------------
@pytest.fixture
def probe(router_env, monkeypatch) -> QueueHealth:
    monkeypatch.setenv("TL_SLEEP_AFTER_S", str(TWO_HOURS_S))
    monkeypatch.setattr(tlops.edge.queue_health, "_health", None)
    return QueueHealth.from_env()


def test_the_scheduled_probe_puts_an_idle_nap_to_sleep(probe, redis_client, relay):
    napped(redis_client, 2 * HOUR_MS + 1_000)
    found = probe.handle(sample_event("scheduled"))
    assert found["redis"] == "ok"
    assert found["sleep"] == {"verdict": "closing", "detail": 0}
    [asked] = sleep_requests(relay)
    assert asked["stop_node"] is False


def test_the_scheduled_probe_leaves_a_short_nap_alone(probe, redis_client, relay):
    napped(redis_client, 60_000)
    found = probe.handle(sample_event("scheduled"))
    assert found["sleep"]["verdict"] == "recent"
    assert relay.keys() == []


def test_the_sleep_event_forces_it(router_env, monkeypatch, redis_client, relay):
    """`tlops ops sleep --deep` and the scheduled sleep invoke the probe with {"sleep":
    {"force": true}}: the nap's length does not count, and the node is stopped first."""
    monkeypatch.setattr(tlops.edge.queue_health, "_health", None)
    napped(redis_client, 60_000)
    found = tlops.edge.queue_health.lambda_handler(sample_event("sleep"), LambdaContext())
    assert found == {"verdict": "closing", "detail": 0}
    [asked] = sleep_requests(relay)
    assert (asked["deep"], asked["stop_node"]) == (True, True)


def test_without_a_control_bucket_the_probe_asks_for_no_sleep(redis_url, monkeypatch):
    monkeypatch.setenv("TL_REDIS_URL", redis_url)
    monkeypatch.delenv("TL_CONTROL_BUCKET", raising=False)
    assert QueueHealth.from_env().fall_asleep() == {
        "verdict": "off",
        "reason": "no control bucket is configured",
    }

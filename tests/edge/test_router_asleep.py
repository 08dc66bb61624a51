"""The router while the stack sleeps, and while it falls asleep, against real Redis and moto.

Asleep, there is no queue: Redis refuses the connection, and the router reads the state
control recorded. Asleep or waking, the job is held in the control bucket under
`held/<sub>/`, a wake is asked and the answer is 202 `waking`; awake or napping, it is
503 `queue_unavailable` as before, with nothing held. The rate limit, the caps and the
Idempotency-Key hold for held jobs too. While the sleep's `queue:closing` mark is set,
admission takes nothing and the router holds the job instead (docs/decisions.md,
"Sleep and wake").

The state is what control records when it looks (`relay.observe`: the node stopped and no
queue group is asleep), and Redis is stopped the way the sleep deletes the queue.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import http_event
from tests.edge.test_router import body, emf, infer_event, stdout_records, stream_ids
from tests.support.control_fixtures import outcome
from tests.support.router_fixtures import *  # noqa: F403 - the fixtures
from tlops import contract
from tlops.common import aws
from tlops.contract.control import Action
from tlops.edge import status
from tlops.edge.router import Router, RouterConfig
from tlops.local.services import RedisProcess

pytestmark = pytest.mark.integration

WAKE_ETA_S = 600  # roles/router/defaults: router_wake_eta_s, until a wake was measured
HELD_KEY = re.compile(r"held/(?P<sub>[^/]+)/(?P<ms>\d{13})-(?P<id>[0-9a-f-]{36})\.json")


def get_job(router: Router, token: str, job_id: str) -> dict[str, Any]:
    event = http_event("GET", f"/jobs/{job_id}", token=token)
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /jobs/{id}"
    event["pathParameters"] = {"id": job_id}
    return router.handle(event)


def keyed(token: str, key: str, payload: Any = None) -> dict[str, Any]:
    return infer_event(token, payload, headers={"idempotency-key": key})


@pytest.fixture
def asleep(router_env, gpu_node, relay, redis_server) -> Iterator[dict[str, Any]]:
    """The stack asleep: the node stopped, no queue group (control's record), Redis gone."""
    recorded = relay.observe()
    assert recorded["state"] == "asleep"
    redis_server.stop()
    try:
        yield recorded
    finally:
        if not redis_server.running:
            redis_server.start()


# --- asleep: the job is held, the stack woken ----------------------------------------------
def test_a_job_while_asleep_is_held_and_the_stack_woken(
    router, asleep, relay, redis_server, gpu_node, keyset, capsys
):
    sub = "sleeper"
    before_ms = int(time.time() * 1000)
    result = router.handle(infer_event(keyset.token(sub=sub), {"prompt": "wake up", "idle": 3}))
    after_ms = int(time.time() * 1000)

    assert result["statusCode"] == 202
    answer = body(result)
    assert answer == {"status": "waking", "eta": WAKE_ETA_S, "id": answer["id"]}
    assert contract.is_job_id(answer["id"])
    assert result["headers"]["x-gpu-coldboot"] == "true"
    # held under the user's prefix, named by its time and id
    [key] = relay.held()
    held = HELD_KEY.fullmatch(key)
    assert held is not None, key
    assert (held["sub"], held["id"]) == (sub, answer["id"])
    assert before_ms <= int(held["ms"]) <= after_ms
    stored = relay.read(key)
    assert (stored["id"], stored["sub"], stored["held_ms"]) == (answer["id"], sub, int(held["ms"]))
    assert stored["idempotency"] is None
    fields = stored["fields"]
    assert (fields["status"], fields["sub"], fields["prompt"], fields["idle"]) == (
        "queued", sub, "wake up", "3",
    )  # fmt: skip
    assert fields["reply_s3"] == f"s3://replies-test/{sub}/{answer['id']}.json"
    # one wake asked; a held job is no failed enqueue (the redis-enqueue-fail alarm)
    [wake] = relay.requests(Action.WAKE)
    assert relay.read(wake)["reason"] == "a request while the stack sleeps"
    assert emf(stdout_records(capsys), "RedisEnqueueFail") == []

    # control, handed the wake, makes the queue again and starts the node side by side
    woken = outcome(relay.deliver(makes_queue=True, queue_url=redis_server.url), Action.WAKE)
    assert (woken["outcome"], woken["created"], woken["started"]) == ("awake", True, True)
    recorded = relay.state()
    assert recorded["state"] == "awake"
    assert recorded["queue"] == {"id": "tinyllama-queue-1", "status": "available",
                                 "url": redis_server.url}  # fmt: skip
    assert recorded["node"]["instance"] == gpu_node
    assert len(recorded["wakes_ms"]) == 1  # the next wake's ETA is measured


def test_the_eta_is_the_longer_of_the_measured_wake_and_boot(router, asleep, relay, keyset):
    # the queue's creation 400, 200, 300 s (median 300 s); the boots 90 s: the wake is longer
    relay.record("stopped", wakes_ms=[400_000, 200_000, 300_000], boot_times_ms=[90_000])
    answer = body(router.handle(infer_event(keyset.token())))
    assert answer["status"] == "waking"
    assert answer["eta"] == 300


def test_many_requests_while_asleep_ask_one_wake_a_minute(router, asleep, relay, keyset):
    answers = [body(router.handle(infer_event(keyset.token()))) for _ in range(3)]
    assert [a["status"] for a in answers] == ["waking"] * 3
    assert len(relay.held()) == 3
    assert len(relay.requests(Action.WAKE)) in (1, 2)  # 2 only across a minute's turn


def test_a_wake_served_earlier_in_the_minute_does_not_swallow_the_next(
    router, asleep, relay, redis_server, keyset
):
    """Woken, then asleep again within the minute (a forced deep sleep): the next request
    asks control again; the served wake's name is not the new one's."""
    assert body(router.handle(infer_event(keyset.token())))["status"] == "waking"
    woken = outcome(relay.deliver(makes_queue=True, queue_url=redis_server.url), Action.WAKE)
    assert woken["outcome"] == "awake"
    assert relay.record("stopped")["state"] == "asleep"  # the node stopped, the queue deleted
    assert body(router.handle(infer_event(keyset.token())))["status"] == "waking"
    assert len(relay.requests(Action.WAKE)) == 2


def test_a_held_job_is_queued_waking_the_queue_for_its_owner_only(router, asleep, keyset):
    owner = keyset.token(sub="owner")
    job_id = body(router.handle(infer_event(owner)))["id"]

    mine = get_job(router, owner, job_id)
    assert mine["statusCode"] == 200
    assert body(mine) == {
        "id": job_id,
        "status": "queued",
        "attempts": 0,
        "held": True,
        "boot_phase": "waking the queue",
    }
    theirs = get_job(router, keyset.token(sub="someone-else"), job_id)
    assert theirs["statusCode"] == 404
    assert body(theirs) == {"error": "not_found", "id": job_id}


def test_a_refused_wake_shows_in_the_held_jobs_view(router, asleep, relay, keyset):
    """The budget killer's mark makes control refuse every wake; the client polling its held
    job learns why nothing happens."""
    relay.bucket.put_json("killed.json", {"at_ms": int(time.time() * 1000)})
    token = keyset.token(sub="owner")
    job_id = body(router.handle(infer_event(token)))["id"]
    refused = outcome(relay.deliver(makes_queue=True), Action.WAKE)
    assert refused["outcome"] == "refused"
    # (the container that held the job keeps the state it read for a few seconds: another
    # container, or the same one a little later, reads what control recorded since)
    view = body(get_job(Router(RouterConfig.from_env()), token, job_id))
    assert view["status"] == "queued"
    assert view["wake_error"] == (
        "the budget killer stopped the stack; see docs/ops/budget_recovery.md"
    )
    assert aws.client("elasticache").describe_replication_groups()["ReplicationGroups"] == []


def test_a_finished_jobs_result_outlives_the_queue(router, asleep, keyset):
    """The record went with the queue; the result in S3 is still the caller's answer."""
    s3 = aws.client("s3")
    s3.create_bucket(
        Bucket="replies-test", CreateBucketConfiguration={"LocationConstraint": aws.region()}
    )
    job_id = contract.new_job_id()
    result = {"id": job_id, "status": "done", "output": "good morning"}
    s3.put_object(Bucket="replies-test", Key=f"alice/{job_id}.json",
                  Body=json.dumps(result).encode())  # fmt: skip

    mine = get_job(router, keyset.token(sub="alice"), job_id)
    assert mine["statusCode"] == 200
    view = body(mine)
    assert (view["id"], view["status"], view["output"]) == (job_id, "done", "good morning")
    assert get_job(router, keyset.token(sub="bob"), job_id)["statusCode"] == 404
    unknown = get_job(router, keyset.token(sub="alice"), contract.new_job_id())
    assert unknown["statusCode"] == 404


def test_status_while_asleep_says_the_queue_sleeps(router, asleep, gpu_node, keyset):
    event = http_event("GET", "/status", token=keyset.token())
    result = router.handle(event)
    assert result["statusCode"] == 200
    answer = body(result)
    assert answer["state"] == "asleep"
    assert (answer["node"]["state"], answer["node"]["instance"]) == ("stopped", gpu_node)
    assert answer["queue"] == {"error": status.QUEUE_ASLEEP, "asleep": True}
    assert answer["boot"] == {"phase": None, "booting": False, "instance": None}


# --- asleep: the limits still hold ------------------------------------------------------------
def test_the_per_user_cap_holds_while_asleep(router_env, monkeypatch, asleep, relay, keyset):
    monkeypatch.setenv("TL_QUEUE_CAP_PER_USER", "2")
    router = Router(RouterConfig.from_env())
    token = keyset.token(sub="greedy")
    passed = [router.handle(infer_event(token)) for _ in range(2)]
    refused = router.handle(infer_event(token))

    assert [r["statusCode"] for r in passed] == [202, 202]
    assert refused["statusCode"] == 429
    retry_after = int(refused["headers"]["retry-after"])
    assert retry_after == contract.QUEUE_FULL_RETRY_SECONDS[1]
    assert body(refused) == {
        "error": "user_queue_full",
        "retry_after": retry_after,
        "limit": 2,
        "message": "2 of your jobs are queued or running; nothing was queued",
    }
    assert len(relay.held("greedy")) == 2
    assert router.handle(infer_event(keyset.token(sub="modest")))["statusCode"] == 202


def test_the_burst_limit_holds_while_asleep(router_env, monkeypatch, asleep, relay, keyset, capsys):
    monkeypatch.setenv("TL_RATE_BURST", "2")
    router = Router(RouterConfig.from_env())
    # The held jobs' names carry the router's time: held still, the three requests fall in
    # one burst window (1 s) however long the stand-in's S3 takes to answer.
    frozen = time.time()
    router.control.clock = lambda: frozen
    token = keyset.token(sub="hasty")

    passed = [router.handle(infer_event(token)) for _ in range(2)]
    limited = router.handle(infer_event(token))

    assert [r["statusCode"] for r in passed] == [202, 202]
    assert limited["statusCode"] == 429
    assert limited["headers"]["retry-after"] == "1"  # the burst window is a second
    assert body(limited) == {"error": "rate_limited", "retry_after": 1}
    assert len(emf(stdout_records(capsys), "ApiRateLimitBreaches")) == 1
    assert len(relay.held("hasty")) == 2


def test_an_idempotent_retry_while_asleep_gets_the_same_job(router, asleep, relay, keyset):
    token = keyset.token(sub="retrier")
    first = router.handle(keyed(token, "k-asleep", {"prompt": "one"}))
    again = router.handle(keyed(token, "k-asleep", {"prompt": "one"}))
    other = router.handle(keyed(token, "k-asleep", {"prompt": "two"}))

    assert (first["statusCode"], again["statusCode"]) == (202, 202)
    assert body(again)["id"] == body(first)["id"]
    assert body(again)["status"] == "waking"
    assert again["headers"]["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first["headers"]
    assert other["statusCode"] == 409
    assert body(other)["error"] == "idempotency_key_reused"
    [key] = relay.held("retrier")
    assert relay.read(key)["idempotency"]["key"] == "k-asleep"


# --- awake or napping: Redis down is an outage --------------------------------------------------
@pytest.mark.parametrize("node_running", [False, True], ids=["napping", "awake"])
def test_redis_down_while_not_asleep_is_503_and_holds_nothing(
    router, gpu_node, relay, redis_server, keyset, capsys, node_running
):
    relay.make_queue()
    if node_running:
        aws.client("ec2").start_instances(InstanceIds=[gpu_node])
    recorded = relay.observe(queue_url=redis_server.url)
    assert recorded["state"] == ("awake" if node_running else "napping")
    redis_server.stop()
    try:
        result = router.handle(infer_event(keyset.token()))
    finally:
        redis_server.start()

    assert result["statusCode"] == 503
    assert body(result) == {"error": "queue_unavailable"}
    assert relay.held() == []
    assert relay.requests(Action.WAKE) == []
    assert len(emf(stdout_records(capsys), "RedisEnqueueFail")) == 1


# --- a wake made a new queue elsewhere ---------------------------------------------------------
@pytest.fixture
def new_queue(tmp_path) -> Iterator[RedisProcess]:
    """The queue a wake made, at an address the router was not configured with."""
    server = RedisProcess(tmp_path / "redis-2")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_queue_that_moved_takes_the_job(router, gpu_node, relay, redis_server, new_queue, keyset):
    relay.make_queue(2)
    recorded = relay.observe(queue_url=new_queue.url)
    assert recorded["queue"]["url"] == new_queue.url
    redis_server.stop()  # the address the router was configured with answers no more
    moved = new_queue_client(new_queue)
    try:
        first = router.handle(infer_event(keyset.token(sub="mover")))
        second = router.handle(infer_event(keyset.token(sub="mover")))
    finally:
        redis_server.start()

    assert (first["statusCode"], second["statusCode"]) == (202, 202)
    ids = [body(first)["id"], body(second)["id"]]
    assert body(first)["status"] == "starting"  # napping: the node is asked for, as ever
    assert [fields["id"] for _, fields in moved.xrange(contract.JOB_STREAM)] == ids
    assert moved.hget(contract.job_key(ids[0]), "sub") == "mover"
    assert relay.held() == []
    moved.close()


def new_queue_client(server: RedisProcess):
    import redis as redis_py

    return redis_py.Redis.from_url(server.url, decode_responses=True)


# --- the closing race --------------------------------------------------------------------------
def test_while_the_queue_closes_a_request_is_held_not_queued(
    router, gpu_node, relay, redis_client, keyset
):
    relay.observe()
    redis_client.set(contract.CLOSING_KEY, "1", px=60_000)

    result = router.handle(infer_event(keyset.token(sub="late")))

    assert result["statusCode"] == 202
    answer = body(result)
    assert answer["status"] == "waking"
    assert stream_ids(redis_client) == []
    assert redis_client.exists(contract.job_key(answer["id"])) == 0
    assert redis_client.zcard(contract.OPEN_JOBS_KEY) == 0
    [key] = relay.held("late")
    assert key.endswith(f"-{answer['id']}.json")
    assert len(relay.requests(Action.WAKE)) == 1


def test_a_key_admitted_before_the_queue_closed_still_replays(
    router, heartbeat, relay, redis_client, keyset
):
    token = keyset.token(sub="early")
    first = router.handle(keyed(token, "before-closing"))
    assert body(first)["status"] == "queued"
    redis_client.set(contract.CLOSING_KEY, "1", px=60_000)

    retry = router.handle(keyed(token, "before-closing"))

    assert retry["statusCode"] == 202
    assert body(retry) == {"status": "queued", "id": body(first)["id"]}
    assert retry["headers"]["idempotent-replayed"] == "true"
    assert stream_ids(redis_client) == [body(first)["id"]]
    assert relay.held() == []

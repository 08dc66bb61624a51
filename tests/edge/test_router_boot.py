"""The router's side of the node's boot, against real Redis and the moto stand-in.

A cold boot (the router asks control for a wake) writes `starting instance` with
the node control recorded; its ETA is the median of the measured boots
(`node:boot_times`), the configured one until there is one; a boot under way
someone else started (the node recorded pending) gets what is left of it;
`GET /jobs/{id}` of a queued job shows the phase while a boot runs; `POST /stop`
ends it.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import http_event
from tests.edge.test_router import body, infer_event
from tests.support.router_fixtures import *  # noqa: F403 - the fixtures
from tests.support.router_fixtures import admin_token
from tlops import contract
from tlops.contract import boot
from tlops.edge.router import Router, RouterConfig

pytestmark = pytest.mark.integration


def job_view(router: Router, token: str, job_id: str) -> dict:
    event = http_event("GET", f"/jobs/{job_id}", token=token)
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /jobs/{id}"
    event["pathParameters"] = {"id": job_id}
    result = router.handle(event)
    assert result["statusCode"] == 200, result
    return body(result)


def redis_ms(redis_client) -> int:
    seconds, micros = redis_client.time()
    return seconds * 1000 + micros // 1000


def test_a_cold_boot_records_starting_instance_in_redis_time(
    router, gpu_node, relay, redis_client, keyset
):
    relay.observe()  # control recorded the stopped node: the router names it in the record
    before_ms = redis_ms(redis_client)
    answer = body(router.handle(infer_event(keyset.token())))
    after_ms = redis_ms(redis_client)
    assert answer["status"] == "starting"
    record = redis_client.hgetall(contract.NODE_BOOT_KEY)
    assert record[boot.PHASE] == "starting instance"
    assert record[boot.INSTANCE] == gpu_node
    assert record[boot.SINCE_MS] == record[boot.STARTED_MS]
    assert before_ms <= int(record[boot.STARTED_MS]) <= after_ms


def test_the_eta_is_the_median_of_the_measured_boots(router, gpu_node, redis_client, keyset):
    # newest first, as the node writes them: 40, 20, 60, 30 s → median 35 s
    redis_client.rpush(contract.NODE_BOOT_TIMES_KEY, 40_000, 20_000, 60_000, 30_000)
    answer = body(router.handle(infer_event(keyset.token())))
    assert answer == {"status": "starting", "eta": 35, "id": answer["id"]}


def test_one_measured_boot_replaces_the_configured_eta(router, gpu_node, redis_client, keyset):
    redis_client.lpush(contract.NODE_BOOT_TIMES_KEY, 12_345)
    assert body(router.handle(infer_event(keyset.token())))["eta"] == 13  # rounded up


def test_a_boot_under_way_gets_what_is_left_of_the_median(router, relay, redis_client, keyset):
    relay.record("pending")  # moto has no pending state: recorded as control would
    now_ms = int(redis_client.time()[0]) * 1000
    redis_client.hset(
        contract.NODE_BOOT_KEY,
        mapping={boot.PHASE: "loading model", boot.SINCE_MS: now_ms - 5_000,
                 boot.STARTED_MS: now_ms - 30_000, boot.INSTANCE: "i-0123456789abcdef0"},
    )  # fmt: skip
    redis_client.lpush(contract.NODE_BOOT_TIMES_KEY, 50_000)
    answer = body(router.handle(infer_event(keyset.token())))
    assert answer["status"] == "starting"
    assert 19 <= answer["eta"] <= 21  # 50 s less the 30 s already spent
    # someone else's boot is not restarted in the record
    assert redis_client.hget(contract.NODE_BOOT_KEY, boot.PHASE) == "loading model"


def test_redis_failing_after_the_start_still_answers_the_configured_eta(
    router_env, gpu_node, redis_client, keyset, monkeypatch
):
    from tlops.edge import boot as edge_boot
    from tlops.edge.resp import Script

    router = Router(RouterConfig.from_env())
    # the boot script fails in Redis (as a failover between admission and it would)
    monkeypatch.setattr(edge_boot, "_START", Script("return redis.call('NO_SUCH_COMMAND')"))
    answer = body(router.handle(infer_event(keyset.token())))
    assert answer["status"] == "starting"
    assert answer["eta"] == 90


def test_a_queued_job_shows_the_boot_phase_until_ready(router, gpu_node, redis_client, keyset):
    token = keyset.token(sub="alice")
    job_id = body(router.handle(infer_event(token)))["id"]
    assert job_view(router, token, job_id)["boot_phase"] == "starting instance"
    for phase in ("starting services", "loading model"):
        redis_client.hset(contract.NODE_BOOT_KEY, boot.PHASE, phase)
        assert job_view(router, token, job_id)["boot_phase"] == phase
    redis_client.hset(contract.NODE_BOOT_KEY, boot.PHASE, "ready")
    assert "boot_phase" not in job_view(router, token, job_id)
    # a running job says nothing of boots
    redis_client.hset(contract.NODE_BOOT_KEY, boot.PHASE, "loading model")
    redis_client.hset(contract.job_key(job_id), "status", "running")
    assert "boot_phase" not in job_view(router, token, job_id)


def test_a_boot_phase_left_behind_long_ago_is_not_shown(router, heartbeat, redis_client, keyset):
    token = keyset.token(sub="alice")
    job_id = body(router.handle(infer_event(token)))["id"]
    long_ago = int(time.time() * 1000) - boot.STALE_AFTER_MS - 60_000
    redis_client.hset(
        contract.NODE_BOOT_KEY, mapping={boot.PHASE: "loading model", boot.SINCE_MS: long_ago}
    )
    assert "boot_phase" not in job_view(router, token, job_id)


def test_stop_ends_the_boot_record(router, gpu_node, relay, redis_client, keyset):
    relay.observe()
    router.handle(infer_event(keyset.token()))  # asks for the node's start
    assert redis_client.hget(contract.NODE_BOOT_KEY, boot.PHASE) == "starting instance"
    result = router.handle(http_event("POST", "/stop", token=admin_token(keyset)))
    assert result["statusCode"] == 202, result
    record = redis_client.hgetall(contract.NODE_BOOT_KEY)
    assert record[boot.PHASE] == "stopped"
    assert record[boot.INSTANCE] == gpu_node

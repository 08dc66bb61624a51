"""`GET /jobs` and `POST /jobs/{id}/cancel` through the router: real redis-server, the moto
S3, test-signed tokens (issue 21, items 3 and 4).

Jobs are admitted through `POST /infer` as a client would; running and finished records are
written the way the watcher writes them. The list is the caller's own, newest first, a page
at a time; the cancel of a queued job keeps it from ever running, of a running one marks it
for the watcher, of a finished one changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from typing import Any

import pytest

from tests.conftest import http_event
from tests.doubles.inference import InferenceDouble
from tests.support.router_fixtures import *  # noqa: F403 - the fixtures
from tests.support.watcher_fixtures import make_bucket, pending_count, statuses, wait_for
from tlops import contract
from tlops.common import aws
from tlops.common.control_bucket import ControlBucket
from tlops.common.telemetry import Telemetry
from tlops.edge.router import Router, RouterConfig
from tlops.node.held import HeldJobs
from tlops.node.runner import OpenAIRunner
from tlops.node.settings import parse_settings
from tlops.node.watcher import Watcher

pytestmark = pytest.mark.integration

REPLY_BUCKET = "replies-test"  # what conftest.router_env sets


# --- helpers --------------------------------------------------------------------------
def call(router: Router, event: dict[str, Any], route: str) -> tuple[int, dict[str, Any]]:
    event["routeKey"] = event["requestContext"]["routeKey"] = route
    answer = router.handle(event)
    return answer["statusCode"], json.loads(answer["body"])


def submit(router: Router, token: str, payload: dict[str, Any] | None = None) -> str:
    raw = json.dumps(payload or {"prompt": "hello"})
    status, body = call(router, http_event("POST", "/infer", body=raw, token=token), "POST /infer")
    assert status == 202, body
    return body["id"]


def list_jobs(router: Router, token: str, **query: str) -> tuple[int, dict[str, Any]]:
    event = http_event("GET", "/jobs", token=token)
    if query:
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return call(router, event, "GET /jobs")


def every_page(router: Router, token: str, limit: int) -> list[list[str]]:
    pages, query = [], {"limit": str(limit)}
    for _ in range(50):  # a cursor that does not move on fails the test, not hangs it
        status, body = list_jobs(router, token, **query)
        assert status == 200, body
        pages.append([job["id"] for job in body["jobs"]])
        if body["next_cursor"] is None:
            return pages
        query["cursor"] = body["next_cursor"]
    pytest.fail("the list never ended")


def cancel(router: Router, token: str, job_id: str) -> tuple[int, dict[str, Any]]:
    event = http_event("POST", f"/jobs/{job_id}/cancel", token=token)
    event["pathParameters"] = {"id": job_id}
    return call(router, event, "POST /jobs/{id}/cancel")


def get_job(router: Router, token: str, job_id: str) -> tuple[int, dict[str, Any]]:
    event = http_event("GET", f"/jobs/{job_id}", token=token)
    event["pathParameters"] = {"id": job_id}
    return call(router, event, "GET /jobs/{id}")


def record(redis_client, sub: str, status: str, **fields: str) -> str:
    """A record as the watcher leaves it (running, or settled), with its list entry."""
    job_id = contract.new_job_id()
    redis_client.hset(contract.job_key(job_id), mapping={
        "status": status, "sub": sub, "prompt": "secret prompt", "attempts": "1", "error": "",
        "reply_s3": contract.reply_s3_uri(REPLY_BUCKET, sub, job_id), "ts": "1000", **fields,
    })  # fmt: skip
    redis_client.zadd(contract.jobs_of_key(sub), {job_id: 1000})
    return job_id


def next_ms(redis_client) -> None:
    """Wait until Redis' clock is past the ms it reads now, so the next admission is newer."""

    def now_ms() -> int:
        seconds, micros = redis_client.time()
        return seconds * 1000 + micros // 1000

    start = now_ms()
    wait_for(lambda: now_ms() > start, "Redis' clock to move")


@pytest.fixture
def alice(keyset) -> str:
    return keyset.token(sub="alice")


# --- the list -------------------------------------------------------------------------
def test_the_list_is_the_callers_own_newest_first_a_page_at_a_time(
    router, heartbeat, redis_client, keyset, alice
):
    mine = []
    for index in range(5):
        next_ms(redis_client)
        mine.append(submit(router, alice))
        if index == 2:
            submit(router, keyset.token(sub="bob"))  # in between: never in alice's list

    assert every_page(router, alice, limit=2) == [mine[:2:-1], mine[2:0:-1], mine[:1]]
    status, body = list_jobs(router, alice)  # default limit 20: all on one page
    assert status == 200 and body["next_cursor"] is None
    assert [job["id"] for job in body["jobs"]] == mine[::-1]
    first = body["jobs"][-1]
    assert set(first) == {"id", "status", "created_at_ms", "kind"}
    assert (first["status"], first["kind"]) == ("queued", "prompt")
    assert first["created_at_ms"] == int(redis_client.hget(contract.job_key(mine[0]), "ts"))
    assert len(every_page(router, keyset.token(sub="bob"), limit=20)[0]) == 1
    assert every_page(router, keyset.token(sub="carol"), limit=20) == [[]]


def test_jobs_of_the_same_ms_are_each_listed_once_across_pages(router, redis_client, alice):
    ids = [record(redis_client, "alice", "done") for _ in range(3)]  # all scored 1000
    pages = every_page(router, alice, limit=1)
    assert [job for page in pages for job in page] == sorted(ids, reverse=True)
    assert pages[-1] != []  # the last page is known as such: no empty page after it


def test_a_job_whose_record_is_gone_is_dropped_from_the_list(router, redis_client, alice):
    older, gone = record(redis_client, "alice", "done"), record(redis_client, "alice", "done")
    redis_client.zadd(contract.jobs_of_key("alice"), {older: 900})
    redis_client.delete(contract.job_key(gone))  # its finished TTL ran out
    assert every_page(router, alice, limit=1) == [[older]]
    assert redis_client.zscore(contract.jobs_of_key("alice"), gone) is None


def test_the_summary_says_when_it_finished_and_what_kind_it_was(
    router, heartbeat, redis_client, alice
):
    chat = submit(router, alice, {"messages": [{"role": "user", "content": "hi"}]})
    cancel(router, alice, chat)
    [job] = list_jobs(router, alice)[1]["jobs"]
    assert (job["id"], job["status"], job["kind"]) == (chat, "cancelled", "chat")
    assert job["finished_at_ms"] >= job["created_at_ms"] > 0


def test_the_admission_keeps_the_newest_200_and_outlives_the_records(
    router, heartbeat, redis_client, alice
):
    listed = contract.jobs_of_key("alice")
    redis_client.zadd(listed, {contract.new_job_id(): n for n in range(1, 201)})
    newest = submit(router, alice)
    assert redis_client.zcard(listed) == 200
    assert redis_client.zrevrange(listed, 0, 0) == [newest]
    assert redis_client.zscore(listed, newest) == int(
        redis_client.hget(contract.job_key(newest), "ts")
    )
    # a finished record lives FINISHED_TTL_SECONDS after its queued TTL at most
    lives = RouterConfig.from_env().job_ttl_s + contract.FINISHED_TTL_SECONDS
    assert redis_client.ttl(listed) >= lives


@pytest.mark.parametrize("limit", ["5x", "0", "101", "-1", "", "1.5"])
def test_a_bad_limit_is_400_naming_it(router, alice, limit):
    status, body = list_jobs(router, alice, limit=limit)
    assert (status, body["error"], body["field"]) == (400, "invalid_request", "limit")


def test_a_cursor_made_for_another_user_or_by_nobody_is_400(router, redis_client, keyset, alice):
    for _ in range(2):
        record(redis_client, "alice", "done")
    cursor = list_jobs(router, alice, limit="1")[1]["next_cursor"]
    status, body = list_jobs(router, keyset.token(sub="bob"), cursor=cursor)
    assert (status, body["field"]) == (400, "cursor")
    assert "another user" in body["message"]

    job_id = contract.new_job_id()
    forged = f"1000:{job_id}:{hashlib.sha256(b'alice').hexdigest()[:15]}"
    for bad in ["x", "!!!!", base64.urlsafe_b64encode(forged.encode()).decode(), "A" * 201]:
        status, body = list_jobs(router, alice, cursor=bad)
        assert (status, body["field"]) == (400, "cursor"), bad


# --- the cancel -----------------------------------------------------------------------
def test_a_cancelled_queued_job_never_runs(router, heartbeat, redis_client, redis_url, alice,
                                           tmp_path):  # fmt: skip
    cancelled = submit(router, alice, {"prompt": "never run"})
    status, body = cancel(router, alice, cancelled)
    assert (status, body) == (200, {"id": cancelled, "status": "cancelled", "attempts": 0})
    key = contract.job_key(cancelled)
    assert int(redis_client.hget(key, "finished_ts")) > 0
    assert 0 < redis_client.ttl(key) <= contract.FINISHED_TTL_SECONDS
    assert redis_client.zscore(contract.OPEN_JOBS_KEY, cancelled) is None

    after = submit(router, alice, {"prompt": "run me"})  # queued behind it
    make_bucket()
    with InferenceDouble() as double:
        settings = parse_settings(["--redis-url", redis_url, "--inference-url", double.url,
                                   "--state-dir", str(tmp_path / "state")])  # fmt: skip
        watcher = Watcher(settings, OpenAIRunner(settings), telemetry=quiet())
        thread = threading.Thread(target=watcher.work, daemon=True)
        thread.start()
        try:
            wait_for(lambda: statuses(redis_client, [after])[after] == "done", "the next job")
            wait_for(lambda: pending_count(redis_client) == 0, "both entries acknowledged")
        finally:
            watcher.stop()
            thread.join(timeout=15)
    assert statuses(redis_client, [cancelled])[cancelled] == "cancelled"
    assert not any("never run" in prompt for prompt in double.prompts)


def test_a_running_job_is_marked_and_shows_it_with_its_output_so_far(router, redis_client, alice):
    job_id = record(redis_client, "alice", "running", partial="Once upon")
    assert get_job(router, alice, job_id) == (
        200, {"id": job_id, "status": "running", "attempts": 1, "partial_output": "Once upon"},
    )  # fmt: skip
    status, body = cancel(router, alice, job_id)
    assert (status, body["status"], body["cancel_requested"]) == (200, "running", True)
    assert body["partial_output"] == "Once upon"
    assert "prompt" not in body and "messages" not in body
    assert redis_client.hget(contract.job_key(job_id), "cancel_requested") == "1"
    assert cancel(router, alice, job_id) == (status, body)  # again: the same answer


def test_a_job_cancelled_while_running_shows_the_output_it_kept(router, redis_client, alice):
    job_id = record(redis_client, "alice", "cancelled", started_ts="1500", finished_ts="2000")
    result = {"id": job_id, "status": "cancelled", "output": "Once upon a", "model": "m",
              "finish_reason": "cancelled", "usage": {"completion_tokens": 3},
              "latency_ms": 5.0, "queued_at_ms": 1000, "started_at_ms": 1500,
              "finished_at_ms": 2000}  # fmt: skip
    s3 = aws.client("s3")
    s3.create_bucket(
        Bucket=REPLY_BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region()}
    )
    s3.put_object(Bucket=REPLY_BUCKET, Key=f"alice/{job_id}.json", Body=json.dumps(result).encode())
    status, body = get_job(router, alice, job_id)
    assert (status, body["status"], body["output"]) == (200, "cancelled", "Once upon a")
    assert body["finish_reason"] == "cancelled" and body["result_url"]


def test_a_finished_job_is_left_as_it_is(router, redis_client, alice):
    job_id = record(redis_client, "alice", "done", finished_ts="2000")
    before = redis_client.hgetall(contract.job_key(job_id))
    status, body = cancel(router, alice, job_id)
    assert (status, body["status"]) == (200, "done")
    assert redis_client.hgetall(contract.job_key(job_id)) == before


def test_cancelling_twice_answers_the_same(router, heartbeat, alice):
    job_id = submit(router, alice)
    first = cancel(router, alice, job_id)
    assert first[1]["status"] == "cancelled"
    assert cancel(router, alice, job_id) == first


def test_someone_elses_job_is_404_and_left_alone(router, heartbeat, redis_client, keyset, alice):
    job_id = submit(router, alice)
    status, body = cancel(router, keyset.token(sub="mallory"), job_id)
    assert (status, body) == (404, {"error": "not_found", "id": job_id})
    assert redis_client.hget(contract.job_key(job_id), "status") == "queued"
    unknown = contract.new_job_id()
    assert cancel(router, alice, unknown) == (404, {"error": "not_found", "id": unknown})


def test_a_bad_id_is_400_naming_it(router, alice):
    event = http_event("POST", "/jobs/not-a-job/cancel", token=alice)
    event["pathParameters"] = {"id": "not-a-job"}
    status, body = call(router, event, "POST /jobs/{id}/cancel")
    assert (status, body["field"]) == (400, "id")


def test_a_cancelled_job_leaves_the_users_cap_and_counts_no_request(
    router_env, heartbeat, redis_client, monkeypatch, alice
):
    monkeypatch.setenv("TL_QUEUE_CAP_PER_USER", "2")
    router = Router(RouterConfig.from_env())
    first, second = submit(router, alice), submit(router, alice)

    def refused() -> tuple[int, str]:
        event = http_event("POST", "/infer", body='{"prompt": "x"}', token=alice)
        status, body = call(router, event, "POST /infer")
        return status, body.get("error")

    assert refused() == (429, "user_queue_full")
    cancel(router, alice, first)
    list_jobs(router, alice)
    assert redis_client.zcard(contract.rate_key("alice")) == 2  # reads and cancels: not counted
    submit(router, alice)  # the cancelled job's slot is free
    assert refused() == (429, "user_queue_full")
    # a running job the watcher settled `cancelled` (still among the open jobs) frees one too
    redis_client.hset(contract.job_key(second), "status", "cancelled")
    submit(router, alice)


# --- while the stack sleeps -----------------------------------------------------------
def test_asleep_the_list_is_empty_and_a_held_job_waits_for_the_queue_to_be_cancelled(
    router, gpu_node, relay, redis_server, redis_url, redis_client, alice
):
    assert relay.observe()["state"] == "asleep"
    redis_server.stop()
    status, held = call(router, http_event("POST", "/infer", body='{"prompt": "x"}', token=alice),
                        "POST /infer")  # fmt: skip
    assert (status, held["status"]) == (202, "waking")
    assert list_jobs(router, alice) == (200, {"jobs": [], "next_cursor": None})
    status, body = cancel(router, alice, held["id"])
    assert (status, body["error"], body["id"]) == (409, "job_held", held["id"])
    assert "cancel it once it is queued" in body["message"]

    redis_server.start()  # the wake made the queue again; the node moves what was held
    bucket = ControlBucket(aws.client("s3"), router.config.control_bucket)
    assert HeldJobs(redis_client, bucket, telemetry=quiet()).sweep()["moved"] == 1
    [job] = list_jobs(router, alice)[1]["jobs"]
    assert (job["id"], job["status"]) == (held["id"], "queued")
    assert cancel(router, alice, held["id"])[1]["status"] == "cancelled"


def quiet() -> Telemetry:
    return Telemetry("watcher", stream=io.StringIO())

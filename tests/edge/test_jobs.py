"""`GET /jobs/{id}` through the router: real redis-server, the moto S3, test-signed tokens.

Records are written the way the router (queued) and the watcher (running, done,
failed) write them; results the way the watcher stores them in S3.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.conftest import http_event
from tlops import contract
from tlops.common import aws
from tlops.edge import jobs
from tlops.edge.router import Router, RouterConfig

pytestmark = pytest.mark.integration

BUCKET = "replies-test"  # what conftest.router_env sets


@pytest.fixture
def router(router_env) -> Router:
    aws.client("s3").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return Router(RouterConfig.from_env())


def get_job(router: Router, token: str | None, job_id: str) -> tuple[int, dict[str, Any]]:
    event = http_event("GET", f"/jobs/{job_id}", token=token)
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /jobs/{id}"
    event["pathParameters"] = {"id": job_id}
    answer = router.handle(event)
    assert answer["headers"]["x-request-id"] == event["requestContext"]["requestId"]
    return answer["statusCode"], json.loads(answer["body"])


def queue(router: Router, token: str) -> str:
    event = http_event("POST", "/infer", body=json.dumps({"prompt": "hi"}), token=token)
    answer = router.handle(event)
    assert answer["statusCode"] in (202, 503), answer  # 503: no node in the stand-in; job kept
    return json.loads(answer["body"])["id"]


def record(redis_client, sub: str, status: str, **fields: str) -> str:
    job_id = contract.new_job_id()
    redis_client.hset(
        contract.job_key(job_id),
        mapping={
            "status": status,
            "sub": sub,
            "prompt": "secret prompt",
            "reply_s3": contract.reply_s3_uri(BUCKET, sub, job_id),
            "attempts": "1",
            "error": "",
            "ts": "1",
            **fields,
        },
    )
    return job_id


def store(sub: str, job_id: str, **fields: Any) -> None:
    result = {"id": job_id, "status": "done", "output": " hello there", "model": "m",
              "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
              "latency_ms": 12.5, "queued_at_ms": 1, "started_at_ms": 2, "finished_at_ms": 3,
              "error": "", **fields}  # fmt: skip
    aws.client("s3").put_object(
        Bucket=BUCKET, Key=f"{sub}/{job_id}.json", Body=json.dumps(result).encode()
    )


def test_a_queued_job_is_seen_by_its_owner(router, keyset, redis_client):
    redis_client.set(contract.HEARTBEAT_KEY, "{}", ex=30)  # node up: plain 202
    token = keyset.token(sub="alice")
    job_id = queue(router, token)
    status, body = get_job(router, token, job_id)
    assert status == 200
    assert body == {"id": job_id, "status": "queued", "attempts": 0}
    assert "prompt" not in body and "sub" not in body


def test_someone_elses_job_is_404_like_an_unknown_one(router, keyset, redis_client):
    job_id = record(redis_client, "alice", "done")
    store("alice", job_id)
    status, body = get_job(router, keyset.token(sub="mallory"), job_id)
    assert (status, body) == (404, {"error": "not_found", "id": job_id})
    unknown = contract.new_job_id()
    assert get_job(router, keyset.token(sub="mallory"), unknown) == (
        404,
        {"error": "not_found", "id": unknown},
    )


def test_a_done_job_carries_its_output_and_a_working_url(router, keyset, redis_client):
    job_id = record(redis_client, "alice", "done")
    store("alice", job_id)
    status, body = get_job(router, keyset.token(sub="alice"), job_id)
    assert status == 200
    assert body["status"] == "done"
    assert body["output_inline"] is True
    assert body["output"] == " hello there"
    assert body["usage"]["completion_tokens"] == 3
    assert (body["model"], body["latency_ms"]) == ("m", 12.5)
    assert body["result_url_expires_in"] == jobs.URL_EXPIRES_S
    with urllib.request.urlopen(body["result_url"], timeout=5) as response:  # the stand-in
        assert json.load(response)["id"] == job_id


def test_a_large_result_is_linked_not_inlined(router, keyset, redis_client):
    job_id = record(redis_client, "alice", "done")
    store("alice", job_id, output="x" * (jobs.INLINE_MAX_BYTES + 10))
    status, body = get_job(router, keyset.token(sub="alice"), job_id)
    assert status == 200
    assert body["output_inline"] is False
    assert "output" not in body
    assert body["result_url"]


def test_a_running_job_shows_its_attempts_not_its_error(router, keyset, redis_client):
    job_id = record(redis_client, "alice", "running", attempts="2", error="vLLM timed out")
    status, body = get_job(router, keyset.token(sub="alice"), job_id)
    assert (status, body) == (200, {"id": job_id, "status": "running", "attempts": 2})


def test_a_failed_job_says_why(router, keyset, redis_client):
    job_id = record(redis_client, "alice", "failed", error="inference refused the prompt")
    status, body = get_job(router, keyset.token(sub="alice"), job_id)
    assert status == 200
    assert body["error"] == "inference refused the prompt"
    assert body["output_inline"] is False
    assert "result_url" not in body  # nothing was stored: no link to a missing object


def test_an_expired_record_falls_back_to_the_callers_result(router, keyset):
    job_id = contract.new_job_id()
    store("alice", job_id)
    status, body = get_job(router, keyset.token(sub="alice"), job_id)
    assert status == 200
    assert (body["status"], body["output"]) == ("done", " hello there")
    # the key is built from the caller's sub: another user cannot reach it by id
    assert get_job(router, keyset.token(sub="bob"), job_id)[0] == 404


def test_s3_unreachable_still_answers_with_the_status(router, keyset, redis_client, monkeypatch):
    job_id = record(redis_client, "alice", "done")

    def unavailable(*_: Any, **__: Any):
        raise jobs.ResultUnavailable("s3 down")

    monkeypatch.setattr(jobs, "read_small_result", unavailable)
    status, body = get_job(router, keyset.token(sub="alice"), job_id)
    assert status == 200
    assert (body["status"], body["output_inline"]) == ("done", False)
    assert body["result_url"]


@pytest.mark.parametrize("bad", ["nope", "JOB", "00000000-0000-0000-0000-000000000000", ""])
def test_a_malformed_id_is_400_naming_the_field(router, keyset, bad):
    status, body = get_job(router, keyset.token(), bad)
    assert status == 400
    assert (body["error"], body["field"]) == ("invalid_request", "id")


def test_no_token_is_401_and_a_bad_one_403(router, keyset):
    job_id = contract.new_job_id()
    assert get_job(router, None, job_id)[0] == 401
    assert get_job(router, keyset.token(aud="other"), job_id) == (403, {"error": "invalid_token"})


def test_redis_down_is_503_queue_unavailable(router, keyset, redis_server):
    redis_server.stop()
    status, body = get_job(router, keyset.token(), contract.new_job_id())
    assert (status, body) == (503, {"error": "queue_unavailable"})

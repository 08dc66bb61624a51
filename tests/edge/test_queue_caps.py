"""The queue caps on a real redis-server: at most `per_user` of one user's jobs and `total`
jobs in all are queued or running at once. Over a cap nothing is written (no record, no
stream entry, no rate-window count); a finished, failed, expired or vanished job frees its
slot without any watcher having to say so."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml

from tests.conftest import http_event
from tlops import contract
from tlops.checkout import ROOT
from tlops.contract import JobStatus, new_job_id, records
from tlops.contract.request import InferRequest
from tlops.edge.admission import Admission, Idempotency, QueueCaps, RateLimits, admit
from tlops.edge.resp import RespClient
from tlops.edge.router import Router, RouterConfig

pytestmark = pytest.mark.integration

GENEROUS = RateLimits(burst=1000, burst_window_ms=1000, sustained=1000, sustained_window_ms=60_000)


@pytest.fixture
def client(redis_url: str) -> Iterator[RespClient]:
    resp = RespClient(redis_url, timeout=2.0)
    yield resp
    resp.close()


def submit(
    client: RespClient, sub: str, caps: QueueCaps, idempotency: Idempotency | None = None
) -> tuple[Admission, str]:
    job_id = new_job_id()
    request = InferRequest(prompt="hello")
    fields = records.queued(request, sub=sub, job_id=job_id, reply_bucket="replies")
    admitted = admit(
        client,
        sub=sub,
        job_id=job_id,
        job_fields=fields,
        limits=GENEROUS,
        job_ttl_s=300,
        within_s=2.0,
        idempotency=idempotency,
        caps=caps,
    )
    return admitted, job_id


def written(redis_client) -> tuple[int, int, int]:
    """(job records, stream entries, open jobs) in Redis."""
    return (
        len(redis_client.keys(contract.JOB_KEY_PREFIX + "*")),
        redis_client.xlen(contract.JOB_STREAM),
        redis_client.zcard(contract.OPEN_JOBS_KEY),
    )


def test_one_user_over_the_cap_gets_nothing_queued(client, redis_client):
    caps = QueueCaps(total=100, per_user=3)
    assert [submit(client, "alice", caps)[0].outcome for _ in range(3)] == ["queued"] * 3
    before = written(redis_client)
    refused, job_id = submit(client, "alice", caps)
    assert refused.outcome == "user_full"
    assert 5 <= refused.retry_after_s <= 30
    assert not redis_client.exists(contract.job_key(job_id))
    assert written(redis_client) == before == (3, 3, 3)
    assert redis_client.zcard(contract.rate_key("alice")) == 3  # the refusal is not counted
    assert submit(client, "bob", caps)[0].outcome == "queued"  # others are not held up


def test_every_user_together_over_the_global_cap(client, redis_client):
    caps = QueueCaps(total=3, per_user=10)
    for sub in ("alice", "bob", "carol"):
        assert submit(client, sub, caps)[0].outcome == "queued"
    refused, _ = submit(client, "dave", caps)
    assert refused.outcome == "full"
    assert 5 <= refused.retry_after_s <= 30
    assert written(redis_client) == (3, 3, 3)


def test_finished_and_vanished_jobs_free_their_slots(client, redis_client):
    caps = QueueCaps(total=100, per_user=4)
    ids = [submit(client, "alice", caps)[1] for _ in range(4)]
    assert submit(client, "alice", caps)[0].outcome == "user_full"
    redis_client.hset(contract.job_key(ids[0]), records.Field.STATUS, JobStatus.DONE)
    redis_client.hset(contract.job_key(ids[1]), records.Field.STATUS, JobStatus.FAILED)
    redis_client.hset(contract.job_key(ids[2]), records.Field.STATUS, JobStatus.RUNNING)
    redis_client.delete(contract.job_key(ids[3]))  # its queued TTL ran out unpicked
    admitted = [submit(client, "alice", caps)[0].outcome for _ in range(4)]
    assert admitted == ["queued", "queued", "queued", "user_full"]  # the running one counts
    assert redis_client.zcard(contract.OPEN_JOBS_KEY) == 4  # pruned as it was counted


def test_a_retry_with_its_key_is_answered_at_the_cap(client, redis_client):
    caps = QueueCaps(total=100, per_user=1)
    key = Idempotency("retry-1", records.fingerprint(InferRequest(prompt="hello")))
    first, job_id = submit(client, "alice", caps, key)
    assert first.outcome == "queued"
    again, _ = submit(client, "alice", caps, key)
    assert (again.outcome, again.job_id) == ("replayed", job_id)  # no second job, no refusal


# --- through the router -------------------------------------------------------------------
def infer(router: Router, token: str) -> tuple[int, dict[str, str], dict]:
    event = http_event("POST", "/infer", body=json.dumps({"prompt": "hello"}), token=token)
    answer = router.handle(event)
    return answer["statusCode"], answer["headers"], json.loads(answer["body"])


def test_the_router_answers_429_for_a_user_and_503_for_everyone(
    router_env, monkeypatch, redis_client, keyset, capsys
):
    redis_client.set(contract.HEARTBEAT_KEY, "1", ex=60)  # the node is up: no wake asked here
    monkeypatch.setenv("TL_QUEUE_CAP_PER_USER", "2")
    monkeypatch.setenv("TL_QUEUE_CAP_TOTAL", "3")
    router = Router(RouterConfig.from_env())
    alice, bob = keyset.token(sub="alice"), keyset.token(sub="bob")
    assert [infer(router, alice)[0] for _ in range(2)] == [202, 202]

    status, headers, body = infer(router, alice)
    assert status == 429
    assert body["error"] == contract.ErrorCode.USER_QUEUE_FULL == "user_queue_full"
    assert body["limit"] == 2 and int(headers["retry-after"]) == body["retry_after"] >= 5
    assert "nothing was queued" in body["message"]

    assert infer(router, bob)[0] == 202
    status, headers, body = infer(router, keyset.token(sub="carol"))
    assert status == 503
    assert (body["error"], body["limit"]) == ("queue_full", 3)
    assert int(headers["retry-after"]) == body["retry_after"]
    assert redis_client.xlen(contract.JOB_STREAM) == 3
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    scopes = [m["Scope"] for m in metrics if "QueueCapRefusals" in m]
    assert scopes == ["user", "global"]


def test_the_caps_come_from_the_functions_environment(router_env):
    full = {**router_env, "TL_QUEUE_CAP_TOTAL": "7", "TL_QUEUE_CAP_PER_USER": "3"}
    assert RouterConfig.from_env(full).caps == QueueCaps(total=7, per_user=3)
    # unset, the caps openapi.yaml and docs/decisions.md state: 20 of one user's jobs, 50 in all
    assert RouterConfig.from_env(router_env).caps == QueueCaps(total=50, per_user=20)


def test_the_router_role_deploys_the_documented_caps():
    """What deploy.yml sets unless told otherwise: openapi.yaml's 20 per user and 50 in all."""
    defaults = yaml.safe_load((ROOT / "roles/router/defaults/main.yml").read_text())
    assert (defaults["router_queue_cap_per_user"], defaults["router_queue_cap_total"]) == (20, 50)

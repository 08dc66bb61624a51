"""Chat jobs, the text so far while a job runs, and cancel (issue 21 items 1-3, the node).

The watcher runs as a real process against real Redis, the moto S3 and the inference
double, which streams server-sent events as vLLM does and notices a client that goes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.doubles.inference import CHAT, COMPLETIONS, InferenceDouble
from tests.support.watcher_fixtures import (
    BUCKET,
    NO_LIMITS,
    WatcherProcess,
    enqueue,
    make_bucket,
    pending_count,
    result_of,
    statuses,
    wait_for,
)
from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.contract import new_job_id, records
from tlops.contract.request import InferRequest
from tlops.edge.admission import admit
from tlops.edge.resp import RespClient
from tlops.local.services import free_port
from tlops.node.runner import Job, OpenAIRunner
from tlops.node.settings import Settings
from tlops.node.watcher import Ending, Watcher

pytestmark = pytest.mark.integration

CONVERSATION = (
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "What is a watcher?"},
)


def enqueue_chat(redis_url: str, messages: tuple[dict[str, str], ...]) -> str:
    """A chat job admitted the way the router admits one."""
    job_id = new_job_id()
    fields = records.queued(
        InferRequest(prompt=None, messages=messages), sub="user-a", job_id=job_id,
        reply_bucket=BUCKET,
    )  # fmt: skip
    client = RespClient(redis_url, timeout=2.0)
    try:
        admit(client, sub="user-a", job_id=job_id, job_fields=fields, limits=NO_LIMITS,
              job_ttl_s=contract.QUEUED_TTL_SECONDS, within_s=1.0)  # fmt: skip
    finally:
        client.close()
    return job_id


def has_status(redis_client, ids: list[str], status: str) -> bool:
    return set(statuses(redis_client, ids).values()) == {status}


@pytest.fixture
def watchers(tmp_path, redis_url) -> Iterator:
    started: list[WatcherProcess] = []

    def start(inference_url: str, *args: str) -> WatcherProcess:
        process = WatcherProcess(tmp_path, redis_url, inference_url, *args).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def test_a_chat_job_goes_to_the_chat_route_with_its_messages(
    aws_stand_in, redis_client, redis_url, watchers
):
    make_bucket()
    with InferenceDouble(tokens=3) as double:
        chat_id = enqueue_chat(redis_url, CONVERSATION)
        [prompt_id] = enqueue(redis_url, 1, prompt=lambda _: "plain prompt")
        watchers(double.url)
        wait_for(lambda: has_status(redis_client, [chat_id, prompt_id], "done"), "both jobs")
    sent = dict(double.received)
    assert sent[CHAT]["messages"] == list(CONVERSATION)
    assert "prompt" not in sent[CHAT]
    assert sent[COMPLETIONS]["prompt"] == "plain prompt"
    assert "messages" not in sent[COMPLETIONS]
    for body in sent.values():  # streamed, the usage asked for in the stream
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
    for job_id in (chat_id, prompt_id):
        result = result_of(job_id)
        assert result["status"] == "done"
        assert result["finish_reason"] == "stop"  # three tokens made, fewer than max_tokens
        assert len(result["output"].split()) == 3
        usage = result["usage"]
        assert usage["completion_tokens"] == 3
        assert usage["total_tokens"] == usage["prompt_tokens"] + 3
        # the output is in S3: no text so far is left on the finished record
        assert "partial" not in redis_client.hgetall(contract.job_key(job_id))


def test_the_text_so_far_shows_on_the_record_while_the_job_runs(
    aws_stand_in, redis_client, redis_url, watchers
):
    make_bucket()
    with InferenceDouble(tokens=40, token_delay=0.03) as double:
        [job_id] = enqueue(redis_url, 1)
        watchers(double.url, "--partial-interval", "0.1")
        key = contract.job_key(job_id)
        seen: list[str] = []

        def partial_while_running() -> bool:
            status, partial = redis_client.hmget(key, "status", "partial")
            if status == "running" and partial:
                seen.append(partial)
            return len(seen) >= 2 and seen[-1] != seen[0]

        wait_for(partial_while_running, "the text so far to grow while the job runs")
        wait_for(lambda: has_status(redis_client, [job_id], "done"), "the job to finish")
    output = result_of(job_id)["output"]
    assert len(output.split()) == 40
    assert all(output.startswith(text) and len(text) < len(output) for text in seen)


def test_the_text_so_far_is_published_every_n_chunks_not_every_token(aws_stand_in):
    """docs/delivery.md: the first text at once, then every `partial_tokens` chunks (or
    `partial_interval_s`, here too long to count)."""
    make_bucket()
    published: list[str] = []

    def progress(text: str) -> bool:
        published.append(text)
        return False

    with InferenceDouble(tokens=30) as double:
        settings = Settings(redis_url="redis://unused", inference_url=double.url,
                            partial_interval_s=3600.0, partial_tokens=8)  # fmt: skip
        job_id = new_job_id()
        record = {"reply_s3": f"s3://{BUCKET}/user-a/{job_id}.json", "prompt": "p", "ts": "1"}
        result = OpenAIRunner(settings).run(Job("1-0", job_id, "user-a", record, 1), progress)
    words = result.output.split()
    assert len(words) == 30
    # after chunks 1, 9, 17 and 25
    assert [len(text.split()) for text in published] == [1, 9, 17, 25]
    assert all(result.output.startswith(text) for text in published)


def test_cancel_closes_the_request_and_keeps_the_text_so_far(
    aws_stand_in, redis_client, redis_url, watchers
):
    make_bucket()
    with InferenceDouble(tokens=400, token_delay=0.02) as double:
        [job_id] = enqueue(redis_url, 1)
        watcher = watchers(double.url)
        key = contract.job_key(job_id)
        wait_for(lambda: redis_client.hget(key, "partial"), "the first text")
        redis_client.hset(key, "cancel_requested", "1")  # what POST /jobs/{id}/cancel does
        wait_for(lambda: has_status(redis_client, [job_id], "cancelled"), "the cancel")
        wait_for(lambda: double.disconnects == 1, "the double to see its client go")
        assert double.completed == 0
    result = result_of(job_id)
    record = redis_client.hgetall(key)
    assert result["status"] == "cancelled"
    assert 0 < len(result["output"].split()) < 400
    assert result["finish_reason"] == ""
    assert record["partial"] == result["output"]  # all the text there was, on the record too
    assert (record["error"], record["attempts"]) == ("", "1")
    assert pending_count(redis_client) == 0
    assert any(r.get("message") == "job cancelled" for r in watcher.logs())


def test_jobs_cancelled_before_they_ran_are_never_run(
    aws_stand_in, redis_client, redis_url, watchers
):
    make_bucket()
    redelivered, queued = enqueue(redis_url, 2)
    # A delivery that published some text and died; then its owner cancelled it.
    redis_client.hset(contract.job_key(redelivered), mapping={
        "status": "running", "attempts": "1", "partial": "earlier text",
        "cancel_requested": "1",
    })  # fmt: skip
    # Cancelled while queued: the router made it final itself.
    redis_client.hset(contract.job_key(queued), "status", "cancelled")
    with InferenceDouble() as double:
        watchers(double.url)
        wait_for(lambda: has_status(redis_client, [redelivered], "cancelled"), "the settle")
        wait_for(lambda: pending_count(redis_client) == 0, "both entries acknowledged")
        assert double.requests == 0
    result = result_of(redelivered)
    assert (result["status"], result["output"]) == ("cancelled", "earlier text")
    assert redis_client.hget(contract.job_key(redelivered), "finished_ts")
    untouched = redis_client.hgetall(contract.job_key(queued))
    assert "finished_ts" not in untouched and untouched["attempts"] == "0"
    with pytest.raises(Exception, match="NoSuchKey"):
        result_of(queued)


def test_a_publish_redis_refuses_does_not_fail_the_job(aws_stand_in):
    make_bucket()
    # as the watcher makes its client: no retries of its own, so each publish fails once
    dead_redis = redis_py.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    log = io.StringIO()
    with InferenceDouble(tokens=5) as double:
        settings = Settings(redis_url="redis://unused", inference_url=double.url)
        watcher = Watcher(settings, OpenAIRunner(settings), redis_client=dead_redis,
                          telemetry=Telemetry("watcher", stream=log))  # fmt: skip
        job_id = new_job_id()
        record = {"reply_s3": f"s3://{BUCKET}/user-a/{job_id}.json", "prompt": "p", "ts": "1"}
        outcome = watcher._run(Job("1-0", job_id, "user-a", record, 1))
    assert outcome.kind is Ending.DONE
    assert len(result_of(job_id)["output"].split()) == 5
    logged = [json.loads(line) for line in log.getvalue().splitlines()]
    assert any(r["message"] == "partial output not published" for r in logged)


def test_the_text_so_far_is_written_only_while_this_delivery_holds_the_job(redis_client, redis_url):
    """A finished record, or one a later delivery took over, keeps what it has."""
    settings = Settings(redis_url=redis_url, inference_url="http://127.0.0.1:1")
    watcher = Watcher(settings, OpenAIRunner(settings, s3=object()),
                      telemetry=Telemetry("watcher", stream=io.StringIO()))  # fmt: skip
    cases = {  # the record as it is → whether delivery 1 may write on it
        "holds it": ({"status": "running", "attempts": "1"}, True),
        "finished": ({"status": "done", "attempts": "1"}, False),
        "taken over": ({"status": "running", "attempts": "2"}, False),
    }
    for name, (fields, writes) in cases.items():
        job_id = new_job_id()
        redis_client.hset(contract.job_key(job_id), mapping=fields)
        publish = watcher._publisher(Job("1-0", job_id, "user-a", {}, 1))
        assert publish("text so far") is False, name
        written = redis_client.hget(contract.job_key(job_id), "partial")
        assert written == ("text so far" if writes else None), name
    redis_client.hset(contract.job_key(job_id), "cancel_requested", "1")
    assert publish("more") is True

"""The watcher as a real process against real Redis, the moto S3 and the inference double."""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Iterator

import pytest

from tests.doubles.inference import InferenceDouble
from tests.support.watcher_fixtures import (
    BUCKET,
    WatcherProcess,
    dead_letters,
    enqueue,
    make_bucket,
    pending_count,
    result_of,
    settled,
    statuses,
    wait_for,
    write_count,
)
from tlops import contract
from tlops.common import aws
from tlops.common.telemetry import Telemetry
from tlops.contract.results import JobResult
from tlops.local.services import free_port
from tlops.node import activity, watcher
from tlops.node.runner import OpenAIRunner
from tlops.node.settings import parse_settings

pytestmark = pytest.mark.integration

FAST = ("--visibility-timeout", "1", "--max-deliveries", "3", "--drain-deadline", "10")


@pytest.fixture
def double() -> Iterator[InferenceDouble]:
    with InferenceDouble(latency=0.05, cap=8, max_prompt_chars=200) as server:
        yield server


@pytest.fixture
def watchers(tmp_path, redis_url) -> Iterator:
    """Start watcher processes; each is SIGKILLed at the end if still running."""
    started: list[WatcherProcess] = []

    def start(inference_url: str, *args: str) -> WatcherProcess:
        process = WatcherProcess(tmp_path, redis_url, inference_url, *FAST, *args).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def test_jobs_run_and_results_land_in_s3(aws_stand_in, redis_client, redis_url, double, watchers):
    make_bucket(versioned=True)
    ids = enqueue(redis_url, 12)
    watcher = watchers(double.url)
    wait_for(lambda: settled(redis_client, ids), "12 jobs to finish")

    assert set(statuses(redis_client, ids).values()) == {"done"}
    for job_id in ids:
        record = redis_client.hgetall(contract.job_key(job_id))
        assert record["attempts"] == "1"
        assert record["error"] == ""
        assert int(record["ts"]) <= int(record["started_ts"]) <= int(record["finished_ts"])
        assert 0 < redis_client.ttl(contract.job_key(job_id)) <= contract.FINISHED_TTL_SECONDS
        result = JobResult.model_validate(result_of(job_id))
        assert (result.id, result.status, result.model) == (job_id, "done", double.model)
        assert result.output.startswith(" reply ")
        assert result.usage["total_tokens"] > 0
        assert result.queued_at_ms == int(record["ts"])
        assert write_count(job_id) == 1
    assert pending_count(redis_client) == 0
    assert double.model_lookups == 1  # no --model: asked once, then reused

    heartbeat = json.loads(redis_client.get(contract.HEARTBEAT_KEY))
    assert heartbeat["consumer"]
    assert 0 < redis_client.ttl(contract.HEARTBEAT_KEY) <= contract.HEARTBEAT_TTL_SECONDS
    wait_for((watcher.state_dir / "last_activity").exists, "the last-activity file")
    logged = [r for r in watcher.logs() if r.get("message") == "job done"]
    assert {r["job_id"] for r in logged} == set(ids)
    assert all("latency_ms" in r and "completion_tokens" in r for r in logged)


def test_refused_prompt_fails_once_and_logs_the_servers_message(
    aws_stand_in, redis_client, redis_url, double, watchers
):
    make_bucket()
    [job_id] = enqueue(redis_url, 1, prompt=lambda _: "x" * 300)  # over max_prompt_chars
    watcher = watchers(double.url)
    wait_for(lambda: settled(redis_client, [job_id]), "the refused job to settle")

    record = redis_client.hgetall(contract.job_key(job_id))
    assert record["status"] == "failed"
    assert record["error"] == "the inference server refused the prompt"
    [logged] = [r for r in watcher.logs() if r.get("message") == "job failed"]
    assert "maximum context length is 200" in logged["detail"]
    assert record["attempts"] == "1"
    assert double.requests == 1  # not retried
    assert result_of(job_id)["status"] == "failed"
    assert pending_count(redis_client) == 0


def test_transient_5xx_is_retried_within_the_delivery(
    aws_stand_in, redis_client, redis_url, double, watchers
):
    make_bucket()
    double.fail_next = 2
    [job_id] = enqueue(redis_url, 1)
    watchers(double.url)
    wait_for(lambda: settled(redis_client, [job_id]), "the job to finish")
    assert statuses(redis_client, [job_id])[job_id] == "done"
    assert double.requests == 3


def test_the_activity_file_keeps_the_newest_jobs_idle_minutes(
    aws_stand_in, redis_client, redis_url, double, watchers
):
    """What the idle watchdog reads: the last activity, and the idle of the newest job."""
    make_bucket()
    first = enqueue(redis_url, 1, idle=30)
    watcher = watchers(double.url)
    wait_for(lambda: settled(redis_client, first), "the first job to finish")
    newest = enqueue(redis_url, 1, idle=2)
    wait_for(lambda: settled(redis_client, newest), "the newest job to finish")
    finished = int(redis_client.hget(contract.job_key(newest[0]), "finished_ts"))

    def written() -> bool:  # at the next heartbeat after the job settled
        reading = activity.read(watcher.state_dir)
        return reading is not None and reading.last_activity_ms >= finished

    wait_for(written, "the activity file to show the newest job settled")
    assert activity.read(watcher.state_dir).idle_minutes == 2


def test_expired_record_is_marked_and_not_run(
    aws_stand_in, redis_client, redis_url, double, watchers
):
    make_bucket()
    [job_id] = enqueue(redis_url, 1, sub="user-gone")
    redis_client.delete(contract.job_key(job_id))  # its queued TTL ran out before pick-up
    watchers(double.url)
    wait_for(lambda: settled(redis_client, [job_id]), "the expired job to be marked")

    record = redis_client.hgetall(contract.job_key(job_id))
    assert record["status"] == "expired"
    assert record["sub"] == "user-gone"
    assert int(record["finished_ts"]) > 0
    assert 0 < redis_client.ttl(contract.job_key(job_id)) <= contract.FINISHED_TTL_SECONDS
    assert double.requests == 0
    assert pending_count(redis_client) == 0


def test_job_past_its_deliveries_is_dead_lettered_without_running(
    aws_stand_in, redis_client, redis_url, double, watchers
):
    make_bucket()
    [job_id] = enqueue(redis_url, 1)
    redis_client.hset(contract.job_key(job_id), mapping={"attempts": 3, "error": "boom"})
    watchers(double.url)
    wait_for(lambda: job_id in dead_letters(redis_client), "the dead letter")
    letter = dead_letters(redis_client)[job_id]
    assert (letter["sub"], letter["reason"], letter["deliveries"]) == ("user-a", "boom", "3")
    record = redis_client.hgetall(contract.job_key(job_id))
    assert (record["status"], record["attempts"]) == ("failed", "3")  # not delivered a 4th time
    assert double.requests == 0


def test_inference_down_then_back_jobs_wait_and_complete(
    aws_stand_in, redis_client, redis_url, watchers
):
    make_bucket()
    port = free_port()
    ids = enqueue(redis_url, 4)
    watcher = watchers(
        f"http://127.0.0.1:{port}", "--visibility-timeout", "4", "--max-deliveries", "5"
    )
    wait_for(
        lambda: any(r.get("message") == "job will be retried" for r in watcher.logs()),
        "the watcher to meet the outage",
    )
    assert not settled(redis_client, ids)
    with InferenceDouble(port=port) as double:
        wait_for(lambda: settled(redis_client, ids), "jobs to finish once inference is back")
        assert set(statuses(redis_client, ids).values()) == {"done"}
        assert double.completed == 4
    assert watcher.alive


def test_inference_down_for_good_dead_letters_after_the_limit(
    aws_stand_in, redis_client, redis_url, watchers
):
    make_bucket()
    ids = enqueue(redis_url, 3)
    watchers(f"http://127.0.0.1:{free_port()}", "--max-deliveries", "2")
    wait_for(lambda: settled(redis_client, ids), "jobs to be dead-lettered")

    letters = dead_letters(redis_client)
    assert set(letters) == set(ids)
    for job_id in ids:
        assert letters[job_id]["deliveries"] == "2"
        assert letters[job_id]["reason"] == "gave up after 2 deliveries: inference failed"
        record = redis_client.hgetall(contract.job_key(job_id))
        assert (record["status"], record["attempts"]) == ("failed", "2")
        assert record["error"] == letters[job_id]["reason"]
        assert result_of(job_id)["status"] == "failed"
    assert pending_count(redis_client) == 0


def test_s3_failing_is_retried_then_dead_lettered_with_the_reason(
    aws_stand_in, redis_client, redis_url, double, watchers
):
    # no bucket: every write fails the way an unreachable or refusing S3 would
    [job_id] = enqueue(redis_url, 1)
    watcher = watchers(double.url, "--max-deliveries", "2")
    wait_for(lambda: settled(redis_client, [job_id]), "the job to be dead-lettered")
    reason = dead_letters(redis_client)[job_id]["reason"]
    assert reason == "gave up after 2 deliveries: the result could not be stored"
    [logged] = [r for r in watcher.logs() if r.get("message") == "job dead"]
    assert "NoSuchBucket" in logged["detail"]
    assert double.completed >= 2  # inference ran; the write is what failed


def test_redis_restart_watcher_reconnects(
    aws_stand_in, redis_server, redis_client, redis_url, double, watchers
):
    make_bucket()
    first = enqueue(redis_url, 3)
    watcher = watchers(double.url)
    wait_for(lambda: settled(redis_client, first), "the first jobs")

    redis_server.stop()
    wait_for(
        lambda: any(r.get("message") == "redis unreachable" for r in watcher.logs()),
        "the watcher to notice the outage",
    )
    redis_server.start()  # empty: no persistence, the group is gone too
    second = enqueue(redis_url, 3)
    wait_for(lambda: settled(redis_client, second), "jobs queued after the restart")
    assert set(statuses(redis_client, second).values()) == {"done"}
    assert watcher.alive
    assert pending_count(redis_client) == 0


def test_sigkill_during_jobs_redelivers_and_results_are_written_once(
    aws_stand_in, redis_client, redis_url, watchers
):
    make_bucket(versioned=True)
    with InferenceDouble(latency=1.0, cap=8) as double:
        ids = enqueue(redis_url, 6)
        first = watchers(double.url)
        wait_for(lambda: double.in_flight == 6, "all six jobs in flight")
        first.signal(signal.SIGKILL)
        first.wait()
        assert set(statuses(redis_client, ids).values()) == {"running"}

        watchers(double.url)
        wait_for(lambda: settled(redis_client, ids), "redelivered jobs to finish")
    assert set(statuses(redis_client, ids).values()) == {"done"}
    for job_id in ids:
        assert redis_client.hget(contract.job_key(job_id), "attempts") == "2"
        assert write_count(job_id) == 1
        assert result_of(job_id)["id"] == job_id
    assert pending_count(redis_client) == 0


def test_sigterm_drains_in_flight_jobs_and_exits_zero(
    aws_stand_in, redis_client, redis_url, watchers
):
    make_bucket()
    with InferenceDouble(latency=1.5, cap=8) as double:
        ids = enqueue(redis_url, 4)
        watcher = watchers(double.url)
        wait_for(lambda: double.in_flight == 4, "four jobs in flight")
        watcher.signal(signal.SIGTERM)
        assert watcher.wait() == 0
    assert set(statuses(redis_client, ids).values()) == {"done"}
    assert pending_count(redis_client) == 0
    assert redis_client.exists(contract.HEARTBEAT_KEY) == 0
    stopped = [r for r in watcher.logs() if r.get("message") == "watcher stopped"]
    assert stopped and stopped[0]["left_pending"] == 0 and stopped[0]["done"] == 4


def test_a_job_taken_just_before_sigterm_gives_its_delivery_back(
    aws_stand_in, redis_client, redis_url, double, watchers, tmp_path
):
    """Read, then SIGTERM before a worker ran it: it stays pending for the next watcher
    (docs/delivery.md) and was never delivered to the model, so it costs no delivery: a
    watcher allowed one delivery still runs it instead of dead-lettering it."""
    make_bucket()
    [job_id] = enqueue(redis_url, 1)
    settings = parse_settings([
        "--redis-url", redis_url, "--inference-url", double.url,
        "--state-dir", str(tmp_path / "state"), *FAST,
    ])  # fmt: skip
    stopping = watcher.Watcher(
        settings, OpenAIRunner(settings), telemetry=Telemetry("watcher", stream=io.StringIO())
    )
    stopping._bootstrap()  # the workers and the finisher
    taken = stopping._read(1)
    stopping.stop()  # what the SIGTERM handler does, between the read and the run
    stopping._pick_up(taken)
    stopping._teardown()  # waits for what it holds to settle
    record = redis_client.hgetall(contract.job_key(job_id))
    assert (record["status"], record["attempts"]) == ("queued", "0")
    assert pending_count(redis_client) == 1
    assert double.requests == 0

    watchers(double.url, "--max-deliveries", "1")
    wait_for(lambda: settled(redis_client, [job_id]), "the handed-back job to run")
    assert statuses(redis_client, [job_id])[job_id] == "done"
    assert redis_client.hget(contract.job_key(job_id), "attempts") == "1"
    assert dead_letters(redis_client) == {}


@pytest.mark.parametrize(
    ("env", "argv", "named"),
    [
        ({"TL_WATCHER_CONCURRENCY": "many"}, [], "TL_WATCHER_CONCURRENCY"),
        ({"TL_WATCHER_VISIBILITY_TIMEOUT": "0"}, [], "TL_WATCHER_VISIBILITY_TIMEOUT"),
        ({}, ["--max-deliveries", "-1"], "--max-deliveries"),
        ({"TL_REDIS_URL": ""}, [], "TL_REDIS_URL"),
    ],
)
def test_bad_settings_exit_2_naming_the_setting(monkeypatch, capsys, env, argv, named):
    monkeypatch.setenv("TL_REDIS_URL", "redis://127.0.0.1:1/0")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        watcher.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert named in error
    assert "Traceback" not in error


def test_settings_come_from_flags_then_environment(monkeypatch):
    monkeypatch.setenv("TL_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("TL_WATCHER_CONCURRENCY", "3")
    monkeypatch.setenv("TL_MODEL", "from-env")
    settings = parse_settings(["--concurrency", "5"])
    assert (settings.concurrency, settings.model) == (5, "from-env")
    assert settings.visibility_timeout_s == 120  # docs/delivery.md: 120 s by default
    assert settings.max_deliveries == 3  # README and ARCHITECTURE: dead letters after three
    assert settings.inference_url == "http://127.0.0.1:8000"


def test_result_stored_by_a_dead_delivery_is_adopted_not_overwritten(
    aws_stand_in, redis_client, redis_url, double, watchers
):
    # A watcher stored the result, then died before flipping the status and acknowledging.
    make_bucket(versioned=True)
    [job_id] = enqueue(redis_url, 1)
    stored = JobResult(
        id=job_id,
        status="done",
        output="from the first delivery",
        queued_at_ms=1,
        started_at_ms=2,
        finished_at_ms=3,
    )
    aws.client("s3").put_object(
        Bucket=BUCKET, Key=f"user-a/{job_id}.json", Body=stored.model_dump_json()
    )
    redis_client.hset(contract.job_key(job_id), mapping={"attempts": 1, "status": "running"})
    watchers(double.url)
    wait_for(lambda: settled(redis_client, [job_id]), "the job to settle")

    assert statuses(redis_client, [job_id])[job_id] == "done"
    assert result_of(job_id)["output"] == "from the first delivery"
    assert write_count(job_id) == 1
    assert redis_client.hget(contract.job_key(job_id), "attempts") == "2"

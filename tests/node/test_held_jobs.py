"""The node's side of a wake, against real Redis and the stand-in's S3: the jobs the router held
while the stack slept go into the stream exactly once (tlops.node.held), what the sleep saved
comes back (survivors.json), the watcher does both when it has a control bucket, and the node's
programs follow the queue to the address control recorded (tlops.node.queue_address,
tlops.node.deployment is in test_node_deployment.py)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis as redis_py

from tests.doubles.inference import InferenceDouble
from tests.support.watcher_fixtures import BUCKET as REPLY_BUCKET
from tests.support.watcher_fixtures import (
    WatcherProcess,
    enqueue,
    make_bucket,
    result_of,
    statuses,
    wait_for,
)
from tlops import contract
from tlops.common import aws
from tlops.common.control_bucket import ControlBucket
from tlops.common.telemetry import Telemetry
from tlops.contract import control, records
from tlops.contract.request import InferRequest
from tlops.edge.admission import Idempotency, QueueCaps, RateLimits
from tlops.edge.control_link import ControlLink, held_job_id
from tlops.edge.resp import RespClient
from tlops.edge.sleep import survivors
from tlops.local.services import free_port
from tlops.node import held as held_module
from tlops.node.held import HeldJobs
from tlops.node.queue_address import QueueAddress
from tlops.node.runner import OpenAIRunner
from tlops.node.settings import parse_settings
from tlops.node.watcher import Watcher

pytestmark = pytest.mark.integration

CONTROL_BUCKET = "control-test"
SUB = "user-a"
HOUR_MS = 3_600_000
NO_LIMITS = RateLimits(burst=10**6, sustained=10**6)


@pytest.fixture
def bucket(aws_stand_in) -> ControlBucket:
    s3 = aws.client("s3")
    s3.create_bucket(
        Bucket=CONTROL_BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region()}
    )
    return ControlBucket(s3, CONTROL_BUCKET)


def quiet() -> Telemetry:
    return Telemetry("watcher", stream=io.StringIO())


def hold(
    prompt: str, *, at_s: float | None = None, idempotency: Idempotency | None = None
) -> tuple[str, str, dict[str, str]]:
    """Hold a job as the router does while the queue sleeps (its ControlLink, at `at_s`);
    (job id, held object's key, the record fields the router gave it)."""
    link = ControlLink(lambda: aws.client("s3"), CONTROL_BUCKET, clock=lambda: at_s or time.time())
    job_id = contract.new_job_id()
    fields = records.queued(
        InferRequest(prompt=prompt), sub=SUB, job_id=job_id, reply_bucket=REPLY_BUCKET
    )
    held = link.hold(
        sub=SUB, job_id=job_id, fields=fields, limits=NO_LIMITS, caps=QueueCaps(),
        idempotency=idempotency,
    )  # fmt: skip
    assert held.outcome == "held", held
    [key] = [k for k in held_keys() if k.endswith(f"-{held.job_id}.json")]
    return held.job_id, key, fields


def held_keys() -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=CONTROL_BUCKET, Prefix=control.HELD_PREFIX)
    return [item["Key"] for item in listed.get("Contents", [])]


def stream_ids(redis_client) -> list[str]:
    return [fields["id"] for _, fields in redis_client.xrange(contract.JOB_STREAM)]


def test_a_held_job_goes_into_the_stream_once_with_its_record(bucket, redis_client):
    job_id, key, fields = hold("held while asleep")
    held_ms = control.parse_held_key(key).at_ms
    mover = HeldJobs(redis_client, bucket, telemetry=quiet())

    assert mover.sweep() == {"moved": 1, "expired": 0, "again": 0}
    record = redis_client.hgetall(contract.job_key(job_id))
    assert record == {**fields, "ts": str(held_ms)}  # queued, as admission would have written
    assert record["status"] == "queued" and record["sub"] == SUB
    assert 0 < redis_client.ttl(contract.job_key(job_id)) <= contract.QUEUED_TTL_SECONDS
    assert [(f["id"], f["sub"]) for _, f in redis_client.xrange(contract.JOB_STREAM)] == [
        (job_id, SUB)
    ]
    assert redis_client.zscore(contract.OPEN_JOBS_KEY, job_id) == held_ms
    assert redis_client.get(contract.HELD_MOVED_KEY_PREFIX + job_id) == job_id
    assert held_keys() == []  # the object goes once the job is in the stream

    assert mover.sweep() == {"moved": 0, "expired": 0, "again": 0}
    assert stream_ids(redis_client) == [job_id]


def test_a_second_mover_of_the_same_object_moves_nothing(bucket, redis_client):
    """A node that stopped between the move and the delete (or two watchers listing the same
    object) finds the mark: the object goes, the stream keeps one entry."""
    job_id, key, _ = hold("held while asleep")
    body = bucket.get_json(key)
    HeldJobs(redis_client, bucket, telemetry=quiet()).sweep()
    bucket.put_json(key, body)  # the object as it was before the first mover deleted it

    again = HeldJobs(redis_client, bucket, telemetry=quiet()).sweep()
    assert again == {"moved": 0, "expired": 0, "again": 1}
    assert stream_ids(redis_client) == [job_id]
    assert held_keys() == []


def test_a_held_job_with_an_idempotency_key_writes_the_key_too(bucket, redis_client):
    request = InferRequest(prompt="held while asleep")
    key = Idempotency("retry-me-1", records.fingerprint(request))
    job_id, _, _ = hold(request.prompt, idempotency=key)
    assert job_id == held_job_id(SUB, "retry-me-1")

    assert HeldJobs(redis_client, bucket, telemetry=quiet()).sweep()["moved"] == 1
    idem = contract.idempotency_key(SUB, "retry-me-1")
    assert idem == f"idem:{SUB}:retry-me-1"
    assert redis_client.hgetall(idem) == {
        records.IDEM_JOB: job_id,
        records.IDEM_FINGERPRINT: key.fingerprint,
    }
    assert 0 < redis_client.ttl(idem) <= contract.IDEMPOTENCY_TTL_SECONDS
    assert stream_ids(redis_client) == [job_id]


def test_a_job_held_longer_than_an_hour_is_expired_and_never_queued(bucket, redis_client):
    now = time.time()
    stale, stale_key, _ = hold("held too long", at_s=now - 3601)
    fresh, _, _ = hold("held not quite an hour", at_s=now - 3540)

    counts = HeldJobs(redis_client, bucket, telemetry=quiet(), clock=lambda: now).sweep()
    assert counts == {"moved": 1, "expired": 1, "again": 0}
    record = redis_client.hgetall(contract.job_key(stale))
    assert record["status"] == "expired" and record["sub"] == SUB
    assert "prompt" not in record  # never runs: nothing to run it with
    assert 0 < redis_client.ttl(contract.job_key(stale)) <= contract.FINISHED_TTL_SECONDS
    assert stream_ids(redis_client) == [fresh]
    assert redis_client.zscore(contract.OPEN_JOBS_KEY, stale) is None
    assert held_keys() == []
    assert control.parse_held_key(stale_key).job_id == stale


# --- survivors.json ------------------------------------------------------------------------
def test_what_the_sleep_saved_comes_back_once(bucket, redis_url, redis_client):
    boots = ["41000", "52000", "47000"]  # newest first, as the boot reporter pushes them
    redis_client.rpush(contract.NODE_BOOT_TIMES_KEY, *boots)
    for reason in ("first", "second"):
        redis_client.xadd(contract.DEAD_LETTER_STREAM, {"id": reason, "reason": reason})
    live, lapsing = f"idem:{SUB}:live", f"idem:{SUB}:lapsing"
    redis_client.hset(live, mapping={records.IDEM_JOB: "job-live", records.IDEM_FINGERPRINT: "f"})
    redis_client.pexpire(live, 3_000_000)
    redis_client.hset(lapsing, mapping={records.IDEM_JOB: "job-old"})
    redis_client.pexpire(lapsing, 60_000)
    # What queue_health's sleep handshake saves, in its words, then the queue goes.
    now_ms = int(time.time() * 1000)
    bucket.put_json(control.SURVIVORS_KEY, survivors(RespClient(redis_url, timeout=2), now_ms))
    redis_client.flushall()

    ten_minutes_later = (now_ms + 600_000) / 1000
    restorer = HeldJobs(redis_client, bucket, telemetry=quiet(), clock=lambda: ten_minutes_later)
    assert restorer.restore() is True
    assert redis_client.lrange(contract.NODE_BOOT_TIMES_KEY, 0, -1) == boots
    letters = redis_client.xrange(contract.DEAD_LETTER_STREAM)
    assert [fields for _, fields in letters] == [
        {"id": "first", "reason": "first"},
        {"id": "second", "reason": "second"},
    ]
    assert redis_client.hgetall(live) == {records.IDEM_JOB: "job-live",
                                          records.IDEM_FINGERPRINT: "f"}  # fmt: skip
    # 3000 s saved, 600 s of them spent asleep: about 2400 s left (a little less, for the save)
    assert 2_390_000 <= redis_client.pttl(live) <= 2_400_000
    assert not redis_client.exists(lapsing)  # its minute ended while the stack slept
    assert bucket.get_json(control.SURVIVORS_KEY) is None

    assert restorer.restore() is False  # once: nothing is put back twice
    assert len(redis_client.xrange(contract.DEAD_LETTER_STREAM)) == 2


def test_restore_keeps_boot_times_measured_since_the_wake(bucket, redis_client):
    bucket.put_json(control.SURVIVORS_KEY, {"at_ms": 1, "boot_times": ["90000"],
                                            "dead_letters": [], "idempotency": []})  # fmt: skip
    redis_client.lpush(contract.NODE_BOOT_TIMES_KEY, "30000")  # this wake's boot, measured
    assert HeldJobs(redis_client, bucket, telemetry=quiet()).restore() is True
    assert redis_client.lrange(contract.NODE_BOOT_TIMES_KEY, 0, -1) == ["30000"]


# --- the watcher with a control bucket -------------------------------------------------------
@pytest.fixture
def double() -> Iterator[InferenceDouble]:
    with InferenceDouble(latency=0.01) as server:
        yield server


def test_a_watcher_with_a_control_bucket_clears_closing_and_moves_what_was_held(
    bucket, redis_client, redis_url, double, tmp_path
):
    make_bucket()
    redis_client.set(contract.CLOSING_KEY, "1", px=600_000)  # a sleep had begun
    bucket.put_json(control.SURVIVORS_KEY, {"at_ms": int(time.time() * 1000),
                    "boot_times": ["45000"], "dead_letters": [], "idempotency": []})  # fmt: skip
    job_id, _, _ = hold("held while asleep")
    process = WatcherProcess(
        tmp_path, redis_url, double.url, "--control-bucket", CONTROL_BUCKET
    ).start()
    try:
        wait_for(lambda: statuses(redis_client, [job_id])[job_id] == "done", "the held job")
        assert not redis_client.exists(contract.CLOSING_KEY)
        assert redis_client.lrange(contract.NODE_BOOT_TIMES_KEY, 0, -1) == ["45000"]
        assert held_keys() == [] and bucket.get_json(control.SURVIVORS_KEY) is None
        assert result_of(job_id)["status"] == "done"
    finally:
        process.stop()
    said = [line.get("message") for line in process.logs()]
    assert "held jobs moved into the queue" in said


def test_a_running_watcher_moves_jobs_held_after_its_start(
    bucket, redis_client, redis_url, double, tmp_path, monkeypatch
):
    """Held jobs are looked for every SWEEP_EVERY_S while the watcher runs (shortened here)."""
    monkeypatch.setattr(held_module, "SWEEP_EVERY_S", 0.2)
    make_bucket()
    settings = parse_settings([
        "--redis-url", redis_url, "--inference-url", double.url,
        "--state-dir", str(tmp_path / "state"), "--control-bucket", CONTROL_BUCKET,
    ])  # fmt: skip
    watcher = Watcher(settings, OpenAIRunner(settings), telemetry=quiet())
    thread = threading.Thread(target=watcher.work, daemon=True)
    thread.start()
    try:
        wait_for(lambda: redis_client.exists(contract.HEARTBEAT_KEY), "the watcher to start")
        assert held_keys() == []
        job_id, _, _ = hold("held while the node booted")
        wait_for(lambda: statuses(redis_client, [job_id])[job_id] == "done", "the held job")
        assert stream_ids(redis_client) == [job_id]
        assert held_keys() == []
    finally:
        watcher.stop()
        thread.join(timeout=15)
    assert not thread.is_alive()


def test_a_watcher_without_a_control_bucket_still_clears_closing(
    aws_stand_in, redis_client, redis_url, double, tmp_path
):
    """A node that runs means the queue is in use, whether or not it moves held jobs."""
    redis_client.set(contract.CLOSING_KEY, "1", px=600_000)
    process = WatcherProcess(tmp_path, redis_url, double.url).start()
    try:
        wait_for(lambda: redis_client.exists(contract.HEARTBEAT_KEY), "the watcher to start")
        assert not redis_client.exists(contract.CLOSING_KEY)
    finally:
        process.stop()


def test_a_watcher_started_before_its_queue_follows_it_to_the_recorded_address(
    bucket, redis_client, redis_url, double, tmp_path
):
    """The wake's queue has a new address; the node's environment still names the old one."""
    make_bucket()
    recorded(bucket, "awake", {"id": "tinyllama-queue-2", "status": "available", "url": redis_url})
    [job_id] = enqueue(redis_url, 1)
    old = f"redis://127.0.0.1:{free_port()}/0"
    process = WatcherProcess(tmp_path, old, double.url, "--control-bucket", CONTROL_BUCKET).start()
    try:
        wait_for(lambda: statuses(redis_client, [job_id])[job_id] == "done", "the queued job")
    finally:
        process.stop()
    said = [line.get("message") for line in process.logs()]
    assert said.index("redis unreachable at start") < said.index("the queue moved")


# --- where the queue is --------------------------------------------------------------------
def recorded(bucket: ControlBucket, state: str, queue: dict | None) -> None:
    """state.json as control writes it (the fields the node reads)."""
    bucket.put_json(control.STATE_KEY, {"version": 1, "project": "tinyllama", "state": state,
                                        "since_ms": 1_796_000_000_000, "queue": queue,
                                        "node": None})  # fmt: skip


def test_follow_points_the_client_at_the_queue_control_recorded(bucket, redis_url):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    client = redis_py.Redis.from_url(nowhere, decode_responses=True, socket_connect_timeout=1)
    with pytest.raises(redis_py.ConnectionError):
        client.ping()
    recorded(bucket, "awake", {"id": "tinyllama-queue-2", "status": "available", "url": redis_url})

    address = QueueAddress(bucket, telemetry=quiet())
    assert address.follow(client) is True
    assert client.ping() is True
    assert address.follow(client) is False  # not looked at again before LOOK_EVERY_S
    assert QueueAddress(bucket, telemetry=quiet()).follow(client) is False  # already there
    client.close()


def test_follow_waits_while_the_queue_is_being_created(bucket):
    recorded(bucket, "waking", {"id": "tinyllama-queue-2", "status": "creating", "url": ""})
    nowhere = redis_py.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    assert QueueAddress(bucket, telemetry=quiet()).follow(nowhere) is False
    assert nowhere.connection_pool.connection_kwargs["host"] == "127.0.0.1"
    assert aws.client("s3").list_objects_v2(Bucket=CONTROL_BUCKET, Prefix="requests/")[
        "KeyCount"
    ] == 0  # fmt: skip


def test_a_node_that_finds_the_stack_asleep_asks_for_a_wake(bucket):
    recorded(bucket, "asleep", None)
    nowhere = redis_py.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    before_ms = int(time.time() * 1000)
    assert QueueAddress(bucket, telemetry=quiet()).follow(nowhere) is False
    listed = aws.client("s3").list_objects_v2(Bucket=CONTROL_BUCKET, Prefix="requests/wake/")
    [key] = [item["Key"] for item in listed.get("Contents", [])]
    since = bucket.state()["since_ms"]
    assert key in {control.request_key(control.Action.WAKE, control.wake_name(at, since))
                   for at in (before_ms, before_ms + 60_000)}  # fmt: skip
    asked = bucket.get_json(key)
    assert asked["action"] == "wake" and asked["by"] == "gpu_node"
    request = control.parse_request(key, json.dumps(asked).encode())
    assert request.action is control.Action.WAKE  # control acts on it

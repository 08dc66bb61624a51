"""The idle watchdog against real parts: redis-server, the moto server's EC2 and CloudWatch,
the IMDSv2 double answering a tagged, running instance's id.

Idle times are scaled (`minute_s`: a watchdog minute of one or two seconds) so that a
test waits seconds, not minutes. Nothing here asserts how precise the stop is (that is
bench/idle_watchdog.py's figure); it asserts that the stop never comes before the
deadline, that it comes, and that a doubt never stops a node.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.doubles.ec2 import tagged_instance
from tests.support.watcher_fixtures import enqueue, wait_for
from tlops import contract
from tlops.common import aws
from tlops.common.telemetry import Telemetry
from tlops.local.imds import ImdsDouble
from tlops.local.services import free_port
from tlops.node.activity import Activity, now_ms
from tlops.node.watchdog import Watchdog, WatchdogSettings, environment

pytestmark = pytest.mark.integration

LONG_AGO_MS = 3_600_000  # an hour: idle past any idle time


class Lines:
    """A log stream that keeps the JSON records (written from any thread)."""

    def __init__(self):
        self.records: list[dict] = []

    def write(self, text: str) -> None:
        self.records.extend(json.loads(line) for line in text.splitlines() if line)

    def flush(self) -> None:
        pass

    def messages(self) -> list[str]:
        return [r["message"] for r in self.records]


@pytest.fixture
def node(aws_stand_in) -> str:
    return tagged_instance(stopped=False)


@pytest.fixture
def imds(node) -> Iterator[ImdsDouble]:
    with ImdsDouble(node) as double:
        yield double


def state(instance_id: str) -> str:
    reply = aws.client("ec2").describe_instances(InstanceIds=[instance_id])
    return reply["Reservations"][0]["Instances"][0]["State"]["Name"]


def auto_stops() -> float:
    reply = aws.client("cloudwatch").get_metric_statistics(
        Namespace="TLFIF",
        MetricName="AutoStops",
        StartTime=time.time() - 600,
        EndTime=time.time() + 600,
        Period=60,
        Statistics=["Sum"],
    )
    return sum(point["Sum"] for point in reply["Datapoints"])


def active(state_dir: Path, *, ago_ms: int = 0, idle: int | None = None) -> int:
    """Write the activity file as the watcher does; returns the activity time."""
    at = now_ms() - ago_ms
    marks = Activity(state_dir)
    marks.mark(at, idle=idle)
    marks.flush(force=True)
    return at


@pytest.fixture
def make(tmp_path, redis_url, imds) -> Callable[..., tuple[Watchdog, Lines]]:
    def build(**overrides) -> tuple[Watchdog, Lines]:
        timer = overrides.pop("timer", True)
        clients = {k: overrides.pop(k) for k in ("ec2", "cloudwatch") if k in overrides}
        settings = WatchdogSettings(
            **{
                "redis_url": redis_url,
                "state_dir": tmp_path / "state",
                "imds_url": imds.url,
                "idle_minutes": 1,
                "minute_s": 1.0,
                **overrides,
            }
        )
        lines = Lines()
        watchdog = Watchdog(
            settings,
            telemetry=Telemetry("idle_watchdog", stream=lines),
            timer=timer,
            boot=lambda: 0,
            **clients,
        )
        return watchdog, lines

    return build


def test_it_stops_the_node_at_the_deadline_and_not_before(make, node, tmp_path):
    last = active(tmp_path / "state")  # idle 1 watchdog minute (1 s) from now
    cron_only, _ = make(timer=False)
    first = cron_only.tick()
    assert first.decision == "idle" and state(node) == "running"

    watchdog, lines = make()
    outcome = watchdog.tick()  # the deadline is before the next tick: the timer waits for it

    assert outcome.stopped, outcome
    assert state(node) == "stopped"
    assert outcome.fields["deadline_ms"] == last + 1000
    assert outcome.fields["stopped_ms"] >= outcome.fields["deadline_ms"]  # never before
    assert lines.messages() == ["idle", "stopping", "stopped"]
    armed = lines.records[0]
    assert armed["timer"] is True and armed["reason"].startswith("idle for ")
    assert armed["instance"] == node and armed["project"] == "tinyllama"
    assert auto_stops() == 1


def test_a_stop_is_made_and_counted_once(make, node, tmp_path):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    watchdog, lines = make()
    assert watchdog.tick().stopped
    again = watchdog.tick()
    assert again.decision == "already stopped" and not again.stopped
    assert [r.get("decision") for r in lines.records] == [
        "stopping",
        "stopped",
        "already stopped",
    ]
    assert auto_stops() == 1


def test_the_cron_only_tick_does_not_wait(make, node, tmp_path):
    active(tmp_path / "state")
    watchdog, lines = make(timer=False)
    outcome = watchdog.tick()
    assert outcome.decision == "idle" and lines.records[0]["timer"] is False
    assert state(node) == "running"


def test_a_deadline_beyond_the_next_tick_is_left_to_it(make, node, tmp_path):
    active(tmp_path / "state", idle=5)  # 5 s away; the next tick comes in 1 s
    watchdog, lines = make()
    outcome = watchdog.tick()
    assert outcome.decision == "idle", outcome
    assert lines.records[0]["timer"] is False
    assert state(node) == "running"


def test_a_queued_job_keeps_the_node_up_until_it_is_acknowledged(
    make, node, tmp_path, redis_url, redis_client
):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    [job_id] = enqueue(redis_url, 1)
    watchdog, lines = make()

    waiting = watchdog.tick()
    assert waiting.decision == "busy" and state(node) == "running"
    assert (waiting.fields["queued"], waiting.fields["in_flight"]) == (1, 0)
    assert waiting.reason == "busy: queued 1 / in flight 0, no watcher heartbeat"

    # delivered to a watcher and not acknowledged yet: still running
    redis_client.xgroup_create(contract.JOB_STREAM, contract.CONSUMER_GROUP, id="0")
    [(_, [(entry_id, _)])] = redis_client.xreadgroup(
        contract.CONSUMER_GROUP, "watcher-1", {contract.JOB_STREAM: ">"}
    )
    assert watchdog.tick().fields["queued"] == 1
    assert state(node) == "running"

    redis_client.xack(contract.JOB_STREAM, contract.CONSUMER_GROUP, entry_id)
    assert watchdog.tick().stopped
    assert state(node) == "stopped"
    assert [r["message"] for r in lines.records] == ["busy", "busy", "stopping", "stopped"]
    assert job_id


def test_entries_redis_cannot_count_are_still_seen(make, node, tmp_path, redis_client):
    """A deleted entry makes XINFO's lag unknown; the watchdog looks for one undelivered."""
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    redis_client.xgroup_create(contract.JOB_STREAM, contract.CONSUMER_GROUP, id="0", mkstream=True)
    ids = [redis_client.xadd(contract.JOB_STREAM, {"id": str(i)}) for i in range(3)]
    redis_client.xdel(contract.JOB_STREAM, ids[1])
    assert redis_client.xinfo_groups(contract.JOB_STREAM)[0]["lag"] is None
    watchdog, _ = make()
    assert watchdog.tick().decision == "busy"
    redis_client.xreadgroup(contract.CONSUMER_GROUP, "w", {contract.JOB_STREAM: ">"})
    for entry_id in (ids[0], ids[2]):
        redis_client.xack(contract.JOB_STREAM, contract.CONSUMER_GROUP, entry_id)
    assert watchdog.tick().stopped


def test_a_request_in_flight_keeps_the_node_up(make, node, tmp_path, redis_client):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    beat = {"consumer": "w", "in_flight": 2, "ts_ms": now_ms()}
    redis_client.set(contract.HEARTBEAT_KEY, json.dumps(beat), ex=30)
    watchdog, _ = make()
    busy = watchdog.tick()
    assert busy.decision == "busy" and busy.fields["in_flight"] == 2
    assert state(node) == "running"
    redis_client.delete(contract.HEARTBEAT_KEY)
    assert watchdog.tick().stopped


def test_a_job_that_comes_while_the_timer_waits_keeps_the_node_up(make, node, tmp_path, redis_url):
    active(tmp_path / "state")  # 2 s from now (a 2 s minute), before the next tick
    watchdog, lines = make(minute_s=2.0)
    outcome: list = []
    ticking = threading.Thread(target=lambda: outcome.append(watchdog.tick()))
    ticking.start()
    wait_for(lambda: lines.records and lines.records[0].get("timer"), "the timer to be armed")
    enqueue(redis_url, 1)
    ticking.join(timeout=10)

    assert outcome[0].decision == "busy"
    assert lines.messages() == ["idle", "busy"]
    assert state(node) == "running"
    assert auto_stops() == 0


def test_a_halt_while_the_timer_waits_stops_nothing(make, node, tmp_path):
    active(tmp_path / "state")
    watchdog, lines = make(minute_s=2.0)
    ticking = threading.Thread(target=watchdog.tick)
    ticking.start()
    wait_for(lambda: lines.records and lines.records[0].get("timer"), "the timer to be armed")
    watchdog.halt.set()
    ticking.join(timeout=10)
    assert lines.messages() == ["idle"]
    assert state(node) == "running"


def test_a_tick_that_finds_another_waiting_waits_for_it_and_stops_nothing_twice(
    make, node, tmp_path
):
    """cron starts the next tick while this one's timer waits: one stop, counted once."""
    active(tmp_path / "state")
    first, first_lines = make(minute_s=2.0)
    second, _ = make(minute_s=2.0)
    ticking = threading.Thread(target=first.tick)
    ticking.start()
    wait_for(lambda: first_lines.records and first_lines.records[0].get("timer"), "the timer")
    later = second.tick()  # waits on the lock until the first tick has stopped the node
    ticking.join(timeout=10)
    assert first_lines.messages() == ["idle", "stopping", "stopped"]
    assert later.decision == "already stopped" and not later.stopped, later
    assert auto_stops() == 1


def test_a_lock_held_for_a_whole_interval_is_a_doubt(make, node, tmp_path):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    (tmp_path / "state" / "watchdog.lock").touch()
    watchdog, _ = make(minute_s=0.2)
    watchdog.lock_wait_s = 0.2
    with (tmp_path / "state" / "watchdog.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        outcome = watchdog.tick()
    assert outcome.decision == "cannot decide" and "held the lock" in outcome.reason
    assert state(node) == "running"


# --- doubt means no stop, and the next tick tries again ---------------------------------
def test_imds_down_or_hung_or_failing_stops_nothing_then_a_later_tick_stops(
    make, node, tmp_path, imds
):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    watchdog, lines = make()
    imds.stop()
    down = watchdog.tick()
    assert down.decision == "cannot decide" and "IMDS PUT /latest/api/token" in down.reason
    imds.start()
    imds.hang()
    assert "timed out" in watchdog.tick().reason
    imds.recover()
    imds.fail(500)
    assert watchdog.tick().reason == "IMDS PUT /latest/api/token answered 500"
    assert state(node) == "running"

    imds.recover()
    assert watchdog.tick().stopped
    assert [r["level"] for r in lines.records[:3]] == ["WARNING"] * 3
    assert state(node) == "stopped"


def test_redis_down_stops_nothing_then_a_later_tick_stops(make, node, tmp_path, redis_server):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    watchdog, _ = make()
    redis_server.stop()
    try:
        down = watchdog.tick()
    finally:
        redis_server.start()
    assert down.decision == "cannot decide"
    assert down.reason.startswith("Redis unreachable or refused: ConnectionError")
    assert state(node) == "running"
    assert watchdog.tick().stopped


def test_ec2_down_stops_nothing_then_a_later_tick_stops(
    make, node, tmp_path, monkeypatch, aws_stand_in
):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    unreachable, lines = make()
    outcome = unreachable.tick()
    assert outcome.decision == "cannot decide"
    assert outcome.reason.startswith("EC2 did not stop the instance: Could not connect")
    assert lines.messages() == ["stopping", "cannot decide"]
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", aws_stand_in)
    assert state(node) == "running" and auto_stops() == 0

    watchdog, _ = make()  # the same state dir: nothing was recorded as stopped
    assert watchdog.tick().stopped
    assert auto_stops() == 1


def test_an_unreadable_activity_file_stops_nothing(make, node, tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "last_activity").write_text("{half a")
    watchdog, _ = make()
    outcome = watchdog.tick()
    assert outcome.decision == "cannot decide" and "not JSON" in outcome.reason
    assert state(node) == "running"


def test_an_unreadable_heartbeat_stops_nothing(make, node, tmp_path, redis_client):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    redis_client.set(contract.HEARTBEAT_KEY, "garbage", ex=30)
    watchdog, _ = make()
    assert "heartbeat is unreadable" in watchdog.tick().reason
    assert state(node) == "running"


def test_a_metric_that_cannot_be_sent_leaves_the_stop_standing(make, node, tmp_path):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    nowhere = boto3.client(
        "cloudwatch",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name="eu-west-1",
        config=Config(retries={"total_max_attempts": 1}),
    )
    watchdog, lines = make(cloudwatch=nowhere)
    outcome = watchdog.tick()
    assert outcome.stopped and "Could not connect" in outcome.fields["metric_error"]
    assert lines.messages() == ["stopping", "metric not sent", "stopped"]
    assert state(node) == "stopped"


# --- the command line -------------------------------------------------------------------
def command_env(tmp_path: Path, redis_url: str, imds: ImdsDouble, **values) -> dict[str, str]:
    settings = environment(
        redis_url=redis_url, state_dir=tmp_path / "state", imds_url=imds.url, **values
    )
    return {**os.environ, **settings}


def test_tick_from_the_command_line_stops_an_idle_node(tmp_path, redis_url, imds, node):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    done = subprocess.run(
        [sys.executable, "-m", "tlops.node.watchdog", "tick"],
        check=False,
        env=command_env(tmp_path, redis_url, imds, idle_minutes=1),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["message"] for r in records] == ["stopping", "stopped"]
    assert state(node) == "stopped"


def test_tick_exits_1_when_it_cannot_decide(tmp_path, redis_url, imds, node):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    imds.stop()
    done = subprocess.run(
        [sys.executable, "-m", "tlops.node.watchdog", "tick"],
        check=False,
        env=command_env(tmp_path, redis_url, imds),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert json.loads(done.stdout.splitlines()[-1])["message"] == "cannot decide"
    assert state(node) == "running"


def test_run_ticks_until_sigterm(tmp_path, redis_url, imds, node):
    active(tmp_path / "state", ago_ms=LONG_AGO_MS)
    log = tmp_path / "watchdog.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tlops.node.watchdog", "run"],
            env=command_env(tmp_path, redis_url, imds, minute_s=0.5),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: state(node) == "stopped", "the node to be stopped", timeout=60)
        wait_for(lambda: "already stopped" in log.read_text(), "a tick after the stop")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0
    messages = [json.loads(line)["message"] for line in log.read_text().splitlines()]
    assert messages[0] == "watchdog started" and messages[-1] == "watchdog stopped"
    assert messages.count("stopping") == 1

"""Chaos: 200 jobs while the watcher is killed -9 again and again; nothing may be lost or doubled.

Each kill leaves deliveries unacknowledged, some mid-request and some between the
S3 write and the status flip. The next watcher must reclaim them, every job
must end done (no kill can use up its deliveries), and no result may be written twice
(the bucket is versioned, so a second write would show as a second version).
"""

from __future__ import annotations

import signal

import pytest

from tests.doubles.inference import InferenceDouble
from tests.support.watcher_fixtures import (
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

pytestmark = pytest.mark.integration

JOBS = 200
KILLS = 4
ARGS = (
    "--visibility-timeout",
    "1",
    "--max-deliveries",
    "5",
    "--concurrency",
    "16",
    "--drain-deadline",
    "10",
)


def test_kill_9_repeatedly_loses_and_duplicates_nothing(
    aws_stand_in, redis_client, redis_url, tmp_path
):
    make_bucket(versioned=True)
    ids = enqueue(redis_url, JOBS)
    killed_in_flight = 0
    with InferenceDouble(latency=0.05, cap=16) as double:
        for kill in range(KILLS):
            watcher = WatcherProcess(tmp_path, redis_url, double.url, *ARGS).start()
            # let it make some progress (and hold some jobs) before killing it
            target = double.completed + 20 + 5 * kill
            wait_for(lambda t=target: double.completed >= t, f"progress before kill {kill + 1}")
            killed_in_flight += double.in_flight
            watcher.signal(signal.SIGKILL)
            watcher.wait()
        last = WatcherProcess(tmp_path, redis_url, double.url, *ARGS).start()
        try:
            wait_for(lambda: settled(redis_client, ids), "every job to settle", timeout=60)
        finally:
            last.stop()

    # The double fails no request, and KILLS kills cost a job at most KILLS of its
    # --max-deliveries 5: every job is redelivered until it is done (docs/delivery.md: a
    # killed watcher's jobs come back, a stored result is adopted), none is dead-lettered.
    assert set(statuses(redis_client, ids).values()) == {"done"}
    assert dead_letters(redis_client) == {}
    for job_id in ids:
        result = result_of(job_id)
        assert (result["id"], result["status"]) == (job_id, "done")
        assert write_count(job_id) == 1, f"{job_id} result written more than once"
    assert pending_count(redis_client) == 0
    redelivered = [
        j for j in ids if int(redis_client.hget(contract.job_key(j), "attempts") or 0) > 1
    ]
    assert killed_in_flight == 0 or redelivered  # kills mid-job did force redeliveries

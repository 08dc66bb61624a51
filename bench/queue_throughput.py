"""Queue overhead: no-op jobs enqueued, processed and acknowledged, watcher vs RQ vs arq.

Every system gets the same Redis (a fresh redis-server) and the same work: N
jobs that do nothing. Timed from the first enqueue to the last acknowledgement,
so both sides of the queue count. The watcher runs with its no-op runner (no
HTTP, no S3) and is fed through the router's own admission script; RQ runs a
SimpleWorker in burst mode (no fork per job, RQ's fastest); arq runs its
worker in burst mode with max_jobs equal to the watcher's slots.

arq 0.28.0 requires redis-py < 6 and this project pins 8.x, so arq cannot share
the project's environment: give it an interpreter of its own with
`--arq-python` (or TL_BENCH_ARQ_PYTHON), e.g. a venv made with
`.venv/bin/uv venv .venv-arq && .venv/bin/uv pip install --python
.venv-arq/bin/python arq==0.28.0`. Without one, the arq line says so.
Figures, not a test.

    PYTHONPATH=. .venv/bin/python bench/queue_throughput.py [--jobs 5000] \
        [--arq-python .venv-arq/bin/python]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis as redis_py

from tests.doubles.runners import NoopRunner
from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.contract import new_job_id, records
from tlops.contract.request import InferRequest
from tlops.edge.admission import RateLimits, admit
from tlops.edge.resp import RespClient
from tlops.local.services import RedisProcess
from tlops.node.settings import Settings
from tlops.node.watcher import Watcher

NO_LIMITS = RateLimits(burst=10**9, sustained=10**9)

ARQ_SCRIPT = """
import asyncio, json, sys, time
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

async def noop(ctx):
    return None

async def main(url, count, max_jobs):
    settings = RedisSettings.from_dsn(url)
    pool = await create_pool(settings)
    await pool.flushall()
    start = time.perf_counter()
    for _ in range(count):
        await pool.enqueue_job("noop")
    enqueued = time.perf_counter()
    worker = Worker(functions=[noop], redis_settings=settings, burst=True, poll_delay=0.01,
                    handle_signals=False, keep_result=0, max_jobs=max_jobs)
    await worker.main()
    done = time.perf_counter()
    await worker.close()
    print(json.dumps({"done": worker.jobs_complete, "enqueue_s": enqueued - start,
                      "total_s": done - start}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def bench_watcher(url: str, count: int, concurrency: int) -> dict:
    redis_py.Redis.from_url(url).flushall()
    client = RespClient(url, timeout=2.0)
    start = time.perf_counter()
    for index in range(count):
        job_id = new_job_id()
        fields = records.queued(
            InferRequest(prompt=f"job {index}"), sub="bench", job_id=job_id, reply_bucket="b"
        )
        admit(client, sub="bench", job_id=job_id, job_fields=fields, limits=NO_LIMITS,
              job_ttl_s=600, within_s=1.0)  # fmt: skip
    enqueued = time.perf_counter()
    settings = Settings(redis_url=url, concurrency=concurrency, block_ms=100)
    watcher = Watcher(settings, NoopRunner(), telemetry=Telemetry("bench", stream=io.StringIO()))
    thread = threading.Thread(target=watcher.work, daemon=True)
    thread.start()
    while watcher.counts["done"] < count:
        time.sleep(0.001)
    done = time.perf_counter()
    watcher.stop()
    thread.join()
    client.close()
    pending = redis_py.Redis.from_url(url).xpending(contract.JOB_STREAM, contract.CONSUMER_GROUP)
    assert pending["pending"] == 0, "the watcher left jobs unacknowledged"
    return {"done": watcher.counts["done"], "enqueue_s": enqueued - start, "total_s": done - start}


def bench_rq(url: str, count: int) -> dict:
    from rq import Queue, SimpleWorker

    connection = redis_py.Redis.from_url(url)
    connection.flushall()
    queue = Queue("bench", connection=connection)
    start = time.perf_counter()
    for _ in range(count):
        # RQ refuses functions defined in __main__; a stdlib call is as close to no-op as any
        queue.enqueue("time.monotonic", result_ttl=0)
    enqueued = time.perf_counter()
    worker = SimpleWorker([queue], connection=connection)
    worker.work(burst=True, logging_level="WARNING")
    done = time.perf_counter()
    failed = queue.failed_job_registry.count
    assert queue.count == 0, "RQ left jobs queued"
    return {"done": count - failed, "enqueue_s": enqueued - start, "total_s": done - start}


def bench_arq(url: str, count: int, max_jobs: int, python: str | None) -> dict | str:
    if not python:
        return "skipped: pass --arq-python (an interpreter with arq==0.28.0 installed)"
    reply = subprocess.run(
        [python, "-c", ARQ_SCRIPT, url, str(count), str(max_jobs)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if reply.returncode != 0:
        return f"failed: {reply.stderr.strip().splitlines()[-1:]}"
    return json.loads(reply.stdout.strip().splitlines()[-1])


def line(name: str, figures: dict | str, count: int) -> str:
    if isinstance(figures, str):
        return f"{name:8} {figures}"
    rate = figures["done"] / figures["total_s"]
    return (
        f"{name:8} {figures['done']:>6} jobs  enqueue {figures['enqueue_s']:6.2f} s  "
        f"total {figures['total_s']:6.2f} s  {rate:9.0f} jobs/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="jobs in flight: watcher slots and arq's max_jobs (no-op jobs wait on nothing, "
        "so this is in effect the batch size)",
    )
    parser.add_argument("--arq-python", default=os.environ.get("TL_BENCH_ARQ_PYTHON"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisProcess(Path(tmp))
        server.start()
        try:
            results = {
                "watcher": bench_watcher(server.url, args.jobs, args.concurrency),
                "rq": bench_rq(server.url, args.jobs),
                "arq": bench_arq(server.url, args.jobs, args.concurrency, args.arq_python),
            }
        finally:
            server.stop()

    print(f"no-op jobs, enqueue -> processed -> acked; {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {args.jobs} jobs")  # fmt: skip
    for name, figures in results.items():
        print(line(name, figures, args.jobs))
    watcher = results["watcher"]["done"] / results["watcher"]["total_s"]
    for other in ("rq", "arq"):
        if isinstance(results[other], dict):
            ratio = watcher / (results[other]["done"] / results[other]["total_s"])
            print(f"watcher / {other}: {ratio:.1f}x")


if __name__ == "__main__":
    sys.exit(main())

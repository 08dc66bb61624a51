"""Does the watcher keep the inference server full? Throughput against the ideal cap / latency.

The inference double answers every request after `latency` seconds and runs at
most `cap` at once, so no client can finish more than cap / latency jobs a
second. The watcher (`python -m tlops.node.watcher`) runs with concurrency `cap`
against a real Redis and the moto S3 (every result is written), the jobs are
queued up front, and the figure is the
watcher's throughput as a fraction of that ceiling: what is lost to reading the
stream, the S3 write and settling each job between one request and the next.
Two figures: from the watcher's start (bootstrap included), and from the first
request the server sees (the steady state a long-running watcher lives in; the
first figure also counts the watcher process starting up).
Figures, not a test.

    PYTHONPATH=. .venv/bin/python bench/saturation.py [--latency 0.5] [--cap 8] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis as redis_py

from tests.doubles.inference import InferenceDouble
from tlops import contract
from tlops.common import aws
from tlops.contract import new_job_id, records
from tlops.contract.request import InferRequest
from tlops.edge.admission import RateLimits, admit
from tlops.edge.resp import RespClient
from tlops.local.services import MotoProcess, RedisProcess

BUCKET = "replies-bench"


def enqueue(redis_url: str, jobs: int) -> list[str]:
    client = RespClient(redis_url, timeout=2.0)
    ids = []
    for index in range(jobs):
        job_id = new_job_id()
        fields = records.queued(
            InferRequest(prompt=f"job {index}"), sub="bench", job_id=job_id, reply_bucket=BUCKET
        )
        admit(
            client,
            sub="bench",
            job_id=job_id,
            job_fields=fields,
            limits=RateLimits(burst=10**9, sustained=10**9),
            job_ttl_s=600,
            within_s=1.0,  # half the client's reply timeout, as the router does
        )
        ids.append(job_id)
    client.close()
    return ids


def all_done(redis: redis_py.Redis, ids: list[str]) -> bool:
    pipe = redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(contract.job_key(job_id), "status")
    return all(status == contract.JobStatus.DONE for status in pipe.execute())


def run(latency: float, cap: int, rounds: int, redis_url: str) -> dict:
    jobs = cap * rounds
    ids = enqueue(redis_url, jobs)
    redis = redis_py.Redis.from_url(redis_url, decode_responses=True)
    with InferenceDouble(latency=latency, cap=cap) as double:
        # The watcher runs as its own process, as on the node: the double's threads here
        # do not compete with it for the interpreter lock.
        argv = [sys.executable, "-m", "tlops.node.watcher", "--redis-url", redis_url,
                "--inference-url", double.url, "--model", double.model,
                "--concurrency", str(cap)]  # fmt: skip
        start = time.perf_counter()
        watcher = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        try:
            while not all_done(redis, ids):
                time.sleep(0.01)
            end = time.perf_counter()
        finally:
            watcher.send_signal(signal.SIGTERM)
            watcher.wait()
        steady = end - (double.first_request_at or start)
        max_in_flight = double.max_in_flight
    redis.close()
    return {
        "jobs": jobs,
        "elapsed_s": end - start,
        "rate": jobs / (end - start),
        "steady_rate": jobs / steady,
        "ideal": cap / latency,
        "max_in_flight": max_in_flight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, action="append", help="seconds (repeatable)")
    parser.add_argument("--cap", type=int, default=8, help="concurrent requests the double runs")
    parser.add_argument("--rounds", type=int, default=20, help="jobs = cap * rounds")
    args = parser.parse_args()
    latencies = args.latency or [0.5, 0.2]

    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisProcess(Path(tmp) / "redis")
        moto = MotoProcess(Path(tmp) / "moto")
        redis_server.start()
        moto.start()
        os.environ.update(
            {
                "TL_AWS_ENDPOINT_URL": moto.url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
            }
        )
        aws.client("s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region()}
        )
        try:
            figures = [
                (lat, run(lat, args.cap, args.rounds, redis_server.url)) for lat in latencies
            ]
        finally:
            moto.stop()
            redis_server.stop()

    print(
        f"watcher saturation vs the inference double; {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, results written to the moto S3"
    )
    for latency, f in figures:
        print(
            f"L={latency * 1000:.0f} ms C={args.cap}: {f['jobs']} jobs in {f['elapsed_s']:.2f} s "
            f"= {f['rate']:.1f} jobs/s, ideal C/L = {f['ideal']:.1f} -> "
            f"{100 * f['rate'] / f['ideal']:.1f} % from watcher start, "
            f"{100 * f['steady_rate'] / f['ideal']:.1f} % from the first request "
            f"(max in flight {f['max_in_flight']})"
        )


if __name__ == "__main__":
    main()

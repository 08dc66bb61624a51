"""Does the watcher keep the inference server full? Throughput against the ideal cap / latency.

The inference double streams every answer as `tokens` server-sent events spread
evenly over `latency` seconds, as vLLM streams, and runs at most `cap` at once,
so no client can finish more than cap / latency jobs a second. Each latency runs
with each token count, in the same process: 2 tokens (a chunk or two per job:
about what the watcher did before it streamed) against 64 (the cost of reading
every chunk and publishing the text so far). The watcher (`python -m
tlops.node.watcher`) runs with concurrency `cap` against a real Redis and the
moto S3 (every result is written; the text so far is published on the record
at the watcher's default rate), the jobs are queued up front, and the figure is
the watcher's throughput as a fraction of that ceiling: what is lost to reading
the stream, publishing, the S3 write and settling each job between one request
and the next. Two figures: from the watcher's start (bootstrap included), and
from the first request the server sees (the steady state a long-running watcher
lives in; the first figure also counts the watcher process starting up).

Then the time to first visible text: a warm watcher, one job at a time, from
just before its admission to the first `partial` on its record, the double
sending a token every `--token-delay` seconds (the first after one delay).
Figures, not a test.

    PYTHONPATH=. .venv/bin/python bench/saturation.py [--latency 0.5] [--cap 8] [--rounds 20]
        [--tokens 2 --tokens 64] [--token-delay 0.02] [--first-text-jobs 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import signal
import statistics
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


def enqueue(redis_url: str, jobs: int, client: RespClient | None = None) -> list[str]:
    owned = client is None
    client = client or RespClient(redis_url, timeout=2.0)
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
    if owned:
        client.close()
    return ids


def all_done(redis: redis_py.Redis, ids: list[str]) -> bool:
    pipe = redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(contract.job_key(job_id), "status")
    return all(status == contract.JobStatus.DONE for status in pipe.execute())


def watcher_argv(redis_url: str, double: InferenceDouble, cap: int) -> list[str]:
    # The watcher runs as its own process, as on the node: the double's threads here
    # do not compete with it for the interpreter lock.
    return [sys.executable, "-m", "tlops.node.watcher", "--redis-url", redis_url,
            "--inference-url", double.url, "--model", double.model,
            "--concurrency", str(cap)]  # fmt: skip


def run(latency: float, cap: int, rounds: int, tokens: int, redis_url: str) -> dict:
    jobs = cap * rounds
    ids = enqueue(redis_url, jobs)
    redis = redis_py.Redis.from_url(redis_url, decode_responses=True)
    with InferenceDouble(cap=cap, tokens=tokens, token_delay=latency / tokens) as double:
        start = time.perf_counter()
        watcher = subprocess.Popen(watcher_argv(redis_url, double, cap), stdout=subprocess.DEVNULL)
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            while not all_done(redis, ids):
                time.sleep(0.01)
            end = time.perf_counter()
        finally:
            watcher.send_signal(signal.SIGTERM)
            watcher.wait()
        steady = end - (double.first_request_at or start)
        max_in_flight = double.max_in_flight
        request_s = double.busy_s / jobs  # what one request really took, overshoot included
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the watcher's, once it exited
    redis.close()
    return {
        "jobs": jobs,
        "elapsed_s": end - start,
        "rate": jobs / (end - start),
        "steady_rate": jobs / steady,
        "ideal": cap / latency,
        "max_in_flight": max_in_flight,
        "request_s": request_s,
        "watcher_cpu": (cpu_after.ru_utime + cpu_after.ru_stime)
        - (cpu_before.ru_utime + cpu_before.ru_stime),
    }


def first_text(token_delay: float, tokens: int, jobs: int, redis_url: str) -> list[float]:
    """Seconds from just before each job's admission to the first `partial` on its record."""
    redis = redis_py.Redis.from_url(redis_url, decode_responses=True)
    client = RespClient(redis_url, timeout=2.0)
    waits = []
    with InferenceDouble(tokens=tokens, token_delay=token_delay) as double:
        watcher = subprocess.Popen(watcher_argv(redis_url, double, 8), stdout=subprocess.DEVNULL)
        try:
            warm = enqueue(redis_url, 1, client)  # the process started, its connections made
            while not all_done(redis, warm):
                time.sleep(0.01)
            for _ in range(jobs):
                start = time.perf_counter()
                [job_id] = enqueue(redis_url, 1, client)
                while not redis.hget(contract.job_key(job_id), "partial"):
                    time.sleep(0.0005)
                waits.append(time.perf_counter() - start)
                while not all_done(redis, [job_id]):  # one at a time: nothing queued behind
                    time.sleep(0.01)
        finally:
            watcher.send_signal(signal.SIGTERM)
            watcher.wait()
    client.close()
    redis.close()
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, action="append", help="seconds (repeatable)")
    parser.add_argument("--cap", type=int, default=8, help="concurrent requests the double runs")
    parser.add_argument("--rounds", type=int, default=20, help="jobs = cap * rounds")
    parser.add_argument("--tokens", type=int, action="append", help="per answer (repeatable)")
    parser.add_argument("--token-delay", type=float, default=0.02, help="first text: s/token")
    parser.add_argument("--first-text-jobs", type=int, default=30)
    args = parser.parse_args()
    latencies = args.latency or [0.5, 0.2]
    token_counts = args.tokens or [2, 64]

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
                (lat, tokens, run(lat, args.cap, args.rounds, tokens, redis_server.url))
                for lat in latencies
                for tokens in token_counts
            ]
            waits = first_text(
                args.token_delay, max(token_counts), args.first_text_jobs, redis_server.url
            )
        finally:
            moto.stop()
            redis_server.stop()

    print(
        f"watcher saturation vs the inference double; {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, results written to the moto S3, answers streamed"
    )
    for latency, tokens, f in figures:
        print(
            f"L={latency * 1000:.0f} ms C={args.cap} T={tokens}: "
            f"{f['jobs']} jobs in {f['elapsed_s']:.2f} s "
            f"= {f['rate']:.1f} jobs/s, ideal C/L = {f['ideal']:.1f} -> "
            f"{100 * f['rate'] / f['ideal']:.1f} % from watcher start, "
            f"{100 * f['steady_rate'] / f['ideal']:.1f} % from the first request "
            f"(max in flight {f['max_in_flight']}; a request took {f['request_s'] * 1000:.1f} ms "
            f"at the double, so C/that = {100 * f['steady_rate'] * f['request_s'] / args.cap:.1f} %"
            f"; watcher CPU {f['watcher_cpu']:.2f} s, "
            f"{100 * f['watcher_cpu'] / f['elapsed_s']:.0f} % of one core)"
        )

    quantiles = statistics.quantiles(waits, n=20)
    print(
        f"first visible text, warm watcher, a token every {args.token_delay * 1000:.0f} ms: "
        f"p50 {statistics.median(waits) * 1000:.1f} ms, p95 {quantiles[18] * 1000:.1f} ms "
        f"over {len(waits)} jobs (the double's own first token: {args.token_delay * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()

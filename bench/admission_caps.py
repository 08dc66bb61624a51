"""What the queue caps cost the admission script: one `admit` (EVALSHA) against a real Redis
without caps, with caps and an empty queue, and with caps and `open` jobs already counted
(every admission reads each open job's record). Prints p50/p99 per case. Figures, not a test.

    PYTHONPATH=. .venv/bin/python bench/admission_caps.py [--requests 2000] [--open 49]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from tlops import contract
from tlops.contract import records
from tlops.contract.request import InferRequest
from tlops.edge.admission import QueueCaps, RateLimits, admit
from tlops.edge.resp import RespClient
from tlops.local.services import RedisProcess

NO_LIMITS = RateLimits(burst=10**9, sustained=10**9)


def one(client: RespClient, sub: str, caps: QueueCaps | None) -> tuple[float, str]:
    job_id = contract.new_job_id()
    fields = records.queued(InferRequest(prompt="x"), sub=sub, job_id=job_id, reply_bucket="b")
    start = time.perf_counter()
    outcome = admit(client, sub=sub, job_id=job_id, job_fields=fields, limits=NO_LIMITS,
                    job_ttl_s=300, within_s=1.0, caps=caps).outcome  # fmt: skip
    elapsed = (time.perf_counter() - start) * 1000
    assert outcome == "queued", outcome
    return elapsed, job_id


def case(client: RespClient, caps: QueueCaps | None, open_jobs: int, requests: int) -> list[float]:
    client.execute("FLUSHALL")
    for index in range(open_jobs):  # open jobs of other users, counted on every admission
        one(client, f"other-{index}", caps)
    samples = []
    for _ in range(requests):
        elapsed, job_id = one(client, "bench", caps)
        client.execute("ZREM", contract.OPEN_JOBS_KEY, job_id)  # keep `open_jobs` counted
        samples.append(elapsed)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--open", type=int, default=49)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisProcess(Path(tmp))
        server.start()
        client = RespClient(server.url, timeout=2.0)
        try:
            caps = QueueCaps(total=args.open + 1, per_user=1)
            results = {
                "no caps": case(client, None, 0, args.requests),
                "caps, empty queue": case(client, caps, 0, args.requests),
                f"caps, {args.open} open jobs": case(client, caps, args.open, args.requests),
            }
        finally:
            client.close()
            server.stop()
    print(f"{platform.node()} {platform.python_version()} requests={args.requests}")
    for name, samples in results.items():
        ordered = sorted(samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"{name:28} p50 {statistics.median(ordered):.3f} ms  p99 {p99:.3f} ms")


if __name__ == "__main__":
    main()

"""The whole path minus the model: `POST /infer` → result readable through `GET /jobs/{id}`.

A local stack (moto, redis-server, the local gateway) deployed with deploy.yml,
a watcher process on its queue, and an inference double that answers at once:
what remains is the edge, the router, Redis, the watcher, S3 and the polling
client. Jobs are sent one after another; each is timed from just before its
POST to the first GET that says `done`, and the model's own time (the
watcher's `latency_ms`) is subtracted. The client polls every millisecond, so
the figure includes up to one GET round trip of polling slack. In the same run
the baseline: one `GET /ping` round trip through the gateway. Requests go out
from several stand-in users in turn, as the per-user limit allows.

Then the time to first visible text on a warm node (issue 21): the double streams
`--stream-tokens` tokens `--token-delay` apart, and each job is timed from just before
its POST to the first GET whose `partial_output` is not empty; the double's own time to
its first token (one token delay) is subtracted, leaving what the stack adds (the queue,
the watcher's first publish, the GET). A client polling every 0.5 s, as `tlops infer`
does, adds up to that on top. Figures, not a test.

    PYTHONPATH=. .venv/bin/python bench/e2e.py [--jobs 300] [--users 20] [--stream-jobs 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.doubles.inference import InferenceDouble
from tlops.cli import client, playbooks
from tlops.local import users
from tlops.local.services import free_port
from tlops.local.stack import LocalStack


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--stream-jobs", type=int, default=30)
    parser.add_argument("--stream-tokens", type=int, default=20)
    parser.add_argument("--token-delay", type=float, default=0.05)
    args = parser.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="tlops-e2e-"))
    ports = {name: free_port() for name in ("moto", "redis", "gateway", "inference")}
    stack = LocalStack(state_dir=state_dir, ports=ports, inference=False)
    os.environ["TLOPS_STATE_DIR"] = str(state_dir)
    watcher = None
    try:
        stack.up()
        outputs = playbooks.deploy_local(stack)
        with InferenceDouble(latency=0.0, cap=8) as double:
            env = {**os.environ, **stack.env()}
            watcher = subprocess.Popen(
                [sys.executable, "-m", "tlops.node.watcher", "--redis-url", stack.redis_url,
                 "--inference-url", double.url, "--concurrency", "8"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            apis = [
                client.Api(
                    stack.api_url,
                    client.TokenSource(
                        token=users.id_token(
                            pool_id=outputs["user_pool_id"],
                            client_id=outputs["client_id"],
                            username=f"bench-{n}",
                        )
                    ),
                    max_rate_waits=10,
                )
                for n in range(args.users)
            ]
            pings = []
            for _ in range(200):
                started = time.perf_counter()
                apis[0].request("GET", "/ping")
                pings.append((time.perf_counter() - started) * 1000)

            # warm-up: the first jobs pay the node's cold boot, imports, connections
            for api in apis[:3]:
                view = client.follow(api, api.submit({"prompt": "warm up"})["id"], timeout=60)
                assert view["status"] == "done", view

            overheads, model_ms = [], []
            for index in range(args.jobs):
                api = apis[index % len(apis)]
                started = time.perf_counter()
                job_id = api.submit({"prompt": f"job {index}", "max_tokens": 4})["id"]
                while True:
                    view = api.job(job_id)
                    if view["status"] in client.FINAL_STATUSES:
                        break
                    time.sleep(0.001)
                elapsed = (time.perf_counter() - started) * 1000
                assert view["status"] == "done", view
                model_ms.append(view.get("latency_ms", 0.0))
                overheads.append(elapsed - view.get("latency_ms", 0.0))

            double.tokens, double.token_delay = args.stream_tokens, args.token_delay
            first_text = []
            for index in range(args.stream_jobs):
                api = apis[index % len(apis)]
                started = time.perf_counter()
                job_id = api.submit({"prompt": f"stream {index}"})["id"]
                while not (view := api.job(job_id)).get("partial_output"):
                    assert view["status"] not in client.FINAL_STATUSES, view
                    time.sleep(0.001)
                first_text.append((time.perf_counter() - started) * 1000)
                client.follow(api, job_id, timeout=60)
    finally:
        if watcher is not None:
            watcher.terminate()
            watcher.wait(timeout=30)
        stack.down()

    ping_p50 = statistics.median(pings)
    p50, p99 = percentile(overheads, 0.5), percentile(overheads, 0.99)
    print(f"# e2e, {platform.node() or 'machine'}, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}, {args.jobs} jobs, {args.users} users")  # fmt: skip
    print(f"GET /ping round trip (baseline)    p50 {ping_p50:7.2f} ms  "
          f"p99 {percentile(pings, 0.99):7.2f} ms")  # fmt: skip
    print(f"/infer -> result readable, minus model  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
    print(f"model time (watcher's latency_ms)  p50 {statistics.median(model_ms):7.2f} ms")
    print(f"ratio p50 / ping p50: {p50 / ping_p50:.1f}x   goal p50 <= 25 ms: "
          f"{'met' if p50 <= 25 else 'NOT met'}")  # fmt: skip
    model_first = args.token_delay * 1000
    added = [ms - model_first for ms in first_text]
    print(f"first visible text (GET /jobs/{{id}}), {args.stream_jobs} jobs, the double's first "
          f"token at {model_first:.0f} ms: p50 {statistics.median(first_text):7.2f} ms  "
          f"p99 {percentile(first_text, 0.99):7.2f} ms")  # fmt: skip
    print(f"  of which the stack adds          p50 {statistics.median(added):7.2f} ms  "
          f"p99 {percentile(added, 0.99):7.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()

"""Warm latency of the router's `POST /infer` handler, in-process, against a real Redis.

Path measured: JWT verification (RS256 against a cached JWKS) + body validation
+ rate limit + enqueue (one EVALSHA) + response. Baseline in the same run: the
raw Redis round trip (PING) with the same client code, and EVALSHA of an empty
script. Prints p50/p99 and the ratio to the round trip. Figures, not a test.

    PYTHONPATH=. .venv/bin/python bench/router.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from tests.doubles.tokens import AUDIENCE, ISSUER, JwksServer, KeySet
from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.edge.resp import RespClient, Script
from tlops.edge.router import Router, RouterConfig
from tlops.local.services import RedisProcess


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timed(fn, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def event(token: str, body: str) -> dict:
    return {
        "version": "2.0",
        "routeKey": "POST /infer",
        "rawPath": "/infer",
        "headers": {"authorization": f"Bearer {token}", "content-type": "application/json"},
        "requestContext": {"requestId": "bench", "http": {"method": "POST", "path": "/infer"}},
        "body": body,
        "isBase64Encoded": False,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()

    keys = KeySet()
    # one user per 5 requests keeps every request under the burst limit
    tokens = [keys.token(sub=f"bench-user-{i}") for i in range(args.requests // 5 + 1)]
    with tempfile.TemporaryDirectory() as tmp, JwksServer(keys.jwks()) as jwks:
        redis = RedisProcess(Path(tmp))
        redis.start()
        try:
            config = RouterConfig(
                redis_url=redis.url,
                issuer=ISSUER,
                audience=AUDIENCE,
                jwks_url=jwks.url,
                reply_bucket="bench",
            )
            router = Router(config)
            import tlops.edge.router as router_module

            router_module.telemetry = Telemetry("router", stream=open("/dev/null", "w"))  # noqa: SIM115
            raw = RespClient(redis.url)
            raw.execute("SET", contract.HEARTBEAT_KEY, "1")  # node up: the warm path skips EC2
            body = json.dumps({"prompt": "Write a haiku about idle GPUs.", "idle": 5})
            events = [event(tokens[i // 5], body) for i in range(args.requests)]

            for e in events[:50]:  # warm-up: JWKS fetched, script loaded, connection open
                assert router.handle(e)["statusCode"] == 202
            raw.execute("FLUSHALL")
            raw.execute("SET", contract.HEARTBEAT_KEY, "1")

            it = iter(events)
            statuses = []
            infer = timed(
                lambda: statuses.append(router.handle(next(it))["statusCode"]), args.requests
            )
            assert set(statuses) == {202}, set(statuses)
            ping = timed(raw.ping, args.requests)
            noop = Script("return 1")
            evalsha = timed(lambda: raw.run_script(noop, [], []), args.requests)
            token = tokens[0]
            verify = timed(lambda: router.verifier.verify(token), args.requests)
        finally:
            redis.stop()

    rows = {
        "POST /infer handler": percentiles(infer),
        "  of which JWT verify": percentiles(verify),
        "Redis PING round trip": percentiles(ping),
        "Redis EVALSHA no-op": percentiles(evalsha),
    }
    print(
        f"# router warm path, {args.requests} requests, {platform.node()}, "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    for name, (p50, p99) in rows.items():
        print(f"{name:24} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")
    p50, p99 = rows["POST /infer handler"]
    r50, r99 = rows["Redis PING round trip"]
    print(f"ratio infer/PING          p50 {p50 / r50:5.1f}x    p99 {p99 / r99:5.1f}x")
    print("Redis round trips on the path: 1 (EVALSHA: rate limit + enqueue + heartbeat)")


if __name__ == "__main__":
    main()

"""Cold start of the router Lambda: a fresh interpreter imports the handler and serves one event.

The router zip is built and unpacked, and run the way Lambda runs it: only the
zip's contents and the standard library on the path (`python -S`), bytecode
from the zip's `__pycache__`. The first event is a real `POST /infer`: the JWKS
is fetched, Redis is connected and the admission script loaded. Baseline in the
same run: a bare interpreter (`python -S -c pass`). Prints the medians of N
runs and the `-X importtime` breakdown of one run. Figures, not a test.

    PYTHONPATH=. .venv/bin/python bench/cold_start.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from tests.doubles.tokens import AUDIENCE, ISSUER, JwksServer, KeySet
from tlops import contract
from tlops.edge.resp import RespClient
from tlops.local.services import RedisProcess
from tlops.tooling.lambda_zip import build_function_zip

FIRST_EVENT = r"""
import json, os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, os.environ["BENCH_TASK_ROOT"])
from handler import lambda_handler
t1 = time.perf_counter()
result = lambda_handler(json.loads(os.environ["BENCH_EVENT"]), None)
t2 = time.perf_counter()
assert result["statusCode"] == 202, result
print(json.dumps({"import_ms": (t1 - t0) * 1000, "first_event_ms": (t2 - t1) * 1000}))
"""


def wall_ms(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return (time.perf_counter() - start) * 1000, done.stdout


def importtime_breakdown(argv: list[str], env: dict[str, str], min_ms: float = 3.0) -> list[str]:
    """The import tree of one run, three levels deep, entries of at least `min_ms`."""
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if depth <= 3 and int(cumulative) >= min_ms * 1000:
            rows.append(f"  {int(cumulative) / 1000:7.1f} ms  {'  ' * depth}{name.strip()}")
    return rows  # importtime lists children before their parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    keys = KeySet()
    with tempfile.TemporaryDirectory() as tmp, JwksServer(keys.jwks()) as jwks:
        tmp_path = Path(tmp)
        report = build_function_zip("router", tmp_path / "router.zip")
        task_root = tmp_path / "task"
        with zipfile.ZipFile(report.path) as archive:
            archive.extractall(task_root)
        redis = RedisProcess(tmp_path / "redis")
        redis.start()
        try:
            RespClient(redis.url).execute("SET", contract.HEARTBEAT_KEY, "1")
            event = {
                "version": "2.0",
                "routeKey": "POST /infer",
                "rawPath": "/infer",
                "headers": {
                    "authorization": f"Bearer {keys.token()}",
                    "content-type": "application/json",
                },
                "requestContext": {"requestId": "cold", "http": {"method": "POST"}},
                "body": json.dumps({"prompt": "hello"}),
                "isBase64Encoded": False,
            }
            env = {
                "PATH": os.environ.get("PATH", ""),
                "BENCH_TASK_ROOT": str(task_root),
                "BENCH_EVENT": json.dumps(event),
                "TL_REDIS_URL": redis.url,
                "TL_JWT_ISSUER": ISSUER,
                "TL_JWT_AUDIENCE": AUDIENCE,
                "TL_JWKS_URL": jwks.url,
                "TL_REPLY_BUCKET": "bench",
                "TL_RATE_BURST": "1000000",
                "TL_RATE_PER_MINUTE": "1000000",
            }
            python = sys.executable
            cold_argv = [python, "-S", "-c", FIRST_EVENT]
            bare, cold, imports, first = [], [], [], []
            for _ in range(args.runs):
                bare.append(wall_ms([python, "-S", "-c", "pass"], env)[0])
                ms, out = wall_ms(cold_argv, env)
                cold.append(ms)
                inner = json.loads(out.strip().splitlines()[-1])  # earlier lines: its logs
                imports.append(inner["import_ms"])
                first.append(inner["first_event_ms"])
            breakdown = importtime_breakdown(cold_argv, env)
        finally:
            redis.stop()

    med = statistics.median
    print(
        f"# router cold start, median of {args.runs}, {platform.node()}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    deps = ", ".join(report.packages)
    print(f"zip: {report.size / 1024:.0f} KiB, {report.files} files, deps {deps}")
    print(f"bare interpreter (python -S -c pass)   {med(bare):7.1f} ms")
    print(f"cold start, process start to exit      {med(cold):7.1f} ms")
    print(f"  import handler                        {med(imports):7.1f} ms")
    print(f"  first event (JWKS + Redis + enqueue)  {med(first):7.1f} ms")
    print(f"cold start minus bare interpreter      {med(cold) - med(bare):7.1f} ms")
    print(f"ratio cold / bare                       {med(cold) / med(bare):7.1f}x")
    print("import tree (cumulative ms, children above their parent, one run, -X importtime):")
    print("\n".join(breakdown))


if __name__ == "__main__":
    main()

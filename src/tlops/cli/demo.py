"""The two steps of `tlops demo` that show the node's life: a cold boot and the idle stop.

`cold_boot_prompt` sends a prompt to the stopped node with a one-minute idle time and
follows it: the 202 `starting` with its ETA, each boot phase the node reports, the
completion. `watchdog_stop` then waits for the idle watchdog to stop the node once that
minute has passed, and shows when (the local node's services stop with the instance).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

DEMO_IDLE_MINUTES = 1
# The watchdog stops the node within about a tick of its deadline: allow the minute, the
# tick, a boot's worth of slack on a busy machine.
WATCHDOG_WAIT_S = DEMO_IDLE_MINUTES * 60 + 150


def cold_boot_prompt(stack: Any, args: argparse.Namespace, client: Any, token: Callable) -> int:
    from tlops.common import aws
    from tlops.edge import gpu_node

    node = gpu_node.find(aws.client("ec2"), "tinyllama")
    if node is not None:
        print(f"== the node {node.instance_id} is {node.state}", flush=True)
    api = client.Api(stack.api_url, client.TokenSource(fetch=lambda: token(stack, "demo")))
    started = time.monotonic()
    try:
        payload = {"prompt": args.prompt, "idle": DEMO_IDLE_MINUTES}
        reply = api.request("POST", "/infer", payload)
        print("== token obtained for user 'demo' (kept in memory only)")
        print(f"== POST /infer -> {reply.status} {json.dumps(reply.body)}")
        for name in ("x-request-id", "x-gpu-coldboot"):
            if name in reply.headers:
                print(f"   {name}: {reply.headers[name]}")
        if reply.status != 202:
            print(f"tlops demo: {client.describe(reply)}", file=sys.stderr)
            return 1
        job_id = reply.body["id"]

        def changed(view: dict[str, Any]) -> None:
            phase = f" (node: {view['boot_phase']})" if view.get("boot_phase") else ""
            elapsed = time.monotonic() - started
            print(f"== GET /jobs/{job_id} -> {view.get('status')}{phase} [{elapsed:.1f} s]",
                  flush=True)  # fmt: skip

        view = client.follow(api, job_id, timeout=args.timeout, on_change=changed)
    except (client.ApiError, TimeoutError) as exc:
        print(f"tlops demo: {exc}", file=sys.stderr)
        return 1
    if view.get("status") != "done":
        print(f"tlops demo: the job {view.get('status')}: {view.get('error')}", file=sys.stderr)
        return 1
    usage = view.get("usage", {})
    print(
        f"== completion from {view.get('model')} "
        f"({usage.get('completion_tokens', '?')} tokens, {view.get('latency_ms')} ms):"
    )
    print(view.get("output", ""), flush=True)
    return 0


def watchdog_stop(stack: Any, args: argparse.Namespace) -> int:
    """Wait for the idle watchdog to stop the node; 0 once it has."""
    import importlib.util

    from tlops.common import aws
    from tlops.edge import gpu_node

    if importlib.util.find_spec("tlops.node.watchdog") is None:
        print("== skipped: the idle watchdog (tlops.node.watchdog) is not in this checkout, "
              "so nothing stops the node when it is idle", flush=True)  # fmt: skip
        return 0
    print(f"== waiting for the idle watchdog to stop the node ({DEMO_IDLE_MINUTES} min idle)",
          flush=True)  # fmt: skip
    waited = time.monotonic()
    deadline = waited + WATCHDOG_WAIT_S
    ec2 = aws.client("ec2")
    while time.monotonic() < deadline:
        node = gpu_node.find(ec2, "tinyllama")
        if node is None or node.state in ("stopping", "stopped"):
            seconds = time.monotonic() - waited
            print(f"== the idle watchdog stopped the node after {seconds:.0f} s", flush=True)
            wait_down = time.monotonic() + 120
            while stack.status()["services"]["node"].get("programs") and (
                time.monotonic() < wait_down
            ):
                time.sleep(1)
            print("== the node's services stopped with it", flush=True)
            return 0
        time.sleep(2)
    programs = stack.status()["services"].get("node", {}).get("programs", {})
    print(f"tlops demo: the node was still running after {WATCHDOG_WAIT_S} s "
          f"(idle-watchdog: {programs.get('idle-watchdog', 'not running')})",
          file=sys.stderr)  # fmt: skip
    return 1

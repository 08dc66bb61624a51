"""The steps of `tlops demo` that show the stack's life: a cold boot, the idle stop, the sleep.

`cold_boot_prompt` sends a prompt to the stopped node with a one-minute idle time and
follows it: the 202 `starting` with its ETA, each boot phase the node reports, the
completion. `watchdog_stop` then waits for the idle watchdog to stop the node once that
minute has passed, and shows when (the local node's services stop with the instance): the
stack naps. `fall_asleep` puts it to sleep at once (`tlops ops sleep --deep`: what it does by
itself after `sleep_after_minutes`) and says what each of the two states costs a month.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tlops.contract.states import NODE_DOWN_STATES

if TYPE_CHECKING:
    from tlops.cli.target import Target

DEMO_IDLE_MINUTES = 1
# The watchdog stops the node within about a tick of its deadline: allow the minute, the
# tick, a boot's worth of slack on a busy machine.
WATCHDOG_WAIT_S = DEMO_IDLE_MINUTES * 60 + 150


def cold_boot_prompt(target: Target, args: argparse.Namespace, client: Any, token: Callable) -> int:
    """A prompt to the stopped node, followed; `target`: the stand-in (`resolve(local=True)`)."""
    from tlops.control import node as gpu_node

    node = gpu_node.find(target.client("ec2"), target.project)
    if node is not None:
        print(f"== the node {node.instance_id} is {node.state}", flush=True)
    api = client.Api(target.api_url, client.TokenSource(fetch=lambda: token(target, "demo")))
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


def watchdog_stop(target: Target, args: argparse.Namespace) -> int:
    """Wait for the idle watchdog to stop the node; 0 once it has."""
    import importlib.util

    from tlops.control import node as gpu_node

    if importlib.util.find_spec("tlops.node.watchdog") is None:
        print("== skipped: the idle watchdog (tlops.node.watchdog) is not in this checkout, "
              "so nothing stops the node when it is idle", flush=True)  # fmt: skip
        return 0
    print(f"== waiting for the idle watchdog to stop the node ({DEMO_IDLE_MINUTES} min idle)",
          flush=True)  # fmt: skip
    waited = time.monotonic()
    deadline = waited + WATCHDOG_WAIT_S
    ec2, stack = target.client("ec2"), target.stack
    while time.monotonic() < deadline:
        node = gpu_node.find(ec2, target.project)
        if node is None or node.state in NODE_DOWN_STATES:
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


def _idle_bill(target: Target, state_word: str) -> None:
    from tlops.cost import idle

    bill = idle.report(target.client, target.project)
    print(f"== {state_word}: {bill['total_eur_month']:.2f} EUR a month on AWS "
          f"({bill['bills_while_idle']}; playbooks/vars/prices.yml)", flush=True)  # fmt: skip


def fall_asleep(target: Target) -> int:
    """Napping → asleep now, with what each costs; 0 once the stack is asleep."""
    from tlops.cli import nap

    _idle_bill(target, "napping (node stopped, queue up)")
    print("== tlops ops sleep --deep (the stack does it by itself after sleep_after_minutes)",
          flush=True)  # fmt: skip
    code = nap.sleep(argparse.Namespace(env=target.env, deep=True, timeout=120.0, json=False))
    if code != 0:
        return code
    _idle_bill(target, "asleep (node stopped, no queue)")
    print("== the next request wakes it: the queue comes back, the node boots, the job runs",
          flush=True)  # fmt: skip
    return 0

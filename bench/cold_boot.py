"""The local node's cold boot: node stopped → `POST /infer` → the job done, phase by phase.

A local stack with its node (node.yml, the node agent, vLLM's CPU build serving the tiny
model) deployed with deploy.yml. Each round makes sure the node is stopped (its services
down), sends one prompt, and records, from just before the POST, when the node's boot
record (`node:boot`, polled every 20 ms) enters each phase — `starting instance` (the
router's StartInstances), `starting services` (supervisord started the programs),
`loading model` (the watcher and nginx answer), `ready` (vLLM answered a completion) —
and when `GET /jobs/{id}` first says done. Between rounds the node is stopped with
`POST /stop`. The first round's 202 carries the configured ETA, later ones the median of
the boots measured so far. Figures, not a test.

    PYTHONPATH=. .venv/bin/python bench/cold_boot.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis as redis_py

from tlops import contract
from tlops.cli import client, playbooks
from tlops.common import aws
from tlops.contract import boot
from tlops.control import node as gpu_node
from tlops.local import users
from tlops.local.services import free_port
from tlops.local.stack import DEFAULT_PORTS, LocalStack

PHASES = ("starting instance", "starting services", "loading model", "ready")


def node_down(stack: LocalStack, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while stack.node.programs() or stack.node.supervisor_pidfile.exists():
        if time.monotonic() > deadline:
            sys.exit("the node's services did not stop")
        time.sleep(0.5)


def one_round(stack: LocalStack, api: client.Api, redis: redis_py.Redis) -> dict[str, float]:
    node_down(stack)
    started = time.monotonic()
    reply = api.request("POST", "/infer", {"prompt": "Hello", "idle": 30, "max_tokens": 8})
    if reply.status != 202:
        sys.exit(f"POST /infer answered {reply.status}: {reply.body}")
    times = {"eta": float(reply.body.get("eta", 0))}
    job_id = reply.body["id"]
    last_poll = 0.0
    while True:
        phase = redis.hget(contract.NODE_BOOT_KEY, boot.PHASE)
        now = time.monotonic() - started
        if phase in PHASES and phase not in times:
            times[phase] = now
        if now - last_poll > 0.2:
            last_poll = now
            if api.job(job_id).get("status") in ("done", "failed"):
                times["done"] = time.monotonic() - started
                return times
        if now > 600:
            sys.exit(f"no result after 600 s: {times}")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="tlops-boot-"))
    stack = LocalStack(state_dir=state_dir, ports={n: free_port() for n in DEFAULT_PORTS})
    os.environ["TLOPS_STATE_DIR"] = str(state_dir)
    try:
        began = time.monotonic()
        stack.up()
        up_s = time.monotonic() - began
        outputs = playbooks.deploy_local(stack)
        token = users.id_token(
            pool_id=outputs["user_pool_id"], client_id=outputs["client_id"], username="bench"
        )
        admin = users.id_token(
            pool_id=outputs["user_pool_id"], client_id=outputs["client_id"],
            username="bench-admin", groups=("admins",),
        )  # fmt: skip
        api = client.Api(stack.api_url, client.TokenSource(token=token))
        admin_api = client.Api(stack.api_url, client.TokenSource(token=admin))
        redis = redis_py.Redis.from_url(stack.redis_url, decode_responses=True)
        rounds = []
        for number in range(args.rounds):
            if number:
                admin_api.request("POST", "/stop", {})
                time.sleep(31)  # /stop allows two a minute per admin; keep well inside
            rounds.append(one_round(stack, api, redis))
            node = gpu_node.find(aws.client("ec2"), "tinyllama")
            print(f"round {number + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in
                  rounds[-1].items()) + f" (instance {node.state if node else '-'})",
                  flush=True)  # fmt: skip
        measured = [int(t) for t in redis.lrange(contract.NODE_BOOT_TIMES_KEY, 0, -1)]
    finally:
        stack.down()

    print(
        f"\nmachine: {platform.node()} ({os.cpu_count()} cores), python {platform.python_version()}"
    )
    print(f"tlops local up (node.yml included): {up_s:.1f} s")
    print("| phase entered (s after POST /infer) | " + " | ".join(
        f"round {n + 1}" for n in range(len(rounds))) + " | median |")  # fmt: skip
    print("| --- |" + " --- |" * (len(rounds) + 1))
    for key in (*PHASES, "done", "eta"):
        values = [r[key] for r in rounds if key in r]
        cells = " | ".join(f"{r[key]:.1f}" if key in r else "-" for r in rounds)
        median = f"{statistics.median(values):.1f}" if values else "-"
        print(f"| {key} | {cells} | {median} |")
    print(f"boot times the node recorded (ms, newest first): {measured}")


if __name__ == "__main__":
    main()

"""Sleep and wake on the local stack: `POST /infer` → done from each state, by phase; what
each state bills; the relay's added latency.

A local stack with its node (node.yml, the node agent, vLLM's CPU build serving the tiny
model) deployed with deploy.yml. From each state in turn — awake (the node running, after
a first prompt), napping (node stopped by `POST /stop`, queue up), asleep (`tlops ops sleep
--deep`: the queue deleted) — one prompt is sent and, from just before the POST, the bench
records when `GET /jobs/{id}` first shows each phase (`waking the queue` while held, then
the node's boot phases) and when it says done; asleep also when the queue agent serves the
new queue. The creation delay the queue agent stands in for ElastiCache's minutes with is
printed (TL_LOCAL_QUEUE_DELAY_S). The idle bill of each state comes from the report that
status.yml prints (tlops.cost.idle). Last, the relay: the time from a request object's
PUT to control having recorded the state (a new `observed_ms`), over `--relay-rounds`.
Figures, not a test.

    PYTHONPATH=. .venv/bin/python bench/sleep_wake.py [--relay-rounds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tlops.cli import client, nap, playbooks
from tlops.common import aws
from tlops.cost import idle
from tlops.local import users
from tlops.local.services import free_port
from tlops.local.stack import DEFAULT_PORTS, QUEUE_DELAY_S, LocalStack


def follow(api: client.Api, stack: LocalStack | None = None) -> dict[str, float]:
    """POST /infer and the seconds until each phase GET /jobs shows, and until done."""
    started = time.monotonic()
    reply = api.request("POST", "/infer", {"prompt": "Hello", "idle": 30, "max_tokens": 8})
    if reply.status != 202:
        sys.exit(f"POST /infer answered {reply.status}: {reply.body}")
    times = {"202": time.monotonic() - started, f"answer: {reply.body['status']}": 0.0}
    job_id = reply.body["id"]
    while True:
        now = time.monotonic() - started
        view = api.job(job_id)
        phase = view.get("boot_phase")
        if phase and phase not in times:
            times[phase] = now
        if view.get("status") == "running" and "running" not in times:
            times["running"] = now
        serving = stack is not None and "queue serving" not in times
        if serving and stack.status()["services"]["queue"].get("queue") == "serving":
            times["queue serving"] = now
        if view.get("status") in ("done", "failed", "expired"):
            times[view["status"]] = now
            return times
        if now > 900:
            sys.exit(f"no result after 900 s: {times}")
        time.sleep(0.1)


def wait_node_down(stack: LocalStack) -> None:
    """Until the node's supervisord has exited: its programs run on while it shuts down."""
    while stack.node.programs() or stack.node.supervisor_pidfile.exists():
        time.sleep(0.5)


def wait_state(bucket: str, wanted: str, timeout: float = 180.0) -> None:
    s3 = aws.client("s3")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = json.loads(s3.get_object(Bucket=bucket, Key="state.json")["Body"].read())
        if state.get("state") == wanted:
            return
        time.sleep(0.2)
    sys.exit(f"the stack did not become {wanted}")


def relay_latency(bucket: str, rounds: int) -> list[float]:
    """ms from a request object's PUT until control recorded the state it asked for."""
    s3 = aws.client("s3")

    def observed() -> int:
        return json.loads(s3.get_object(Bucket=bucket, Key="state.json")["Body"].read())[
            "observed_ms"
        ]

    took = []
    for number in range(rounds):
        before = observed()
        body = json.dumps({"action": "observe", "by": "bench", "at_ms": 0}).encode()
        started = time.monotonic()
        s3.put_object(Bucket=bucket, Key=f"requests/observe/bench-{number}.json", Body=body)
        while observed() == before:
            if time.monotonic() - started > 30:
                sys.exit("control never recorded the state")
            time.sleep(0.01)
        took.append((time.monotonic() - started) * 1000)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relay-rounds", type=int, default=20)
    args = parser.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="tlops-sleep-"))
    stack = LocalStack(state_dir=state_dir, ports={n: free_port() for n in DEFAULT_PORTS})
    os.environ["TLOPS_STATE_DIR"] = str(state_dir)
    delay = os.environ.get("TL_LOCAL_QUEUE_DELAY_S", str(QUEUE_DELAY_S))
    bills: dict[str, float] = {}
    runs: dict[str, dict[str, float]] = {}
    try:
        stack.up()
        outputs = playbooks.deploy_local(stack)
        bucket = outputs["control_bucket"]
        pool = {"pool_id": outputs["user_pool_id"], "client_id": outputs["client_id"]}
        api = client.Api(stack.api_url, client.TokenSource(
            token=users.id_token(**pool, username="bench")))  # fmt: skip
        admin = client.Api(stack.api_url, client.TokenSource(
            token=users.id_token(**pool, username="bench-admin", groups=("admins",))))  # fmt: skip

        runs["napping (first boot)"] = follow(api)
        bills["awake"] = idle.report(aws.client, "tinyllama")["total_eur_month"]
        runs["awake"] = follow(api)
        admin.request("POST", "/stop", {})
        wait_state(bucket, "napping")
        wait_node_down(stack)
        bills["napping"] = idle.report(aws.client, "tinyllama")["total_eur_month"]
        runs["napping"] = follow(api)
        admin.request("POST", "/stop", {})
        wait_state(bucket, "napping")
        wait_node_down(stack)
        code = nap.sleep(argparse.Namespace(env="local", deep=True, timeout=120.0, json=False))
        if code != 0:
            sys.exit("tlops ops sleep --deep failed")
        # the queue agent notices the deleted group at its next look: as on AWS, where the
        # deleted group's endpoint goes some time after the deletion is asked for
        while stack.status()["services"]["queue"].get("queue") != "absent":
            time.sleep(0.2)
        bills["asleep"] = idle.report(aws.client, "tinyllama")["total_eur_month"]
        runs["asleep"] = follow(api, stack)
        relay = relay_latency(bucket, args.relay_rounds)
    finally:
        stack.down()

    print(f"\nmachine: {platform.node()} ({os.cpu_count()} cores), "
          f"python {platform.python_version()}; queue creation delay {delay} s")  # fmt: skip
    for name, times in runs.items():
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
        print(f"| {name} | {steps} |")
    print("| state | idle bill (EUR/month, the status report's total) |")
    print("| --- | --- |")
    for name, total in bills.items():
        print(f"| {name} | {total:.2f} |")
    print(f"relay: request PUT → state recorded, {len(relay)} rounds: median "
          f"{statistics.median(relay):.0f} ms, max {max(relay):.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()

"""`tlops status`: the node's state, the queue, the watcher and the boot phase.

Against a deployment it asks the API (`GET /status`): on AWS the queue is private to
the VPC, and the router is what reaches it. Only with `--direct`, or with no API to ask
(the local stack named, up, and nothing deployed in it; or TL_REDIS_URL set and no API
URL), does it read EC2 and Redis itself, and then says so on its first line. Which
deployment, and how AWS is read there: `tlops.cli.target`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from tlops.cli.exits import ExitCode, for_api_error
from tlops.cli.session import CliError
from tlops.cli.target import Target, deployed, resolve
from tlops.contract.states import NOT_DEPLOYED

# A queue that cannot be there, by the deployment's state: not a fault.
_NO_QUEUE = {
    "asleep": "the queue sleeps: the stack is asleep, and the next request wakes it",
    NOT_DEPLOYED: "nothing is deployed: run ansible-playbook playbooks/deploy.yml",
}


def _direct_node(target: Target) -> tuple[str, dict[str, Any]]:
    """The deployment's state and the node, as EC2 and ElastiCache say now (the operator's
    own credentials: their words are shown)."""
    from tlops.control import node as gpu_node
    from tlops.control import queue
    from tlops.control.state import observe

    project = target.project
    try:
        seen = observe(
            target.client("ec2"), target.client("elasticache"), project=project,
            prefix=f"{project}-queue",
        )  # fmt: skip
    except (gpu_node.NodeUnavailable, queue.QueueError) as exc:
        return "unknown", {"state": "unknown", "error": str(exc)}
    node = seen["node"] or {"state": "absent"}
    return seen["state"] or NOT_DEPLOYED, node


def _direct(target: Target, stack: Any) -> dict[str, Any]:
    """EC2 and Redis read from here: the target's, the local stack's queue when it runs."""
    from tlops.edge import status
    from tlops.edge.resp import RespClient

    report: dict[str, Any] = {"project": target.project, "source": "direct"}
    report["state"], report["node"] = _direct_node(target)
    redis_url = target.redis_url or (stack.redis_url if stack is not None else None)
    if not redis_url:
        missing = {"error": "TL_REDIS_URL is not set (the queue is private to the VPC)"}
        report["queue"], report["boot"] = missing, dict(missing)
        return report
    redis = RespClient(redis_url, connect_timeout=1.0, timeout=2.0)
    try:
        report["queue"], report["boot"] = status.queue_part(redis)
    finally:
        redis.close()
    if report["state"] in _NO_QUEUE and "error" in report["queue"]:
        report["queue"] = {"error": _NO_QUEUE[report["state"]], "asleep": True}
        report["boot"] = {"phase": None, "booting": False, "instance": None}
    for part in (report["queue"], report["boot"]):
        if "detail" in part:
            part["error"] = f"Redis at {redis_url}: {part.pop('detail')}"
    return report


def _through_api(target: Target, args: argparse.Namespace) -> dict[str, Any] | int:
    from tlops.cli import client
    from tlops.cli.session import api_and_tokens

    api_url, tokens = api_and_tokens(target, args)
    try:
        reply = client.Api(api_url, tokens).request("GET", "/status")
    except client.ApiError as exc:
        print(f"tlops status: {exc}", file=sys.stderr)
        return for_api_error(exc.status)
    if reply.status != 200 or not isinstance(reply.body, dict):
        hint = (
            " (an API deployed before GET /status: run deploy.yml)" if reply.status == 404 else ""
        )
        print(f"tlops status: {client.describe(reply)}{hint}", file=sys.stderr)
        return for_api_error(reply.status)
    return {**reply.body, "source": f"api {api_url}"}


def _which(target: Target, args: argparse.Namespace) -> tuple[bool, Any]:
    """(read directly?, the local stack whose parts are read) for this call."""
    if args.direct:
        return True, target.running_stack()
    token = args.token or os.environ.get("TL_TOKEN")
    stack = None if token else target.own_stack()
    if stack is not None and not deployed(stack):
        return True, stack  # the stack is up, nothing deployed: no API to ask yet
    if target.api_url:
        return False, None
    return bool(target.redis_url), None


def cmd_status(args: argparse.Namespace) -> int:
    target = resolve(args)
    direct, stack = _which(target, args)
    if direct:
        report = _direct(target, stack)
        if stack is not None and not deployed(stack):
            report["source"] = "direct: the local stack's parts (nothing deployed in it)"
    else:
        got = _through_api(target, args)
        if isinstance(got, int):
            return got
        report = got
    # Asleep, the queue is gone by design: not a fault.
    failed = [p for p in ("node", "queue") if "error" in report.get(p, {})]
    healthy = not [p for p in failed if not report[p].get("asleep")]
    code = ExitCode.OK if healthy else ExitCode.UNHEALTHY
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return code
    _print(report)
    return code


def _print(report: dict[str, Any]) -> None:
    from tlops.contract.states import BILLS

    state = report.get("state") or "unknown"
    # Not deployed: the bill's words speak of the idle report's rows, which this has not.
    bills = None if state == NOT_DEPLOYED else BILLS.get(state)  # type: ignore[call-overload]
    print(f"state: {state}" + (f" ({bills})" if bills else ""))
    print(f"source      {report.get('source', 'api')}")
    node = report["node"]
    kind = f" ({node['type']})" if node.get("type") else ""
    print(f"node        {node.get('state', 'unknown')} {node.get('instance', '')}{kind}".rstrip())
    if "error" in node:
        print(f"            {node['error']}")
    boot = report.get("boot") or {}
    if boot.get("phase"):
        print(f"boot        {boot['phase']}{' (under way)' if boot.get('booting') else ''}")
    queue = report["queue"]
    if queue.get("asleep"):
        print(f"queue       none: {queue['error']}")
        return
    if "error" in queue:
        print(f"queue       unknown: {queue['error']}")
        return
    print(f"queued      {queue['queueDepth']}")
    print(f"dead        {queue['deadLetters']}")
    watcher = queue.get("watcher")
    if watcher is None:
        print("watcher     no heartbeat (node stopped, or the watcher is down)")
        return
    age = watcher.get("heartbeatAgeMs")
    age_text = "unreadable" if age is None else f"{age / 1000:.1f} s ago"
    print(f"in flight   {watcher.get('inFlight', 0)}")
    print(f"heartbeat   {age_text}")


__all__ = ["CliError", "cmd_status"]

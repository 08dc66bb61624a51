"""`tlops`: the operator's everyday command line."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import Any

from tlops.local.services import ServiceError
from tlops.local.stack import LocalStack, StackError


def _print_status(stack: LocalStack) -> None:
    status = stack.status()
    for name, service in status["services"].items():
        state = "up" if service["up"] else "down"
        print(f"{name:8} {state:5} port {service['port']:<6} pid {service['pid'] or '-'}")
    if not status["deployed"]:
        print("deployed       nothing: run ansible-playbook playbooks/deploy.yml")
    for name, value in status["deployed"].items():
        print(f"{name:14} {value}")


def cmd_local(args: argparse.Namespace) -> int:
    stack = LocalStack(inference=not args.no_inference)
    if args.action == "up":
        stack.up()
        _print_status(stack)
    elif args.action == "down":
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.action == "status":
        _print_status(stack)
        return 0 if all(s["up"] for s in stack.status()["services"].values()) else 3
    else:
        for name, value in sorted(stack.env().items()):
            print(f"export {name}={shlex.quote(value)}")
    return 0


def local_token(stack: LocalStack, username: str) -> str:
    from tlops.local import users

    if not stack.load().get("pids"):
        raise StackError("the local stack is not up: run `tlops local up` first")
    deployed = stack.outputs()
    if not deployed.get("user_pool_id"):
        raise StackError(
            "no user pool in the local stand-in yet: run ansible-playbook playbooks/deploy.yml"
        )
    os.environ.update(stack.aws_env())
    return users.id_token(
        pool_id=deployed["user_pool_id"], client_id=deployed["client_id"], username=username
    )


def cmd_token(args: argparse.Namespace) -> int:
    print(local_token(LocalStack(), args.user))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the local stack: up → deploy.yml → a prompt through the whole path →
    teardown.yml (idle) with its cost report → down."""
    from tlops import client, playbooks

    stack = LocalStack()
    print("== bringing the local stack up", flush=True)
    stack.up()
    _print_status(stack)
    try:
        print("== ansible-playbook playbooks/deploy.yml", flush=True)
        if playbooks.run("deploy.yml", env=stack.env()).returncode != 0:
            print("tlops demo: deploy.yml failed (its output above says why)", file=sys.stderr)
            return 1
        code = _demo_prompt(stack, args, client)
        print("== ansible-playbook playbooks/teardown.yml (idle: zero idle cost)", flush=True)
        teardown = playbooks.run(
            "teardown.yml", env=stack.env(), extra_vars={"teardown_confirmation": "yes"}
        )
        if teardown.returncode != 0:
            print("tlops demo: teardown.yml failed (its output above says why)", file=sys.stderr)
            return 1
        return code
    finally:
        if not args.keep:
            print("== bringing the local stack down", flush=True)
            stack.down()


def _demo_prompt(stack: LocalStack, args: argparse.Namespace, client: Any) -> int:
    api = client.Api(stack.api_url, client.TokenSource(fetch=lambda: local_token(stack, "demo")))
    try:
        reply = api.request("POST", "/infer", {"prompt": args.prompt, "idle": 5})
        print("== token obtained for user 'demo' (kept in memory only)")
        print(f"== POST /infer -> {reply.status} {json.dumps(reply.body)}")
        for name in ("x-request-id", "x-gpu-coldboot"):
            if name in reply.headers:
                print(f"   {name}: {reply.headers[name]}")
        if reply.status != 202:
            print(f"tlops demo: {client.describe(reply)}", file=sys.stderr)
            return 1
        job_id = reply.body["id"]
        view = client.follow(
            api,
            job_id,
            timeout=args.timeout,
            on_change=lambda v: print(f"== GET /jobs/{job_id} -> {v.get('status')}", flush=True),
        )
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


# --- infer, status, login ----------------------------------------------------------
class CliError(Exception):
    """Something the user must fix; printed as one line, exit code 2."""


def _local_stack_up(stack: LocalStack) -> bool:
    """Whether a local stack runs with something deployed in it."""
    return bool(stack.outputs().get("user_pool_id")) and bool(
        stack.status()["services"].get("gateway", {}).get("up")
    )


def _hosted_ui() -> Any:
    from tlops import login

    base, client_id = os.environ.get("TL_HOSTED_UI_URL"), os.environ.get("TL_CLIENT_ID")
    if not (base and client_id):
        return None
    ports = os.environ.get("TL_CALLBACK_PORTS")
    try:
        callback_ports = (
            tuple(int(p) for p in ports.split(",") if p.strip())
            if ports
            else login.DEFAULT_CALLBACK_PORTS
        )
    except ValueError:
        raise CliError(f"TL_CALLBACK_PORTS must list port numbers, got {ports!r}") from None
    return login.HostedUi(base_url=base, client_id=client_id, callback_ports=callback_ports)


def _login_tokens(ui: Any) -> dict[str, Any]:
    from tlops import login

    try:
        return login.login(ui, announce=lambda text: print(text, file=sys.stderr))
    except login.LoginError as exc:
        raise CliError(str(exc)) from None


def _api_and_tokens(args: argparse.Namespace) -> tuple[str, Any]:
    """The API URL and where tokens come from: --token/TL_TOKEN, the local stack, or login."""
    from tlops.client import TokenSource

    stack = LocalStack()
    local = _local_stack_up(stack)
    api_url = args.api_url or os.environ.get("TL_API_URL") or (stack.api_url if local else None)
    if not api_url:
        raise CliError(
            'no API URL: set TL_API_URL (eval "$(tlops local env)" for the local stack) '
            "or pass --api-url"
        )
    token = args.token or os.environ.get("TL_TOKEN")
    if token:
        return api_url, TokenSource(token=token)
    if local:
        user = args.user or "demo"
        return api_url, TokenSource(fetch=lambda: local_token(stack, user))
    ui = _hosted_ui()
    if ui is None:
        raise CliError(
            "no way to get a token: pass --token (or TL_TOKEN), bring the local stack up, "
            "or set TL_HOSTED_UI_URL and TL_CLIENT_ID for `tlops login`"
        )
    return api_url, TokenSource(fetch=lambda: _login_tokens(ui)["id_token"])


class Progress:
    """queued → starting (ETA countdown) → running → done, on stderr; quiet when not a TTY."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.eta_until: float | None = None

    def show(self, text: str) -> None:
        if self.live:
            self.stream.write(f"\r\033[K{text}")
            self.stream.flush()

    def accepted(self, answer: dict[str, Any]) -> None:
        if answer.get("status") == "starting":
            self.eta_until = time.monotonic() + float(answer.get("eta", 0))
        self.show(self._label(answer.get("status", "queued")))

    def _label(self, status: str) -> str:
        if status in ("queued", "starting") and self.eta_until is not None:
            left = max(0, round(self.eta_until - time.monotonic()))
            return f"starting the GPU node, ETA {left} s"
        return status

    def changed(self, view: dict[str, Any]) -> None:
        if view.get("status") == "running":
            self.eta_until = None
        self.show(self._label(view.get("status", "")))

    def tick(self, status: str) -> None:
        self.show(self._label(status))

    def finish(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


def cmd_infer(args: argparse.Namespace) -> int:
    from tlops import client

    api_url, tokens = _api_and_tokens(args)
    api = client.Api(api_url, tokens)
    payload: dict[str, Any] = {"prompt": args.prompt, "idle": args.idle}
    if args.max_tokens is not None:
        payload["max_tokens"] = args.max_tokens
    progress = Progress()
    last = {"status": "queued"}
    try:
        answer = api.submit(payload)
        progress.accepted(answer)

        def sleep(seconds: float) -> None:
            time.sleep(seconds)
            progress.tick(last["status"])

        def changed(view: dict[str, Any]) -> None:
            last["status"] = view.get("status", "")
            progress.changed(view)

        view = client.follow(
            api, answer["id"], timeout=args.timeout, on_change=changed, sleep=sleep
        )
    except client.ApiError as exc:
        progress.finish()
        print(f"tlops infer: {exc}", file=sys.stderr)
        return 4 if exc.status in (0, 502, 503, 504) else 1
    except TimeoutError as exc:
        progress.finish()
        print(
            f"tlops infer: {exc}; it may still finish (GET /jobs/{answer['id']})", file=sys.stderr
        )
        return 3
    progress.finish()
    if args.json:
        print(json.dumps(view, sort_keys=True))
    elif view.get("status") == "done":
        print(view.get("output", ""))
    if view.get("status") != "done":
        if not args.json:
            reason = view.get("error") or "no reason recorded"
            print(f"tlops infer: job {view['id']} {view.get('status')}: {reason}", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from tlops import node
    from tlops.queue_health import queue_snapshot
    from tlops.resp import RedisReplyError, RedisUnavailable, RespClient

    stack = LocalStack()
    if _local_stack_up(stack):
        os.environ.update({k: v for k, v in stack.env().items() if k not in os.environ})
    project = os.environ.get("TL_PROJECT", "tinyllama")
    report: dict[str, Any] = {"project": project}
    healthy = True
    try:
        found = node.find(project)
        report["node"] = (
            {"instance": found.instance_id, "state": found.state} if found else {"state": "absent"}
        )
    except node.NodeUnavailable as exc:
        report["node"] = {"error": str(exc)}
        healthy = False
    redis_url = os.environ.get("TL_REDIS_URL")
    if redis_url:
        redis = RespClient(redis_url, connect_timeout=1.0, timeout=2.0)
        try:
            report["queue"] = queue_snapshot(redis)
        except (RedisUnavailable, RedisReplyError) as exc:
            report["queue"] = {"error": f"Redis at {redis_url}: {exc}"}
            healthy = False
        finally:
            redis.close()
    else:
        report["queue"] = {"error": "TL_REDIS_URL is not set (the queue is private to the VPC)"}
        healthy = False
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0 if healthy else 3
    node_info = report["node"]
    print(
        f"node        {node_info.get('state', 'unknown')} {node_info.get('instance', '')}".rstrip()
    )
    if "error" in node_info:
        print(f"            {node_info['error']}")
    queue_info = report["queue"]
    if "error" in queue_info:
        print(f"queue       unknown: {queue_info['error']}")
    else:
        watcher = queue_info["watcher"]
        print(f"queued      {queue_info['queueDepth']}")
        print(f"dead        {queue_info['deadLetters']}")
        if watcher is None:
            print("watcher     no heartbeat (node stopped, or the watcher is down)")
        else:
            age = watcher.get("heartbeatAgeMs")
            age_text = "unreadable" if age is None else f"{age / 1000:.1f} s ago"
            print(f"in flight   {watcher.get('inFlight', 0)}")
            print(f"heartbeat   {age_text}")
    return 0 if healthy else 3


def cmd_login(args: argparse.Namespace) -> int:
    ui = _hosted_ui()
    if ui is None:
        raise CliError("set TL_HOSTED_UI_URL and TL_CLIENT_ID (the deploy prints both)")
    print(_login_tokens(ui)["id_token"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tlops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    local = sub.add_parser("local", help="the local stand-in stack")
    local.add_argument("action", choices=["up", "down", "status", "env"])
    local.add_argument(
        "--no-inference",
        action="store_true",
        help="up: leave out supervisord, vLLM and the watcher (fast; edge and queue only)",
    )
    local.set_defaults(func=cmd_local)

    token = sub.add_parser("token", help="print an ID token for a local stand-in user")
    token.add_argument("--user", required=True, help="user name; created on first use")
    token.set_defaults(func=cmd_token)

    infer = sub.add_parser("infer", help="send a prompt, follow the job, print the completion")
    infer.add_argument("prompt")
    infer.add_argument("--idle", type=int, default=5, help="minutes the node stays up after")
    infer.add_argument("--max-tokens", type=int, default=None)
    infer.add_argument("--timeout", type=float, default=600.0, help="seconds to wait in all")
    infer.add_argument("--json", action="store_true", help="print the job as JSON")
    infer.add_argument("--api-url", help="default: TL_API_URL, or the local stack")
    infer.add_argument("--token", help="an ID token (default: TL_TOKEN, the local stack, login)")
    infer.add_argument("--user", help="local stack: the stand-in user (default demo)")
    infer.set_defaults(func=cmd_infer)

    status = sub.add_parser("status", help="the node's state, the queue, the watcher")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    login_cmd = sub.add_parser("login", help="log in through the hosted UI; prints an ID token")
    login_cmd.set_defaults(func=cmd_login)

    demo = sub.add_parser("demo", help="run a prompt through the local stack, end to end")
    demo.add_argument("--prompt", default="Say hello to the operator in five words.")
    demo.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    demo.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the job")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ServiceError, CliError) as exc:
        print(f"tlops: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

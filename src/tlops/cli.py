"""`tlops`: the operator's everyday command line."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import urllib.error
import urllib.request
from typing import Any

from tlops.local.services import ServiceError
from tlops.local.stack import LocalStack, StackError


def _print_status(stack: LocalStack) -> None:
    status = stack.status()
    for name, service in status["services"].items():
        state = "up" if service["up"] else "down"
        print(f"{name:8} {state:5} port {service['port']:<6} pid {service['pid'] or '-'}")
    for name, value in status["resources"].items():
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
    from tlops.local import bootstrap

    state = stack.load()
    resources = state.get("resources")
    if not resources:
        raise StackError("the local stack is not up: run `tlops local up` first")
    os.environ.update(stack.aws_env())
    return bootstrap.id_token(
        pool_id=resources["user_pool_id"], client_id=resources["client_id"], username=username
    )


def cmd_token(args: argparse.Namespace) -> int:
    print(local_token(LocalStack(), args.user))
    return 0


def post_json(url: str, body: dict[str, Any], token: str) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(  # noqa: S310 - the stack's own API URL
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.load(exc)


def cmd_demo(args: argparse.Namespace) -> int:
    """Local stack up → token → a prompt through the gateway → the job in Redis → down."""
    import redis

    stack = LocalStack()
    print("== bringing the local stack up")
    stack.up()
    _print_status(stack)
    try:
        token = local_token(stack, "demo")
        print("== token obtained for user 'demo' (kept in memory only)")
        status, headers, body = post_json(
            f"{stack.api_url}/infer", {"prompt": args.prompt, "idle": 5}, token
        )
        print(f"== POST /infer -> {status} {json.dumps(body)}")
        for name in ("X-Request-Id", "X-GPU-ColdBoot"):
            if name.lower() in {k.lower() for k in headers}:
                value = next(v for k, v in headers.items() if k.lower() == name.lower())
                print(f"   {name}: {value}")
        if status != 202:
            print("the request was not accepted", file=sys.stderr)
            return 1
        from tlops import contract

        client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        record = client.hgetall(contract.job_key(body["id"]))
        ttl = client.ttl(contract.job_key(body["id"]))
        stream = [
            entry for _, entry in client.xrange(contract.JOB_STREAM) if entry["id"] == body["id"]
        ]
        print(f"== job record in Redis (TTL {ttl} s): {json.dumps(record, sort_keys=True)}")
        print(f"== entry on the '{contract.JOB_STREAM}' stream: {bool(stream)}")
        client.close()
        return 0 if record and stream else 1
    finally:
        if not args.keep:
            print("== bringing the local stack down")
            stack.down()


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

    demo = sub.add_parser("demo", help="run a prompt through the local stack, end to end")
    demo.add_argument("--prompt", default="Say hello to the operator in five words.")
    demo.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ServiceError as exc:
        print(f"tlops: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

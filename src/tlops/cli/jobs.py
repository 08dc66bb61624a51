"""`tlops job ID` (GET /jobs/{id}, `--wait` to follow it) and `tlops stop` (POST /stop)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tlops.cli.exits import ExitCode, for_api_error
from tlops.cli.session import api_and_tokens
from tlops.cli.target import resolve

ADMINS = "admins"


def print_view(view: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(view, sort_keys=True))
        return
    if view.get("status") == "done":
        print(view.get("output", ""))
        return
    shown = ("id", "status", "attempts", "boot_phase", "error")
    for key in shown:
        if view.get(key) not in (None, ""):
            print(f"{key:11} {view[key]}")


def job_exit(view: dict[str, Any], *, command: str, as_json: bool) -> int:
    """0 for a job done (or still on its way, when not waited for); 1 failed or expired."""
    if view.get("status") in ("failed", "expired"):
        if not as_json:
            reason = view.get("error") or "no reason recorded"
            print(f"tlops {command}: job {view['id']} {view['status']}: {reason}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK


def cmd_job(args: argparse.Namespace) -> int:
    from tlops.cli import client
    from tlops.cli.infer import Progress

    api_url, tokens = api_and_tokens(resolve(args), args)
    api = client.Api(api_url, tokens)
    progress = Progress()
    try:
        if args.wait:
            view = client.follow(api, args.id, timeout=args.timeout, on_change=progress.changed)
        else:
            view = api.job(args.id)
    except client.ApiError as exc:
        progress.finish()
        print(f"tlops job: {exc}", file=sys.stderr)
        return for_api_error(exc.status)
    except TimeoutError as exc:
        progress.finish()
        print(f"tlops job: {exc}; it may still finish: tlops job {args.id} --wait",
              file=sys.stderr)  # fmt: skip
        return ExitCode.TIMEOUT
    progress.finish()
    if not args.wait and view.get("status") == "done" and not view.get("output_inline"):
        view = {**view, **_stored(view)}
    print_view(view, as_json=args.json)
    return job_exit(view, command="job", as_json=args.json)


def _stored(view: dict[str, Any]) -> dict[str, Any]:
    from tlops.cli import client

    stored = client.fetch_url(view["result_url"]) if view.get("result_url") else {}
    return {k: stored[k] for k in ("output", "usage") if k in stored}


def cmd_stop(args: argparse.Namespace) -> int:
    from tlops.cli import client

    target = resolve(args)
    api_url, tokens = api_and_tokens(target, args, groups=(ADMINS,), default_user="admin")
    api = client.Api(api_url, tokens)
    try:
        reply = api.request("POST", "/stop")
    except client.ApiError as exc:
        print(f"tlops stop: {exc}", file=sys.stderr)
        return for_api_error(exc.status)
    if reply.status != 202:
        print(f"tlops stop: {client.describe(reply)}", file=sys.stderr)
        return for_api_error(reply.status)
    if args.json:
        print(json.dumps(reply.body, sort_keys=True))
    else:
        print(f"node {reply.body.get('instance')} {reply.body.get('status')} "
              "(`tlops status` follows it)")  # fmt: skip
    return ExitCode.OK

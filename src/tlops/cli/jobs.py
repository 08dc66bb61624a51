"""`tlops job ID` (GET /jobs/{id}, `--wait` to follow it, `--cancel` to cancel it),
`tlops jobs` (GET /jobs: the caller's jobs, newest first) and `tlops stop` (POST /stop)."""

from __future__ import annotations

import argparse
import datetime
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


def not_found(job_id: str) -> str:
    """The API answers 404 alike for a job that never was, expired, or is another user's."""
    return (
        f"no such job of yours (404): {job_id}; `tlops jobs` lists yours (another user's "
        "job is not found either)"
    )


def cancelled_line(view: dict[str, Any]) -> str:
    """What a cancel did, from the job as the API answered it."""
    status = view.get("status")
    if status == "cancelled":
        return f"job {view['id']} cancelled"
    if status == "running" and view.get("cancel_requested"):
        return (
            f"job {view['id']} running, cancel requested: it stops within a second, keeping "
            f"its text so far (tlops job {view['id']} --wait)"
        )
    return f"job {view['id']} {status}: finished before the cancel, unchanged"


def cmd_job(args: argparse.Namespace) -> int:
    from tlops.cli import client
    from tlops.cli.infer import Progress

    api_url, tokens = api_and_tokens(resolve(args), args)
    api = client.Api(api_url, tokens)
    progress = Progress()
    try:
        if args.cancel:
            view = api.cancel(args.id)
            if not args.wait:
                print(json.dumps(view, sort_keys=True) if args.json else cancelled_line(view))
                return ExitCode.OK
            print(cancelled_line(view), file=sys.stderr)
        if args.wait:
            view = client.follow(api, args.id, timeout=args.timeout, on_change=progress.changed)
        else:
            view = api.job(args.id)
    except client.ApiError as exc:
        progress.finish()
        message = not_found(args.id) if exc.status == 404 else exc
        print(f"tlops job: {message}", file=sys.stderr)
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


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def print_table(jobs: list[dict[str, Any]]) -> None:
    """Plain aligned columns, one job a line, times in UTC."""
    rows = [("ID", "STATUS", "KIND", "CREATED", "FINISHED")]
    for job in jobs:
        created, finished = _when(job.get("created_at_ms")), _when(job.get("finished_at_ms"))
        rows.append((job["id"], job["status"], job.get("kind") or "-", created, finished))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def cmd_jobs(args: argparse.Namespace) -> int:
    """One page (--limit, --cursor), or every page with --all (following `next_cursor`)."""
    from tlops.cli import client

    api_url, tokens = api_and_tokens(resolve(args), args)
    api = client.Api(api_url, tokens)
    jobs: list[dict[str, Any]] = []
    cursor = args.cursor
    try:
        while True:
            page = api.jobs(limit=args.limit, cursor=cursor)
            jobs.extend(page["jobs"])
            cursor = page.get("next_cursor")
            if not (args.all and cursor):
                break
    except client.ApiError as exc:
        print(f"tlops jobs: {exc}", file=sys.stderr)
        return for_api_error(exc.status)
    if args.json:
        print(json.dumps({"jobs": jobs, "next_cursor": cursor}, sort_keys=True))
        return ExitCode.OK
    if jobs:
        print_table(jobs)
    else:
        print("no jobs (finished jobs are listed for an hour)", file=sys.stderr)
    if cursor:
        limit = f" --limit {args.limit}" if args.limit is not None else ""
        print(f"more: tlops jobs{limit} --cursor {cursor}  (or --all)", file=sys.stderr)
    return ExitCode.OK


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

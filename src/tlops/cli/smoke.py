"""`tlops smoke`: prove a deploy works, leg by leg, within the time a user would wait.

    tlops smoke [--env NAME | --outputs PATH] [--api-url URL] [--token TOKEN] [--json]

The API is the target's (`tlops.cli.target`): --api-url, else the deploy outputs'
`api_url` (of `--env NAME`, or of `--outputs PATH`, as smoke.yml passes them), else
TL_API_URL, else, on the stand-in, the running local stack's gateway.

The legs, each timed: `GET /ping` (the edge and the router answer), the smoke
user's ID token, `POST /infer` with a prompt no one else sends, then `GET
/jobs/{id}` until the job is done and its output readable (inline, or through the
presigned URL). Over 120 s in all fails, over 90 s passes with a warning (the
seeds' CI-003 figures); `playbooks/smoke.yml` runs this against any inventory.

The token: `--token` or `TL_SMOKE_TOKEN` (on an account, the smoke user's, from
`tlops login`: its app client allows no password flow), or, on the local
stand-in, the user `smoke` signed in through the admin flow its app client
allows (created on first use; the token stays in memory and goes to the stack's own
gateway only). Exit codes (`tlops.cli.exits`): 0 passed (a warning included), 1 a leg
failed (no way to a token included) or it took over 120 s, 6 no API URL to run against.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from tlops.cli.session import CliError
from tlops.cli.target import Target, resolve

FAIL_AFTER_S = 120.0
WARN_AFTER_S = 90.0
SMOKE_USER = "smoke"


class Leg(NamedTuple):
    name: str
    seconds: float
    detail: str


class Failed(Exception):
    """A leg did not pass; the message says which and why."""


def _token_source(args: argparse.Namespace, target: Target) -> Callable[[], str]:
    token = args.token or os.environ.get("TL_SMOKE_TOKEN")
    if token:
        return lambda: token
    outputs = target.outputs
    if outputs.get("user_pool_id") and target.own_stack() is not None:

        def stand_in() -> str:
            from tlops.local import users  # the stand-in's password flow, never on AWS

            return users.id_token(
                pool_id=outputs["user_pool_id"],
                client_id=outputs["client_id"],
                username=args.user,
                idp=target.client("cognito-idp"),
            )

        return stand_in
    raise CliError(
        "no token for the smoke user: pass --token or set TL_SMOKE_TOKEN (log in as the "
        "smoke user with `tlops login`); on the local stand-in run deploy.yml first"
    )


def _ping(api_url: str, timeout: float = 10.0) -> str:
    """`GET /ping` without a token, as an uptime check calls it."""
    import urllib.error
    import urllib.request

    from tlops.cli.client import ApiError, unreachable

    url = api_url.rstrip("/") + "/ping"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the API
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, ValueError) as exc:
        raise ApiError(0, unreachable(api_url, exc, timeout)) from None
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = raw[:200].decode(errors="replace")
    if status != 200 or body != {"status": "ok"}:
        raise ApiError(status, f"GET /ping answered {status} {body}")
    return "200 ok"


def run_legs(
    api_url: str, fetch_token: Callable[[], str], *, user: str, legs: list[Leg]
) -> list[Leg]:
    """The legs in order, appended to `legs` as they pass; raises Failed at the first that
    does not (the legs before it stay in `legs`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from tlops.cli import client

    started = time.monotonic()

    def timed(name: str, step: Callable[[], str]) -> None:
        begin = time.monotonic()
        try:
            detail = step()
        except (client.ApiError, TimeoutError) as exc:
            raise Failed(f"{name}: {exc}") from None
        legs.append(Leg(name, round(time.monotonic() - begin, 3), detail))

    api = client.Api(api_url, client.TokenSource(fetch=fetch_token))

    def ping() -> str:
        return _ping(api_url)

    def token() -> str:
        try:
            api.tokens.get()
        except CliError as exc:
            raise client.ApiError(0, str(exc)) from None
        except (BotoCoreError, ClientError, LookupError) as exc:
            raise client.ApiError(0, f"could not sign in as {user}: {exc}") from None
        return f"ID token for {user} (in memory)"

    job: dict[str, Any] = {}

    def submit() -> str:
        prompt = f"smoke {uuid.uuid4().hex[:12]}"  # short: fits any model's context
        answer = api.submit({"prompt": prompt, "idle": 1, "max_tokens": 8})
        job.update(answer)
        return f"202 {answer['status']} {answer['id']}"

    def result() -> str:
        left = FAIL_AFTER_S - (time.monotonic() - started)
        view = client.follow(api, job["id"], timeout=max(1.0, left))
        if view.get("status") != "done":
            raise client.ApiError(0, f"job {job['id']} {view.get('status')}: {view.get('error')}")
        if not isinstance(view.get("output"), str):
            raise client.ApiError(0, f"job {job['id']} is done but its output is not readable")
        tokens = (view.get("usage") or {}).get("completion_tokens", "?")
        return f"done, {tokens} tokens from {view.get('model')}"

    timed("ping", ping)
    timed("token", token)
    timed("submit", submit)
    timed("result", result)
    return legs


def cmd_smoke(args: argparse.Namespace) -> int:
    target = resolve(args)
    api_url = target.api_url
    if not api_url:
        raise CliError(
            "no API URL: pass --env NAME or --api-url, set TL_API_URL, or run deploy.yml (its "
            "outputs name it)"
        )

    def fetch() -> str:  # resolved in the token leg: a missing token fails that leg
        return _token_source(args, target)()

    began, legs, failure = time.monotonic(), [], None
    try:
        run_legs(api_url, fetch, user=args.user, legs=legs)
    except Failed as exc:
        failure = str(exc)
    total = round(time.monotonic() - began, 3)
    if failure is None and total > FAIL_AFTER_S:
        failure = f"the whole path took {total:.1f} s, over {FAIL_AFTER_S:g} s"
    warning = None
    if failure is None and total > WARN_AFTER_S:
        warning = f"the whole path took {total:.1f} s, over {WARN_AFTER_S:g} s"
    report = {
        "api_url": api_url,
        "ok": failure is None,
        "total_s": total,
        "legs": [leg._asdict() for leg in legs],
        "warning": warning,
        "error": failure,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for leg in legs:
            print(f"{leg.name:8} {leg.seconds:8.3f} s  {leg.detail}")
        print(f"{'total':8} {total:8.3f} s  {'passed' if failure is None else 'FAILED'}")
        if warning:
            print(f"tlops smoke: warning: {warning}", file=sys.stderr)
        if failure:
            print(f"tlops smoke: {failure}", file=sys.stderr)
    return 0 if failure is None else 1

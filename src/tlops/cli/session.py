"""Where a command's API URL and tokens come from: flags, a deployment's outputs (`--env`),
the environment, the local stack, or a hosted-UI login.

The API URL: --api-url, else the outputs of `--env NAME` (deploy.yml's outputs.json for
that inventory), else TL_API_URL, else the running local stack's gateway. The token:
--token or TL_TOKEN, else, only for the local stack's own API, a stand-in user's token,
else a hosted-UI login (from --env's outputs, or TL_HOSTED_UI_URL and TL_CLIENT_ID).

A stand-in token never goes anywhere but the local stack's gateway: the local stack is
looked at only when no API URL is given or the one given is the stack's own (loopback).
So a command against a real API imports neither the stand-in nor boto3. Tokens live in
memory only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

DEPLOY_HINT = "run ansible-playbook playbooks/deploy.yml (or `tlops demo`, which does it all)"
_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CliError(Exception):
    """Something the user must fix first; printed as one line, exit code 6 (SETUP)."""


# --- a deployment's outputs (--env) -----------------------------------------------------
def state_home() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "tlops"


def outputs_file(env_name: str) -> Path:
    """Where deploy.yml wrote the outputs of inventory `env_name` (playbooks/vars/outputs.yml):
    the local one in the local stack's state dir ($TLOPS_STATE_DIR), others one folder each."""
    if not _ENV_NAME.fullmatch(env_name):
        raise CliError(f"--env: {env_name!r} is not an environment name (e.g. dev, prod, local)")
    if env_name == "local" and os.environ.get("TLOPS_STATE_DIR"):
        return Path(os.environ["TLOPS_STATE_DIR"]) / "outputs.json"
    return state_home() / env_name / "outputs.json"


def env_outputs(args: argparse.Namespace) -> dict[str, Any]:
    """The outputs of `--env NAME`; {} without --env. Missing or unreadable: a CliError that
    says which deploy writes them."""
    name = getattr(args, "env", None)
    if not name:
        return {}
    path = outputs_file(name)
    inventory = f"-i inventories/{name} " if name != "local" else ""
    try:
        outputs = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(
            f"--env {name}: no deploy outputs at {path}: run "
            f"ansible-playbook {inventory}playbooks/deploy.yml"
        ) from None
    except (OSError, ValueError) as exc:
        raise CliError(f"--env {name}: {path} is not deploy.yml's outputs: {exc}") from None
    if name == "local" and isinstance(outputs, dict):
        # the stand-in's HTTP API records an AWS-style invoke URL; the gateway serves it
        stack = local_stack()
        if stack is None:
            raise CliError("--env local: the local stack is not up: run `tlops local up`")
        outputs = {**outputs, "api_url": stack.api_url}
    if not isinstance(outputs, dict) or not outputs.get("api_url"):
        raise CliError(
            f"--env {name}: {path} names no api_url: run ansible-playbook "
            f"{inventory}playbooks/deploy.yml again"
        )
    return outputs


# --- the local stack --------------------------------------------------------------------
def is_loopback_url(url: str) -> bool:
    from tlops.cli.client import _is_loopback

    return _is_loopback(urllib.parse.urlsplit(url).hostname)


def same_api(a: str, b: str) -> bool:
    one, two = urllib.parse.urlsplit(a.rstrip("/")), urllib.parse.urlsplit(b.rstrip("/"))
    return (one.scheme, one.hostname, one.port) == (two.scheme, two.hostname, two.port)


def local_stack() -> Any:
    """The local stack when its gateway runs (deployed or not), else None."""
    from tlops.local.stack import LocalStack

    stack = LocalStack()
    if not stack.load().get("pids"):
        return None
    if stack.status()["services"].get("gateway", {}).get("up"):
        return stack
    return None


def deployed(stack: Any) -> bool:
    return bool(stack.outputs().get("user_pool_id"))


def running_local_stack() -> Any:
    """The local stack when one runs with something deployed in it, else None."""
    stack = local_stack()
    return stack if stack is not None and deployed(stack) else None


def nothing_deployed() -> CliError:
    return CliError(f"the local stack is up but nothing is deployed in it: {DEPLOY_HINT}")


# --- the hosted UI ----------------------------------------------------------------------
def hosted_ui(outputs: dict[str, Any] | None = None) -> Any:
    """The hosted UI to log in with: from the --env outputs, else TL_HOSTED_UI_URL and
    TL_CLIENT_ID (TL_CALLBACK_PORTS: the registered ports); None when neither says."""
    from tlops.cli import login

    outputs = outputs or {}
    base = outputs.get("hosted_ui_url") or os.environ.get("TL_HOSTED_UI_URL")
    client_id = outputs.get("client_id") or os.environ.get("TL_CLIENT_ID")
    if not (base and client_id):
        return None
    if outputs.get("hosted_ui_url") and outputs.get("callback_ports"):
        ports: str | None = ",".join(str(p) for p in outputs["callback_ports"])
    else:
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


def login_tokens(ui: Any) -> dict[str, Any]:
    from tlops.cli import login

    try:
        return login.login(ui, announce=lambda text: print(text, file=sys.stderr))
    except login.LoginError as exc:
        raise CliError(str(exc)) from None


# --- the API and its tokens -------------------------------------------------------------
def api_url_of(args: argparse.Namespace, outputs: dict[str, Any]) -> str | None:
    return getattr(args, "api_url", None) or outputs.get("api_url") or os.environ.get("TL_API_URL")


def api_and_tokens(
    args: argparse.Namespace, *, groups: tuple[str, ...] = (), default_user: str = "demo"
) -> tuple[str, Any]:
    """The API URL and where tokens come from (see the module's docstring). `groups`: the
    pool groups a stand-in user is put in (the local stack only)."""
    from tlops.cli.client import TokenSource

    outputs = env_outputs(args)
    api_url = api_url_of(args, outputs)
    token = getattr(args, "token", None) or os.environ.get("TL_TOKEN")
    stack = None
    if not (api_url and token) and (api_url is None or is_loopback_url(api_url)):
        stack = local_stack()
    if not api_url:
        if stack is None:
            raise CliError(
                "no API URL: pass --env NAME (a deployment's outputs) or --api-url, or set "
                'TL_API_URL; for the local stand-in: tlops local up, eval "$(tlops local env)", '
                "then ansible-playbook playbooks/deploy.yml"
            )
        if not deployed(stack):
            raise nothing_deployed()
        api_url = stack.api_url
    if token:
        return api_url, TokenSource(token=token)
    if stack is not None and same_api(api_url, stack.api_url):
        if not deployed(stack):
            raise nothing_deployed()
        from tlops.cli.local import local_token

        user = getattr(args, "user", None) or default_user
        return api_url, TokenSource(fetch=lambda: local_token(stack, user, groups))
    ui = hosted_ui(outputs)
    if ui is None:
        raise CliError(
            f"no token for {api_url}: log in with `tlops login --env NAME` (the deploy's "
            "outputs name the hosted UI) or set TL_HOSTED_UI_URL and TL_CLIENT_ID, or pass "
            "--token (or TL_TOKEN); stand-in tokens go to the local stack's own API only"
        )
    return api_url, TokenSource(fetch=lambda: login_tokens(ui)["id_token"])


def cmd_login(args: argparse.Namespace) -> int:
    ui = hosted_ui(env_outputs(args))
    if ui is None:
        raise CliError(
            "no hosted UI to log in with: pass --env NAME (deploy.yml's outputs name it), or "
            "set TL_HOSTED_UI_URL and TL_CLIENT_ID (the deploy prints both)"
        )
    print(login_tokens(ui)["id_token"])
    return 0

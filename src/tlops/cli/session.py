"""Where a command's tokens come from: flags, the environment, the local stack, or a
hosted-UI login. Which API they go to is the command's target (`tlops.cli.target`).

The token: --token or TL_TOKEN, else, only for the local stack's own API (the target is
the stand-in and the API URL is its running gateway), a stand-in user's token, else a
hosted-UI login (from --env's outputs, or TL_HOSTED_UI_URL and TL_CLIENT_ID).

A stand-in token never goes anywhere but the local stack's gateway, and a command against
a real API imports neither the stand-in nor boto3. Tokens live in memory only.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlops.cli.target import Target

DEPLOY_HINT = "run ansible-playbook playbooks/deploy.yml (or `tlops demo`, which does it all)"


class CliError(Exception):
    """Something the user must fix first; printed as one line, exit code 6 (SETUP)."""


def nothing_deployed() -> CliError:
    return CliError(f"the local stack is up but nothing is deployed in it: {DEPLOY_HINT}")


# --- the hosted UI ----------------------------------------------------------------------
def hosted_ui(outputs: Mapping[str, Any] | None = None) -> Any:
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
def api_and_tokens(
    target: Target,
    args: argparse.Namespace,
    *,
    groups: tuple[str, ...] = (),
    default_user: str = "demo",
) -> tuple[str, Any]:
    """The target's API URL and where tokens come from (see the module's docstring).
    `groups`: the pool groups a stand-in user is put in (the local stack only)."""
    from tlops.cli.client import TokenSource

    api_url = target.api_url
    if not api_url:
        if target.env and not target.stand_in:
            raise CliError(
                f"--env {target.env}: its deploy outputs name no api_url: run "
                f"{target.deploy_command} again"
            )
        raise CliError(
            "no API URL: pass --env NAME (a deployment's outputs) or --api-url, or set "
            "TL_API_URL; for the local stand-in: tlops local up, ansible-playbook "
            'playbooks/deploy.yml, then --env local (or eval "$(tlops local env)")'
        )
    token = getattr(args, "token", None) or os.environ.get("TL_TOKEN")
    if token:
        return api_url, TokenSource(token=token)
    stack = target.own_stack()
    if stack is not None:
        from tlops.cli.local import local_token
        from tlops.cli.target import deployed

        if not deployed(stack):
            raise nothing_deployed()
        user = getattr(args, "user", None) or default_user
        return api_url, TokenSource(fetch=lambda: local_token(target, user, groups))
    ui = hosted_ui({} if target.stand_in else target.outputs)  # the stand-in has none
    if ui is None:
        raise CliError(
            f"no token for {api_url}: log in with `tlops login --env NAME` (the deploy's "
            "outputs name the hosted UI) or set TL_HOSTED_UI_URL and TL_CLIENT_ID, or pass "
            "--token (or TL_TOKEN); stand-in tokens go to the local stack's own API only"
        )
    return api_url, TokenSource(fetch=lambda: login_tokens(ui)["id_token"])


def cmd_login(args: argparse.Namespace) -> int:
    from tlops.cli.target import resolve

    target = resolve(args)
    if target.stand_in:
        raise CliError(
            "the local stand-in has no hosted UI: `tlops token --user NAME` prints a stand-in "
            "user's ID token"
        )
    ui = hosted_ui(target.outputs)
    if ui is None:
        raise CliError(
            "no hosted UI to log in with: pass --env NAME (deploy.yml's outputs name it), or "
            "set TL_HOSTED_UI_URL and TL_CLIENT_ID (the deploy prints both)"
        )
    print(login_tokens(ui)["id_token"])
    return 0

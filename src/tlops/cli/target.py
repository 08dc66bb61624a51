"""Which deployment a command talks to, and how it reads AWS there: one decision,
`resolve(args)`, that every command makes.

The local stand-in is the target only when something names it:

1. `--env local`;
2. else a loopback `--api-url`;
3. else, with neither flag, the environment `tlops local env` exports: TL_AWS_ENDPOINT_URL.

Anything else is an AWS account: the deployment of `--env NAME` (the outputs its deploy
wrote), or the one this shell's credentials and TL_API_URL reach. A running local stack
that nothing names is never adopted: with the stand-in up, `tlops cost` still reads the
account.

Each setting: the flag, else `--env`'s deploy outputs, else the environment, else the default.

- API URL: `--api-url`, else `--env`'s (for `local` the stack's gateway: the stand-in's
  HTTP API records an AWS-style invoke URL that nothing serves); without `--env`,
  TL_API_URL, and for the stand-in its running gateway.
- region: `--region`, `--env`'s outputs, TL_AWS_REGION, then on an account AWS_REGION
  and eu-west-1, on the stand-in its stack's own.
- credentials: `--profile`, else boto3's own chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...);
  the stand-in takes its placeholder keys, handed to its clients, never exported.
- AWS endpoint: none on an account (TL_AWS_ENDPOINT_URL is not read there); on the
  stand-in TL_AWS_ENDPOINT_URL, or its stack's own (always its own with `--env local`).

When a flag names an account in a shell that names the stand-in (after `eval "$(tlops
local env)"`), none of the stand-in's exports apply (TL_API_URL, TL_REDIS_URL, TL_PROJECT,
TL_AWS_REGION). `resolve` writes nothing to os.environ, and `tlops.local` is imported
only once the stand-in is the target.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlops.cli.session import CliError
from tlops.common import aws
from tlops.contract import names

LOCAL = "local"
# What `tlops local env` exports that names the stand-in: the endpoint of its AWS calls.
STAND_IN_VARIABLE = "TL_AWS_ENDPOINT_URL"
_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Error codes of AWS refusing the credentials themselves (not a permission).
_REFUSED = frozenset({
    "AuthFailure", "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId",
    "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException",
})  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Target:
    """A command's target: a deployment of an account, or the local stand-in."""

    env: str | None  # "local" for the stand-in, an inventory's name, None: nothing named
    api_url: str | None
    region: str
    profile: str | None  # --profile; None: boto3's own chain (or the stand-in's keys)
    stand_in: bool
    endpoint_url: str | None  # the stand-in's AWS endpoint; None: AWS's own
    project: str
    redis_url: str | None  # the queue, when named (TL_REDIS_URL, or --env local's stack)
    outputs: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    # the stand-in only: its LocalStack (the ports it was started on) and placeholder keys
    stack: Any = dataclasses.field(default=None, compare=False, repr=False)
    credentials: tuple[str, str] | None = dataclasses.field(default=None, repr=False)
    # whether its gateway answered, once asked: one probe a command (/ping is throttled)
    probed: dict[str, bool] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def settings(self) -> aws.Settings:
        """The settings every AWS client of this target is made with."""
        key, secret = self.credentials or (None, None)
        return aws.Settings(
            region=self.region, endpoint_url=self.endpoint_url, profile=self.profile,
            access_key_id=key, secret_access_key=secret,
        )  # fmt: skip

    def client(self, service: str, **options: Any) -> Any:
        """A boto3 client of this target (`tlops.common.aws.client` with its settings)."""
        return aws.client(service, settings=self.settings, **options)

    def lambda_environment(self) -> dict[str, str]:
        """What Lambda's runtime adds to a function's own configuration (region, keys), for
        a deployed function's code run here; the stand-in only, where no Lambda runs."""
        if self.credentials is None:
            return {}
        key, secret = self.credentials
        return {"AWS_REGION": self.region, "AWS_ACCESS_KEY_ID": key,
                "AWS_SECRET_ACCESS_KEY": secret}  # fmt: skip

    def describe(self) -> str:
        if self.stand_in:
            return f"the local stand-in ({self.endpoint_url})"
        where = f"region {self.region}" + (f", profile {self.profile}" if self.profile else "")
        if self.env:
            return f"deployment {self.env} ({where})"
        return f"the AWS account of this shell's credentials ({where})"

    @property
    def deploy_command(self) -> str:
        return deploy_command(self.env)

    def running_stack(self) -> Any:
        """The stand-in's stack when its gateway answers (deployed or not), else None."""
        if self.stack is None:
            return None
        if "up" not in self.probed:
            self.probed["up"] = _up(self.stack)
        return self.stack if self.probed["up"] else None

    def own_stack(self) -> Any:
        """The running stack whose gateway is this target's API, else None: the only API a
        stand-in user's token is ever sent to."""
        stack = self.running_stack()
        if stack is None or not self.api_url or not same_api(self.api_url, stack.api_url):
            return None
        return stack

    def credentials_problem(self, exc: Exception) -> str | None:
        """What to fix when AWS could not be asked for want of credentials, or refused them;
        None for any other failure."""
        from botocore import exceptions as botocore

        if isinstance(exc, botocore.ProfileNotFound):
            return f"{exc}: `aws configure list-profiles` names them"
        missing = (botocore.NoCredentialsError, botocore.PartialCredentialsError,
                   botocore.CredentialRetrievalError, botocore.TokenRetrievalError,
                   botocore.SSOTokenLoadError, botocore.UnauthorizedSSOTokenError)  # fmt: skip
        refused = isinstance(exc, botocore.ClientError) and exc.response["Error"].get("Code")
        if isinstance(exc, missing):
            what = f"no usable AWS credentials for {self.describe()} ({exc})"
        elif refused in _REFUSED:
            what = f"AWS refused the credentials for {self.describe()} ({refused})"
        else:
            return None
        if self.profile:
            fix = f"check the profile {self.profile} (SSO: aws sso login --profile {self.profile})"
        else:
            fix = "set AWS_PROFILE or pass --profile NAME (or export AWS_ACCESS_KEY_ID and "
            fix += "AWS_SECRET_ACCESS_KEY)"
            if os.environ.get(STAND_IN_VARIABLE):
                fix += "; this shell exports the stand-in's settings, whose keys are placeholders"
        return f"{what}: {fix}; for the local stand-in pass --env local"


# --- the options that name it ---------------------------------------------------------------
def arguments(*, api: bool = True, reads_aws: bool = False) -> argparse.ArgumentParser:
    """The options that choose a command's target, as an argparse parent: `--env` always,
    `--api-url` for a command that calls the API, `--profile` and `--region` for one that
    reads AWS."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("target (the stand-in only when named: --env local)")
    group.add_argument(
        "--env",
        metavar="NAME",
        help="the deployment of inventory NAME: its deploy outputs (API URL, hosted UI, region) "
        "from ~/.local/state/tlops/NAME/outputs.json; `local`: the local stand-in "
        "($TLOPS_STATE_DIR)",
    )
    if api:
        group.add_argument(
            "--api-url",
            metavar="URL",
            help="the API (default: --env's, TL_API_URL); a loopback URL names the stand-in",
        )
    if reads_aws:
        group.add_argument(
            "--profile",
            metavar="NAME",
            help="the AWS profile to read the account with (default: AWS_PROFILE, "
            "AWS_ACCESS_KEY_ID, ...: boto3's own chain)",
        )
        group.add_argument(
            "--region",
            metavar="REGION",
            help="default: --env's outputs, TL_AWS_REGION, AWS_REGION, eu-west-1",
        )
    return parent


# --- URLs and deploy outputs ----------------------------------------------------------------
def is_loopback_url(url: str) -> bool:
    from tlops.cli.client import _is_loopback

    return _is_loopback(urllib.parse.urlsplit(url).hostname)


def same_api(a: str, b: str) -> bool:
    one, two = urllib.parse.urlsplit(a.rstrip("/")), urllib.parse.urlsplit(b.rstrip("/"))
    return (one.scheme, one.hostname, one.port) == (two.scheme, two.hostname, two.port)


def state_home() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "tlops"


def outputs_file(env_name: str) -> Path:
    """Where deploy.yml wrote the outputs of inventory `env_name` (playbooks/vars/outputs.yml):
    the local one in the local stack's state dir ($TLOPS_STATE_DIR), others one folder each."""
    if not _ENV_NAME.fullmatch(env_name):
        raise CliError(f"--env: {env_name!r} is not an environment name (e.g. dev, prod, local)")
    if env_name == LOCAL and os.environ.get("TLOPS_STATE_DIR"):
        return Path(os.environ["TLOPS_STATE_DIR"]) / "outputs.json"
    return state_home() / env_name / "outputs.json"


def deploy_command(env_name: str | None) -> str:
    """The deploy that writes the outputs of `env_name` (None, local: the default inventory)."""
    inventory = f"-i inventories/{env_name} " if env_name and env_name != LOCAL else ""
    return f"ansible-playbook {inventory}playbooks/deploy.yml"


def env_outputs(env_name: str) -> dict[str, Any]:
    """The outputs of `--env NAME`; missing or unreadable: a CliError naming the deploy that
    writes them."""
    path = outputs_file(env_name)
    deploy = deploy_command(env_name)
    try:
        outputs = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"--env {env_name}: no deploy outputs at {path}: run {deploy}") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"--env {env_name}: {path} is not deploy.yml's outputs: {exc}") from None
    if not isinstance(outputs, dict):
        raise CliError(f"--env {env_name}: {path} is not deploy.yml's outputs: run {deploy}")
    return outputs


def outputs_at(path: str) -> dict[str, Any]:
    """Deploy outputs named by path (`tlops smoke --outputs`, as smoke.yml passes them); {}
    when there are none yet."""
    try:
        outputs = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"{path} is not the deploy's outputs (JSON): {exc}") from None
    return outputs if isinstance(outputs, dict) else {}


def deployed(stack: Any) -> bool:
    """Whether deploy.yml has deployed into this local stack (its user pool exists)."""
    return bool(stack.outputs().get("user_pool_id"))


def _up(stack: Any) -> bool:
    """Whether this local stack's gateway answers (deployed or not)."""
    if not stack.load().get("pids"):
        return False
    return bool(stack.status()["services"].get("gateway", {}).get("up"))


# --- the decision ---------------------------------------------------------------------------
def _given(args: argparse.Namespace, name: str) -> str | None:
    return getattr(args, name, None) or None


def resolve(args: argparse.Namespace, *, local: bool = False) -> Target:
    """This command's target (the module's docstring says how). `local`: the command is the
    stand-in's own (`tlops token`, `tlops demo`, `tlops local logs`): its stack, whatever
    else is named, and nothing asked of it yet (it may be down, or not deployed)."""
    name = LOCAL if local else _given(args, "env")
    if name is not None and not _ENV_NAME.fullmatch(name):
        raise CliError(f"--env: {name!r} is not an environment name (e.g. dev, prod, local)")
    api_flag = _given(args, "api_url")
    if api_flag is not None:
        from tlops.cli.client import check_api_url

        check_api_url(api_flag, source="--api-url")  # before any login or request
    if name is not None:
        stand_in = name == LOCAL
    elif api_flag is not None:
        stand_in = is_loopback_url(api_flag)
    else:
        stand_in = bool(os.environ.get(STAND_IN_VARIABLE))
    if stand_in:
        return _stand_in(args, pinned=name == LOCAL, checked=not local)
    return _account(args, name)


def _account(args: argparse.Namespace, name: str | None) -> Target:
    if name is not None:
        outputs = env_outputs(name)
    elif path := _given(args, "outputs"):
        outputs = outputs_at(path)
    else:
        outputs = {}
    # a flag named this account in a shell that names the stand-in: its exports do not apply
    environ: Mapping[str, str] = {} if os.environ.get(STAND_IN_VARIABLE) else os.environ
    # --env's API is its outputs' (the shell's TL_API_URL may be another deployment's)
    api_url = _given(args, "api_url") or outputs.get("api_url")
    api_url = api_url or (None if name else environ.get("TL_API_URL"))
    region = _given(args, "region") or outputs.get("region") or environ.get("TL_AWS_REGION")
    return Target(
        env=name,
        api_url=api_url or None,
        region=region or os.environ.get("AWS_REGION") or aws.DEFAULT_REGION,
        profile=_given(args, "profile"),
        stand_in=False,
        endpoint_url=None,
        project=outputs.get("project") or environ.get("TL_PROJECT") or names.PROJECT,
        redis_url=environ.get("TL_REDIS_URL") or None,
        outputs=outputs,
    )


def _stand_in(args: argparse.Namespace, *, pinned: bool, checked: bool) -> Target:
    """The stand-in. `pinned`: named by `--env local` (or the command is its own), so its
    stack's endpoints count, not the environment's; `checked`: by `--env local`, so its
    deploy outputs and a running stack are required, as for any other --env."""
    from tlops.local import stack as local  # the stand-in is the target: now it may load

    if _given(args, "profile"):
        raise CliError(
            "--profile names an account's credentials; the local stand-in takes its own "
            "placeholder keys: leave --profile out, or name the account with --env NAME"
        )
    state_dir = local.default_state_dir()
    recorded = local.LocalStack(state_dir=state_dir).load().get("ports", {})
    stack = local.LocalStack(state_dir=state_dir, ports=recorded)  # as it was started
    environ: Mapping[str, str] = {} if pinned else os.environ
    if pinned and checked:
        outputs = env_outputs(LOCAL)
    elif path := _given(args, "outputs"):
        outputs = outputs_at(path)
    else:
        outputs = stack.outputs()
    # named by the environment, its settings come before the stack's own files
    region = _given(args, "region") or environ.get("TL_AWS_REGION") or outputs.get("region")
    keys = local.STAND_IN_CREDENTIALS
    target = Target(
        env=LOCAL,
        api_url=_given(args, "api_url") or (stack.api_url if pinned else environ.get("TL_API_URL")),
        region=region or stack.region,
        profile=None,
        stand_in=True,
        endpoint_url=environ.get(STAND_IN_VARIABLE) or stack.moto_url,
        project=environ.get("TL_PROJECT") or outputs.get("project") or names.PROJECT,
        redis_url=stack.redis_url if pinned else environ.get("TL_REDIS_URL") or None,
        outputs=outputs,
        stack=stack,
        credentials=(keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"]),
    )
    if pinned and checked and target.running_stack() is None:
        raise CliError("--env local: the local stack is not up: run `tlops local up`")
    if target.api_url is None and target.running_stack() is not None:
        return dataclasses.replace(target, api_url=stack.api_url)  # named, and up: its gateway
    return target

"""`python -m tlops.node.deployment`: what this node's deployment is, read at every boot.

The image is baked once; the queue's URL and the project exist only once
deploy.yml ran, and may change with any later deploy. So deploy.yml (the
gpu_node role) writes them to an SSM String parameter as JSON, and makes once
a SecureString parameter holding the key vLLM asks of every request; the node
reads both at every start of its supervisord, before its programs start
(`ExecStartPre` of the tlops-supervisor unit):

1. the region: IMDSv2's `placement/region`, else the region baked in
   (`--region` / `TL_AWS_REGION`), said so in the log;
2. `ssm:GetParameter` on exactly those two parameters (the node's policy
   allows nothing else of SSM; the key's with decryption), each retried until
   `--timeout-s` while the network or the endpoint is not there yet;
3. the JSON checked: an object with `redis_url` (redis:// or rediss://, no
   credentials) and `project`; other keys are left out and named in the log;
   the key checked: a SecureString of 32 to 512 visible ASCII characters;
4. the environment file written atomically (a temporary file in the same
   folder, then renamed): owner root (when run as root), group of the
   programs' user, mode 0640. It holds the key, so it lives under /run (a
   tmpfs: RAM, gone at stop), never on the disk. The programs that need the
   deployment (vLLM included: the key is its VLLM_API_KEY) source it after
   their own environment file, so its values win.

When any step fails, the log says which and why, the file is removed (a
program never starts on a previous boot's values, nor on none: its launcher
refuses to start without the file), and it exits 1. systemd carries on with
supervisord (the unit's `ExecStartPre=-`), so nginx still runs and the boot's
failure is visible; vLLM does not start without its key (fail closed); nothing
here can stop the instance.

Exit codes: 0 written, 1 not written (the log's `reason`), 2 a bad flag.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tlops.common import aws
from tlops.common.telemetry import Telemetry
from tlops.contract import names
from tlops.node import imds

DEFAULT_PARAMETER = names.NODE_SETTINGS_PARAMETER
DEFAULT_KEY_PARAMETER = names.NODE_INFERENCE_KEY_PARAMETER
# Under /run, a tmpfs: the key in it never reaches the disk, nor the image.
DEFAULT_ENV_FILE = "/run/tlops/deployment.env"
FILE_MODE = 0o640
# key in the parameter → the variable the node's programs read (their settings tables')
VARIABLES = {"redis_url": "TL_REDIS_URL", "project": "TL_PROJECT"}
# Optional keys: the control bucket, where the state control records names the queue of
# the current wake (the parameter's redis_url is the queue deploy.yml made) and the jobs
# held while the stack slept wait.
OPTIONAL = {"control_bucket": "TL_CONTROL_BUCKET"}
# The inference key goes to vLLM (VLLM_API_KEY: it then asks `Authorization: Bearer <key>` of
# every /v1 request) and to its callers on the node (the watcher's and boot reporter's table).
KEY_VARIABLES = ("VLLM_API_KEY", "TL_INFERENCE_API_KEY")
_KEY = re.compile(r"[\x21-\x7e]{32,512}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REDIS_URL = re.compile(r"rediss?://[^/@\s]+(/[0-9]*)?")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+=@-]{0,127}")
_PARAMETER = re.compile(r"(/[A-Za-z0-9_.-]+)+")
# Retried: the network or the endpoint is not up yet at boot. Not retried: an answer.
_FINAL_CODES = {"ParameterNotFound", "AccessDeniedException", "AccessDenied", "ValidationException"}


class SettingsUnavailable(Exception):
    """The settings cannot be read or are not usable; the message says which and why."""


def parse(text: str, parameter: str = DEFAULT_PARAMETER) -> tuple[dict[str, str], list[str]]:
    """(the variables to write, the keys left out) from the parameter's value."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SettingsUnavailable(f"{parameter} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsUnavailable(f"{parameter} must hold a JSON object, got {type(data).__name__}")
    missing = [key for key in VARIABLES if not isinstance(data.get(key), str) or not data[key]]
    if missing:
        raise SettingsUnavailable(f"{parameter} lacks {', '.join(missing)} (strings)")
    if not _REDIS_URL.fullmatch(data["redis_url"]):
        raise SettingsUnavailable(
            f"{parameter}: redis_url must be a redis:// or rediss:// URL without credentials, "
            f"got {data['redis_url'][:80]!r}"
        )
    if not _PROJECT.fullmatch(data["project"]):
        raise SettingsUnavailable(
            f"{parameter}: project must be a tag value, got {data['project'][:80]!r}"
        )
    bucket = data.get("control_bucket")
    if bucket is not None and (not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket)):
        raise SettingsUnavailable(f"{parameter}: control_bucket must be a bucket name")
    variables = {VARIABLES[key]: data[key] for key in VARIABLES}
    variables |= {OPTIONAL[key]: data[key] for key in OPTIONAL if data.get(key)}
    return variables, sorted(set(data) - set(VARIABLES) - set(OPTIONAL))


def check_key(value: str, parameter: str) -> str:
    """The inference key, if usable in an HTTP header and long enough to guess at no cost."""
    if not _KEY.fullmatch(value):
        raise SettingsUnavailable(
            f"{parameter} must hold 32 to 512 visible ASCII characters, got {len(value)} "
            "characters (run deploy.yml: it makes the key)"
        )
    return value


def current_queue(variables: dict[str, str], region: str, log: Telemetry) -> dict[str, str]:
    """The variables with TL_REDIS_URL pointed at the queue control last recorded (a wake
    makes a new one); as they were when there is no control bucket or no queue recorded."""
    bucket_name = variables.get("TL_CONTROL_BUCKET")
    if not bucket_name:
        return variables
    from tlops.common.control_bucket import BucketUnavailable, ControlBucket
    from tlops.contract import control
    from tlops.contract.states import QUEUE_UP_STATUSES

    s3 = aws.client("s3", connect_timeout=2, read_timeout=5, max_attempts=2, region_name=region)
    try:
        queue = control.queue_of(ControlBucket(s3, bucket_name).state())
    except BucketUnavailable as exc:
        log.log("WARNING", "queue from the parameter", reason=str(exc))
        return variables
    if (
        queue is None
        or queue.status not in QUEUE_UP_STATUSES
        or not _REDIS_URL.fullmatch(queue.url)
    ):
        log.log("INFO", "no queue up yet: the programs look again once they start")
        return variables
    return {**variables, "TL_REDIS_URL": queue.url}


def render(variables: Mapping[str, str], parameter: str) -> str:
    lines = [
        f"# Written at boot by python -m tlops.node.deployment from SSM {parameter}.",
        "# Sourced by the node's programs after their own environment file; do not edit.",
        *(f"{name}={shlex.quote(value)}" for name, value in sorted(variables.items())),
    ]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str, group: str | None) -> None:
    """`text` at `path`, root:`group` 0640, replacing the old file in one rename."""
    gid = -1
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise SettingsUnavailable(f"group {group!r} does not exist on this node") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        os.fchown(fd, 0 if os.geteuid() == 0 else -1, gid)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def node_region(imds_url: str, baked: str | None, log: Telemetry) -> str:
    try:
        return imds.Imds(imds_url).region()
    except imds.MetadataUnavailable as exc:
        if not baked:
            raise SettingsUnavailable(f"no region: {exc}, and none was baked in") from None
        log.log("WARNING", "region from the image", reason=str(exc), region=baked)
        return baked


def read_parameter(
    parameter: str,
    region: str,
    *,
    timeout_s: float,
    client: Callable[[str, str], Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    secure: bool = False,
) -> str:
    """The parameter's value (a String; with `secure`, a SecureString, decrypted); transient
    failures retried until `timeout_s`.

    The key is encrypted with the AWS managed key aws/ssm, whose key policy lets every
    principal of the account decrypt through SSM: the node's role needs ssm:GetParameter on
    the parameter and no kms:Decrypt of its own ("Restricting decryption of SecureString
    parameter values", https://docs.aws.amazon.com/systems-manager/latest/userguide/ps-restrict-decryption.html).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    def make(service: str, region_name: str) -> Any:
        return aws.client(
            service, connect_timeout=2, read_timeout=5, max_attempts=2, region_name=region_name
        )

    ssm = (client or make)("ssm", region)
    deadline, wait = time.monotonic() + timeout_s, 1.0
    while True:
        try:
            found = ssm.get_parameter(Name=parameter, WithDecryption=secure)["Parameter"]
            break
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ParameterNotFound":
                raise SettingsUnavailable(
                    f"SSM parameter {parameter} does not exist in {region}: run deploy.yml"
                ) from None
            problem = f"SSM GetParameter {parameter} in {region} refused: {code}: {exc}"
            if code in _FINAL_CODES:
                raise SettingsUnavailable(problem) from None
        except BotoCoreError as exc:
            problem = f"SSM GetParameter {parameter} in {region} failed: {exc}"
        if time.monotonic() + wait > deadline:
            raise SettingsUnavailable(f"{problem} (gave up after {timeout_s:g} s)")
        sleep(wait)
        wait = min(wait * 2, 10.0)
    expected = "SecureString" if secure else "String"
    if found.get("Type") != expected:
        raise SettingsUnavailable(f"{parameter} is a {found.get('Type')}, not a {expected}")
    return str(found.get("Value", ""))


def run(args: argparse.Namespace, log: Telemetry, client=None) -> int:
    target = Path(args.env_file)
    try:
        region = node_region(args.imds_url, args.region, log)
        text = read_parameter(args.parameter, region, timeout_s=args.timeout_s, client=client)
        variables, ignored = parse(text, args.parameter)
        key = read_parameter(
            args.key_parameter, region, timeout_s=args.timeout_s, client=client, secure=True
        )
        variables |= dict.fromkeys(KEY_VARIABLES, check_key(key, args.key_parameter))
        variables = current_queue(variables, region, log)
        write_atomically(target, render(variables, args.parameter), args.group)
    except (SettingsUnavailable, OSError) as exc:
        target.unlink(missing_ok=True)
        log.log(
            "ERROR",
            "no deployment settings",
            reason=str(exc),
            parameter=args.parameter,
            env_file=str(target),
            consequence="the programs that need the queue do not start until the next boot",
        )
        return 1
    log.log(
        "INFO",
        "deployment settings written",
        parameter=args.parameter,
        region=region,
        env_file=str(target),
        project=variables["TL_PROJECT"],
        variables=sorted(variables),
        **({"ignored_keys": ignored} if ignored else {}),
    )
    return 0


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tlops.node.deployment",
        description="Read the deployment's settings from SSM into the node's environment file.",
    )
    parser.add_argument("--parameter", default=DEFAULT_PARAMETER, help="the SSM parameter")
    parser.add_argument(
        "--key-parameter", default=DEFAULT_KEY_PARAMETER, help="the inference key's parameter"
    )
    parser.add_argument("--env-file", default=DEFAULT_ENV_FILE, help="the file written")
    parser.add_argument("--group", default="", help="the programs' group (default: unchanged)")
    parser.add_argument("--imds-url", default=imds.DEFAULT_URL, help="IMDSv2, for the region")
    parser.add_argument(
        "--region",
        default=env.get("TL_AWS_REGION") or None,
        help="the region baked in, used when IMDS does not answer [TL_AWS_REGION]",
    )
    parser.add_argument("--timeout-s", type=float, default=60.0, help="retry SSM this long")
    args = parser.parse_args(argv)
    if not _PARAMETER.fullmatch(args.parameter):
        parser.error(f"--parameter must be an SSM path such as {DEFAULT_PARAMETER}")
    if not _PARAMETER.fullmatch(args.key_parameter) or args.key_parameter == args.parameter:
        parser.error(f"--key-parameter must be another SSM path, such as {DEFAULT_KEY_PARAMETER}")
    if not Path(args.env_file).is_absolute():
        parser.error("--env-file must be an absolute path")
    try:
        args.imds_url = imds.parse_url(args.imds_url)
    except ValueError as exc:
        parser.error(f"--imds-url {exc}")
    if not 0 < args.timeout_s <= 900:
        parser.error("--timeout-s must be above 0 and at most 900")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, os.environ)
    return run(args, Telemetry("node_deployment"))


if __name__ == "__main__":
    sys.exit(main())

"""`tlops ops sleep [--deep]` and `tlops ops wake`: the stack's sleep and wake, on demand.

They run the code the stack runs by itself (docs/decisions.md, "Sleep and wake"):

- `wake`: control's wake (create the queue if it sleeps, start the node);
- `sleep`: control's stop of the node (the stack naps: the queue stays);
- `sleep --deep`: the queue probe's sleep handshake, at once (`force`): nothing may be
  queued or running, an idle node is stopped first, then control deletes the queue.

On the stand-in they run the deployed functions' handlers here, each with its own
environment (no function executes there; the local stack's relay delivers what they
ask of control). On an account they invoke the deployed functions (lambda:Invoke).
Then they wait, bounded, until the state control records says the stack got there.
Which of the two: `tlops.cli.target` (the stand-in only when named).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tlops.cli.cost import deployed_environment
from tlops.cli.exits import ExitCode
from tlops.cli.session import CliError
from tlops.cli.target import Target, resolve

# Where each function's handler logs from (its module-level Telemetry).
_MODULES = {"control": "tlops.control.actions", "queue_health": "tlops.edge.queue_health"}


def _invoke(target: Target, function: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run the deployed function on `payload`: here on the stand-in, by lambda:Invoke on AWS."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = f"{target.project}-{function.replace('_', '-')}"
    env = deployed_environment(target, name)
    if target.stand_in:
        import importlib

        from tlops.cli.ops import as_lambda, logs_to_stderr
        from tlops.local.gateway import handler_factory

        handler = handler_factory(function, env)
        module = importlib.import_module(_MODULES[function])
        with logs_to_stderr(module), as_lambda(target, env):  # stdout keeps the report
            return handler()(payload)
    try:
        answer = target.client("lambda", read_timeout=900).invoke(
            FunctionName=f"{name}:prod", Payload=json.dumps(payload).encode()
        )
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"could not invoke {name}: {exc}") from None
    body = json.loads(answer["Payload"].read() or b"{}")
    if answer.get("FunctionError"):
        raise CliError(f"{name} failed: {body.get('errorMessage', body)}")
    return body


def _recorded_state(target: Target, bucket: str) -> dict[str, Any]:
    from tlops.common.control_bucket import BucketUnavailable, ControlBucket

    try:
        return ControlBucket(target.client("s3"), bucket).state()
    except BucketUnavailable as exc:
        raise CliError(f"cannot read the recorded state in s3://{bucket}: {exc}") from None


def _wait_for(target: Target, bucket: str, wanted: set[str], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    state = _recorded_state(target, bucket)
    while state.get("state") not in wanted and time.monotonic() < deadline:
        time.sleep(0.5)
        state = _recorded_state(target, bucket)
    return state


def _control_bucket(target: Target) -> str:
    function = f"{target.project}-control"
    bucket = deployed_environment(target, function).get("TL_CONTROL_BUCKET")
    if not bucket:
        raise CliError(f"{function} has no TL_CONTROL_BUCKET: run {target.deploy_command} again")
    return bucket


def wake(args: argparse.Namespace) -> int:
    target = resolve(args)
    bucket = _control_bucket(target)
    answer = _invoke(target, "control", {"action": "wake", "by": "tlops ops wake"})
    outcome = (answer.get("outcomes") or [{}])[0]
    if outcome.get("outcome") in ("failed", "refused"):
        print(f"tlops ops wake: {outcome.get('reason', 'the wake failed')}", file=sys.stderr)
        return ExitCode.FAILED
    state = _wait_for(target, bucket, {"awake"}, args.timeout)
    return _report(state, "awake", args)


def sleep(args: argparse.Namespace) -> int:
    target = resolve(args)
    bucket = _control_bucket(target)
    if args.deep:
        found = _invoke(target, "queue_health", {"sleep": {"force": True}})
        verdict = found.get("verdict")
        if verdict != "closing":
            why = {
                "busy": "jobs are queued or running: nothing was done (try again once done)",
                "booting": "the node is booting: nothing was done",
                "off": "the queue probe has no control bucket: run deploy.yml again",
            }.get(str(verdict), f"the queue did not close ({found.get('reason', verdict)})")
            print(f"tlops ops sleep --deep: {why}", file=sys.stderr)
            return ExitCode.FAILED
        wanted = "asleep"
    else:
        answer = _invoke(
            target, "control", {"action": "sleep", "by": "tlops ops sleep", "stop_node": True}
        )
        outcome = (answer.get("outcomes") or [{}])[0]
        if outcome.get("outcome") == "failed":
            print(f"tlops ops sleep: {outcome.get('reason')}", file=sys.stderr)
            return ExitCode.FAILED
        wanted = "napping"
    state = _wait_for(target, bucket, {wanted}, args.timeout)
    return _report(state, wanted, args)


def _report(state: dict[str, Any], wanted: str, args: argparse.Namespace) -> int:
    got = state.get("state") or "unknown"
    if args.json:
        print(json.dumps(state, sort_keys=True))
    else:
        queue = (state.get("queue") or {}).get("id", "none")
        node = state.get("node") or {}
        print(f"state: {got} (node {node.get('state', 'absent')}, queue {queue})")
    if got != wanted:
        print(f"tlops ops: the stack is {got}, not {wanted}, after {args.timeout:g} s",
              file=sys.stderr)  # fmt: skip
        return ExitCode.TIMEOUT
    return ExitCode.OK

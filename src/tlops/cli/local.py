"""`tlops local`, `tlops token` and `tlops demo`: the commands that drive the local stand-in.

With the commands whose target is the stand-in (`tlops.cli.target`), the only ones that
import `tlops.local`: a CLI talking to a real account never loads the stand-in.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from tlops.cli.exits import ExitCode
from tlops.cli.session import DEPLOY_HINT, CliError
from tlops.cli.target import resolve
from tlops.local.services import ServiceError
from tlops.local.stack import LocalStack

if TYPE_CHECKING:
    from tlops.cli.target import Target


def _as_cli_error(command: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """A stand-in service that cannot start is something the user fixes: one line, exit 6."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ServiceError as exc:
            raise CliError(str(exc)) from None

    return run


def _print_status(stack: LocalStack) -> None:
    status = stack.status()
    for name, service in status["services"].items():
        state = "up" if service["up"] else "down"
        port = f"port {service['port']:<6}" if service["port"] else " " * 11
        print(f"{name:8} {state:5} {port} pid {service['pid'] or '-'}")
        if name == "queue" and service["up"]:
            print(f"  {_queue_line(service)}")
    if (node := status["services"].get("node")) and node.get("instance"):
        running = ", ".join(f"{p} {s}" for p, s in sorted(node.get("programs", {}).items()))
        print(f"  instance {node['instance']} {node.get('instance_state')}: "
              f"{running or 'the node services are stopped'}")  # fmt: skip
    if not status["deployed"]:
        print("deployed       nothing: run ansible-playbook playbooks/deploy.yml")
    for name, value in status["deployed"].items():
        print(f"{name:14} {value}")


def _queue_line(service: dict) -> str:
    """What the queue agent serves: a group's redis-server, one on its way, or none (asleep,
    or nothing deployed yet: both expected)."""
    if service.get("queue") == "serving":
        return f"redis-server pid {service.get('redis_pid')} serves queue {service.get('group')}"
    if service.get("queue") == "creating":
        return f"queue {service.get('group')} is being created"
    return "no queue group: the stack sleeps, or nothing is deployed yet (not a fault)"


@_as_cli_error
def cmd_local(args: argparse.Namespace) -> int:
    if args.action == "logs":
        from tlops.cli.logs import cmd_logs

        return cmd_logs(args)
    stack = LocalStack(inference=not getattr(args, "no_inference", False))
    if args.action == "up":
        stack.up()
        _print_status(stack)
    elif args.action == "down":
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.action == "status":
        _print_status(stack)
        up = all(s["up"] for s in stack.status()["services"].values())
        return ExitCode.OK if up else ExitCode.UNHEALTHY
    else:
        for name, value in sorted(stack.env().items()):
            print(f"export {name}={shlex.quote(value)}")
    return 0


def local_token(target: Target, username: str, groups: tuple[str, ...] = ()) -> str:
    """A stand-in user's ID token, from the stand-in's user pool (its keys, passed to the
    client: nothing is exported)."""
    from tlops.local import users

    stack = target.stack
    if not stack.load().get("pids"):
        raise CliError("the local stack is not up: run `tlops local up` first")
    deployed = stack.outputs()
    if not deployed.get("user_pool_id"):
        raise CliError(f"no user pool in the local stand-in yet: {DEPLOY_HINT}")
    try:
        return users.id_token(
            pool_id=deployed["user_pool_id"],
            client_id=deployed["client_id"],
            username=username,
            groups=groups,
            idp=target.client("cognito-idp"),
        )
    except users.UnknownGroup as exc:
        raise CliError(f"{exc}: deploy.yml's auth role makes the pool's groups") from None


@_as_cli_error
def cmd_token(args: argparse.Namespace) -> int:
    print(local_token(resolve(args, local=True), args.user, tuple(args.group)))
    return 0


@_as_cli_error
def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the local stack: up → (with --bake: bake_ami.yml) → deploy.yml → a
    prompt to the stopped node (a cold boot, its phases, the completion) → the idle
    watchdog's stop (napping) → asleep, with what each costs → down."""
    from tlops.cli import client, demo, playbooks

    stack = LocalStack()
    print("== bringing the local stack up (node.yml configures the local node)", flush=True)
    try:
        stack.up()  # inside: a start that fails half-way is brought down too
        _print_status(stack)
        if args.bake:
            print("== ansible-playbook playbooks/bake_ami.yml (the node image)", flush=True)
            if playbooks.run("bake_ami.yml", env=stack.env(), timeout=7200).returncode != 0:
                print(
                    "tlops demo: bake_ami.yml failed (its output above says why)", file=sys.stderr
                )
                return 1
        print("== ansible-playbook playbooks/deploy.yml", flush=True)
        if playbooks.run("deploy.yml", env=stack.env()).returncode != 0:
            print("tlops demo: deploy.yml failed (its output above says why)", file=sys.stderr)
            return 1
        target = resolve(args, local=True)
        code = demo.cold_boot_prompt(target, args, client, local_token)
        if code == 0:
            code = demo.watchdog_stop(target, args)
        if code == 0:
            code = demo.fall_asleep(target)
        return code
    finally:
        if not args.keep:
            print("== bringing the local stack down", flush=True)
            stack.down()

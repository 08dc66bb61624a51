"""`tlops`: the operator's everyday command line.

Each command lives in a module of this package, imported only when it runs:
`tlops infer` against a real account loads neither the local stand-in nor
boto3 before it needs them. Which deployment a command talks to is decided in
one place, `tlops.cli.target`, from the options every such command takes from it.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from datetime import date

from tlops.cli.exits import ExitCode
from tlops.cli.session import CliError

# command → (module, function); imported when the command runs.
_COMMANDS = {
    "local": ("tlops.cli.local", "cmd_local"),
    "token": ("tlops.cli.local", "cmd_token"),
    "demo": ("tlops.cli.local", "cmd_demo"),
    "infer": ("tlops.cli.infer", "cmd_infer"),
    "status": ("tlops.cli.status", "cmd_status"),
    "login": ("tlops.cli.session", "cmd_login"),
    "cost": ("tlops.cli.cost", "cmd_cost"),
    "ops": ("tlops.cli.ops", "cmd_ops"),
    "logs": ("tlops.cli.logs", "cmd_logs"),
    "smoke": ("tlops.cli.smoke", "cmd_smoke"),
    "job": ("tlops.cli.jobs", "cmd_job"),
    "jobs": ("tlops.cli.jobs", "cmd_jobs"),
    "stop": ("tlops.cli.jobs", "cmd_stop"),
    "completion": ("tlops.cli.completion", "cmd_completion"),
    "check": ("tlops.cli.check", "cmd_check"),
}


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with "did you mean" for a mistyped command (its subcommands are
    made with the same class)."""

    def _check_value(self, action: argparse.Action, value: object) -> None:
        choices = action.choices
        if isinstance(action, argparse._SubParsersAction) and choices and value not in choices:
            names = list(choices)
            close = difflib.get_close_matches(str(value), names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"one of: {', '.join(names)}"
            raise argparse.ArgumentError(None, f"unknown command {value!r}; {hint}")
        super()._check_value(action, value)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("tinyllama-ops")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _job_id(text: str) -> str:
    from tlops import contract

    if not contract.is_job_id(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (a lowercase UUIDv4)")
    return text


def _page_size(text: str) -> int:
    """GET /jobs' `limit`: 1 to 100 (openapi.yaml)."""
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a page size from 1 to 100")
    return int(text)


def _target(*, api: bool = True, reads_aws: bool = False) -> list[argparse.ArgumentParser]:
    """The parent that gives a command --env (and --api-url, --profile, --region)."""
    from tlops.cli.target import arguments

    return [arguments(api=api, reads_aws=reads_aws)]


def _add_token(
    command: argparse.ArgumentParser, *, auth_help: str, user_help: str = "user (default demo)"
) -> None:
    """--token and --user: where a command calling the API finds its token."""
    command.add_argument("--token", help=auth_help)
    command.add_argument("--user", help=f"local stack: the stand-in {user_help}")


def _add_deployment_commands(sub: argparse._SubParsersAction) -> None:
    """job, jobs, stop, status, login, completion: the commands added with the API's routes."""
    job = sub.add_parser(
        "job", help="a job's status and result (GET /jobs/{id}); --cancel", parents=_target()
    )
    job.add_argument("id", type=_job_id, metavar="ID", help="the job id tlops infer printed")
    job.add_argument("--wait", action="store_true", help="follow it until it is finished")
    job.add_argument(
        "--cancel",
        action="store_true",
        help="cancel it (POST /jobs/{id}/cancel): queued, it never runs; running, it stops "
        "keeping its text so far; finished, it stays as it is",
    )
    job.add_argument("--timeout", type=float, default=600.0, help="--wait: seconds in all")
    job.add_argument("--json", action="store_true", help="print the job as JSON")
    _add_token(job, auth_help="an ID token of the job's user (default: TL_TOKEN, login)")

    jobs = sub.add_parser(
        "jobs", help="your jobs, newest first (GET /jobs), a page at a time", parents=_target()
    )
    jobs.add_argument("--limit", type=_page_size, metavar="N",
                      help="jobs per page, 1 to 100 (default: the API's, 20)")  # fmt: skip
    jobs.add_argument("--cursor", metavar="C", help="the page after the one that printed C")
    jobs.add_argument("--all", action="store_true", help="every page, following the cursor")
    jobs.add_argument("--json", action="store_true", help="print the jobs as JSON")
    _add_token(jobs, auth_help="an ID token (default: TL_TOKEN, the local stack, login)")

    stop = sub.add_parser(
        "stop", help="stop the GPU node now (POST /stop; admins only)", parents=_target()
    )
    stop.add_argument("--json", action="store_true", help="print the answer as JSON")
    _add_token(
        stop,
        auth_help="an ID token in the admins group (default: TL_TOKEN)",
        user_help="admin (default admin)",
    )

    status = sub.add_parser(
        "status", help="the node's state, the queue, the watcher", parents=_target(reads_aws=True)
    )
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.add_argument(
        "--direct",
        action="store_true",
        help="read EC2 and Redis from here instead of asking the API (needs TL_REDIS_URL "
        "on an account: the queue is private to the VPC)",
    )
    _add_token(status, auth_help="an ID token (default: TL_TOKEN, the local stack, login)")

    sub.add_parser(
        "login", help="log in through the hosted UI; prints an ID token", parents=_target(api=False)
    )

    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")


def _add_ops(sub: argparse._SubParsersAction) -> None:
    """ops: the guard rails' and the sleep's code paths, run on demand."""
    ops = sub.add_parser(
        "ops", help="drive the guard rails and the stack's sleep where nothing fires by itself"
    )
    ops_sub = ops.add_subparsers(dest="action", required=True, help="what to drive")
    breach = ops_sub.add_parser(
        "budget-breach",
        help="send the budget's kill notification and run the budget killer",
        parents=_target(api=False, reads_aws=True),
    )
    breach.add_argument("--percent", type=float, default=106.0, help="spend as %% of the budget")
    breach.add_argument("--drill", action="store_true", help="on an account: publish it for real")
    breach.add_argument("--json", action="store_true", help="print the killer's report as JSON")
    mail = ops_sub.add_parser(
        "cost-mail",
        help="the daily cost mail: print it or send it now",
        parents=_target(api=False, reads_aws=True),
    )
    mail.add_argument("--dry-run", action="store_true", help="print the mail, send nothing")
    nap = ops_sub.add_parser(
        "sleep",
        help="stop the node (napping); --deep: delete the queue too (asleep)",
        parents=_target(api=False, reads_aws=True),
    )
    nap.add_argument(
        "--deep", action="store_true", help="asleep: the queue goes too; disk and snapshots bill"
    )
    wake = ops_sub.add_parser(
        "wake",
        help="create the queue if it sleeps and start the node",
        parents=_target(api=False, reads_aws=True),
    )
    for verb in (nap, wake):
        verb.add_argument("--timeout", type=float, default=120.0,
                          help="seconds to wait for the state (default 120)")  # fmt: skip
        verb.add_argument("--json", action="store_true", help="print the recorded state as JSON")


def _add_logs(command: argparse.ArgumentParser) -> None:
    """The saved Logs Insights queries, over the local stand-in's logs (`tlops.cli.logs`)."""
    command.add_argument(
        "logs_action",
        choices=["query", "list"],
        metavar="{query,list}",
        help="query: run one; list: the saved queries",
    )
    command.add_argument(
        "name", nargs="?", metavar="NAME", help="the query (tlops local logs list names them)"
    )
    command.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                         help="a value for one of the query's parameters (repeatable)")  # fmt: skip
    command.add_argument("--json", action="store_true", help="print the rows as JSON")
    command.set_defaults(usage_error=command.error)  # `query` without a NAME is one


def _add_local(sub: argparse._SubParsersAction) -> None:
    """local up|down|status|env|logs: the stand-in itself (always its own target)."""
    local = sub.add_parser("local", help="the local stand-in stack")
    actions = local.add_subparsers(dest="action", required=True, help="what to do with it")
    up = actions.add_parser("up", help="start it (idempotent)")
    up.add_argument(
        "--no-inference",
        action="store_true",
        help="leave out the node (node.yml, its agent, vLLM; fast: edge and queue only)",
    )
    actions.add_parser("down", help="stop all it started")
    actions.add_parser("status", help="each service (exit 3 when one is down)")
    actions.add_parser("env", help="shell exports for it (they name it: the stand-in)")
    _add_logs(
        actions.add_parser(
            "logs", help="run a saved Logs Insights query (observability/queries) over its logs"
        )
    )


def _add_check(sub: argparse._SubParsersAction) -> None:
    """check policy: IAM policies judged against AWS's own reference, offline (tlops.cli.check)."""
    check = sub.add_parser("check", help="judge IAM policies against AWS's reference, offline")
    what = check.add_subparsers(dest="check_what", required=True, help="what to judge")
    policy = what.add_parser(
        "policy",
        help="IAM policy documents: unknown actions, resources and condition keys AWS ignores",
    )
    policy.add_argument("files", nargs="*", metavar="FILE", help="a policy document (JSON)")
    policy.add_argument(
        "--rendered",
        action="store_true",
        help="also every policy access.yml renders, with what each component's place needs",
    )


def build_parser() -> argparse.ArgumentParser:
    from tlops.cli.examples import TOP
    from tlops.cli.exits import epilog

    parser = _Parser(
        prog="tlops",
        description=__doc__.splitlines()[0],
        epilog=TOP + "\n\n" + epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="`tlops COMMAND --help`: its options"
    )

    _add_local(sub)

    token = sub.add_parser("token", help="print an ID token for a local stand-in user")
    token.add_argument("--user", required=True, help="user name; created on first use")
    token.add_argument(
        "--group",
        action="append",
        default=[],
        help="also put the user in this pool group (repeatable; `admins` may POST /stop)",
    )

    infer = sub.add_parser(
        "infer", help="send a prompt, follow the job, print the completion", parents=_target()
    )
    infer.add_argument(
        "prompt",
        help="the prompt text (quote it); completed as it is, unless --chat or --system sends "
        "it as your message through the model's chat template",
    )
    infer.add_argument(
        "--chat",
        action="store_true",
        help="send the text as a chat's user message (`messages`), what a chat model answers",
    )
    infer.add_argument(
        "--system",
        metavar="TEXT",
        help="a system message before the text (implies --chat)",
    )
    infer.add_argument(
        "--idle",
        type=int,
        default=5,
        metavar="MINUTES",
        help="How many minutes the GPU node stays up after this job when no other job "
        "comes, from 1 to 30; the default is 5.",
    )
    infer.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        metavar="N",
        help="at most N tokens in the completion (1 to 4096; default: the model's own limit)",
    )
    infer.add_argument("--timeout", type=float, default=600.0, help="seconds to wait in all")
    infer.add_argument("--json", action="store_true", help="print the job as JSON")
    _add_token(infer, auth_help="an ID token (default: TL_TOKEN, the local stack, login)")

    _add_deployment_commands(sub)

    cost = sub.add_parser(
        "cost",
        help="spend this month, its projection, the idle cost",
        parents=_target(api=False, reads_aws=True),
    )
    cost.add_argument("--json", action="store_true", help="print the figures as JSON")
    cost.add_argument("--png", metavar="PATH", help="also draw daily spend against the budget")
    cost.add_argument(
        "--as-of",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="the figures as they stood on that day (default: today, UTC)",
    )

    _add_ops(sub)
    _add_logs(
        sub.add_parser(
            "logs", help="alias of `tlops local logs`: the saved queries, over the local logs"
        )
    )

    smoke = sub.add_parser(
        "smoke",
        help="prove a deploy: /ping, a token, a prompt through the whole path, timed",
        parents=_target(),
    )
    smoke.add_argument("--token", help="the smoke user's ID token (default: TL_SMOKE_TOKEN)")
    smoke.add_argument("--user", default="smoke", help="the stand-in's smoke user (default smoke)")
    smoke.add_argument(
        "--outputs",
        metavar="PATH",
        help="a deployment's outputs by path, as smoke.yml passes them (instead of --env)",
    )
    smoke.add_argument("--json", action="store_true", help="print the legs and verdict as JSON")

    demo = sub.add_parser("demo", help="run a prompt through the local stack, end to end")
    demo.add_argument(
        "--prompt",
        default="Say hello to the operator in five words.",
        help="the prompt sent to the stopped node",
    )
    demo.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    demo.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the job")
    demo.add_argument(
        "--bake",
        action="store_true",
        help="bake the node image first (bake_ami.yml, a podman container; minutes)",
    )
    _add_check(sub)
    from tlops.cli import examples

    examples.attach(sub)
    return parser


def _stdout_has_no_reader() -> bool:
    """Whether stdout is a pipe whose reading end is closed (`tlops ... | head -1` after
    head exits): Linux flags such a pipe POLLERR."""
    import select

    poll = select.poll()
    poll.register(sys.stdout.fileno(), 0)
    return any(events & select.POLLERR for _, events in poll.poll(0))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # bare `tlops`: the help, as asked for
        parser.print_help()
        return ExitCode.OK
    args = parser.parse_args(argv)
    module, function = _COMMANDS[args.command]
    try:
        return getattr(importlib.import_module(module), function)(args)
    except CliError as exc:
        print(f"tlops: {exc}", file=sys.stderr)
        return ExitCode.SETUP
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        if not _stdout_has_no_reader():
            raise
        # the reader has all it wanted: no traceback, and none at exit when Python flushes
        # stdout (the pattern of the "Note on SIGPIPE" in Python's signal module docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())

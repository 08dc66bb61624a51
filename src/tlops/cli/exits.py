"""The exit codes of `tlops`: one table, here. README's "Exit codes" section and the epilog
of `tlops --help` are made from it (a test holds README's table equal to this one).

2 is argparse's alone (a usage error): none of our own outcomes reuses it, so a script
can tell "I called it wrong" from anything the command found.
"""

from __future__ import annotations

import enum
import textwrap


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    UNHEALTHY = 3
    UNREACHABLE = 4
    TIMEOUT = 5
    SETUP = 6
    INTERRUPTED = 130


MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "done; for status commands: every part answered and is well",
    ExitCode.FAILED: (
        "the API refused the request (4xx, e.g. 403 forbidden for `tlops stop` outside "
        "`admins`), the job failed or expired, a smoke leg or a playbook failed"
    ),
    ExitCode.USAGE: "a usage error (argparse's: an unknown option, a missing argument)",
    ExitCode.UNHEALTHY: (
        "a part is down or reports a problem (`status`, `local status`, `ops cost-mail`)"
    ),
    ExitCode.UNREACHABLE: "the API could not be reached, or answered 502, 503 or 504",
    ExitCode.TIMEOUT: (
        "the job did not finish within --timeout (it may still: `tlops job ID --wait`)"
    ),
    ExitCode.SETUP: (
        "something to set up or fix first: no API URL or token, the local stack not up, "
        "nothing deployed, no deploy outputs for --env, a value the command checks itself "
        "(an unknown query); the message says what to do"
    ),
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def for_api_error(status: int) -> ExitCode:
    """The exit code for an API answer that is not the one wanted (0: not reached)."""
    return ExitCode.UNREACHABLE if status in (0, 502, 503, 504) else ExitCode.FAILED


def epilog() -> str:
    """The table as `tlops --help` ends with it."""
    lines = ["exit codes:"]
    for code in ExitCode:
        head = f"  {code.value:<4} {code.name.lower():<12} "
        indent = " " * len(head)
        lines.append(
            textwrap.fill(MEANING[code], 92, initial_indent=head, subsequent_indent=indent)
        )
    return "\n".join(lines)

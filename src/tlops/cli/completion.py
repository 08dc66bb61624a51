"""`tlops completion bash|zsh`: a completion script for the shell, made by shtab from the
parser itself, so it never drifts from the commands."""

from __future__ import annotations

import argparse

from tlops.cli.session import CliError


def cmd_completion(args: argparse.Namespace) -> int:
    try:
        import shtab
    except ImportError:
        raise CliError("shell completion needs the shtab package: run `make setup`") from None
    from tlops.cli import build_parser

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0

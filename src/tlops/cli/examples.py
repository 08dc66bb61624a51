"""The examples each `tlops … --help` ends with: one place, attached to the parser."""

from __future__ import annotations

import argparse

TOP = """examples:
  tlops local up && eval "$(tlops local env)"      # the local stand-in, then deploy.yml
  tlops infer "Tell me a joke"                      # a prompt through the whole path
  tlops status --env dev                            # a deployment, from its deploy outputs
  tlops cost --env local                            # the stand-in, only ever when named
  tlops completion bash > ~/.local/share/bash-completion/completions/tlops"""

EXAMPLES: dict[str, list[str]] = {
    "local": [
        "tlops local up                  # moto, Redis, the gateway and the node (idempotent)",
        'eval "$(tlops local env)"        # TL_API_URL, TL_AWS_ENDPOINT_URL, ... in this shell',
        "tlops local status; echo $?     # 0 when every service answers, 3 when one does not",
        "tlops local logs query api_5xx_by_route",
        "tlops local down",
    ],
    "local up": [
        "tlops local up                  # moto, Redis, the gateway and the node (idempotent)",
        "tlops local up --no-inference   # edge and queue only: seconds, not a minute",
    ],
    "local down": ["tlops local down                # every process it started"],
    "local status": [
        "tlops local status; echo $?     # 0 when every service answers, 3 when one does not"
    ],
    "local env": [
        'eval "$(tlops local env)"        # this shell names the stand-in: TL_AWS_ENDPOINT_URL, ...'
    ],
    "local logs": [
        "tlops local logs list",
        "tlops local logs query api_5xx_by_route",
        "tlops local logs query job_path --param "
        "JOB_ID=6f1c0a52-3e8b-4d2f-9a71-0c5e2b8d4f10 --json",
    ],
    "token": [
        'curl -H "authorization: Bearer $(tlops token --user alice)" "$TL_API_URL/status"',
        "tlops token --user ops --group admins   # a token that may POST /stop and /resize",
    ],
    "infer": [
        'tlops infer "Tell me a joke"',
        'tlops infer "Summarise: ..." --max-tokens 64 --idle 10 --json',
        'tlops infer --env dev "Hello"   # the dev deployment (logs in through its hosted UI)',
        'tlops infer --chat "What is a GPU?"              # a chat: the model\'s chat template',
        'tlops infer --system "Answer in French." "Hi"    # a chat with a system message',
    ],
    "job": [
        "tlops job 6f1c0a52-3e8b-4d2f-9a71-0c5e2b8d4f10          # its status now",
        "tlops job 6f1c0a52-3e8b-4d2f-9a71-0c5e2b8d4f10 --wait   # follow it, print the output",
        "tlops job 6f1c0a52-3e8b-4d2f-9a71-0c5e2b8d4f10 --cancel # cancel it",
    ],
    "jobs": [
        "tlops jobs                      # your latest 20 jobs, newest first",
        "tlops jobs --limit 5 --cursor C # the page after the one that printed C",
        "tlops jobs --all --json         # every job still listed, as JSON",
    ],
    "stop": [
        "tlops stop                      # the local stack: as the stand-in admin",
        "tlops stop --env prod           # log in as an admin; 403 forbidden otherwise",
    ],
    "status": [
        "tlops status --env local        # through the API (GET /status)",
        "tlops status --env prod --json",
        "tlops status --direct --profile ops   # read EC2 and Redis from here (TL_REDIS_URL)",
    ],
    "login": [
        "tlops login --env dev           # opens the hosted UI; prints an ID token",
        'export TL_TOKEN="$(tlops login --env dev)"   # in this shell only, never on disk',
    ],
    "cost": [
        "tlops cost --env prod           # the account's month (AWS_PROFILE, or --profile)",
        "tlops cost --env local          # the stand-in's canned month, labelled as such",
        "tlops cost --env prod --png cost.png --as-of 2024-05-31",
    ],
    "ops": [
        "tlops ops budget-breach --env local --percent 106",
        "tlops ops cost-mail --env prod --dry-run",
        "tlops ops sleep --env prod --deep   # asleep now: only the disk and snapshots bill",
        "tlops ops wake --env prod           # the queue back, the node started",
    ],
    "ops budget-breach": [
        "tlops ops budget-breach --env local --percent 106 --json",
        "tlops ops budget-breach --env prod --drill   # AWS runs the real killer",
    ],
    "ops cost-mail": ["tlops ops cost-mail --env prod --profile ops --dry-run"],
    "check": ["tlops check policy policy.json   # exit 1 and one line per problem, 0 when none"],
    "check policy": [
        "tlops check policy policy.json   # exit 1 and one line per problem, 0 when none",
        "tlops check policy --rendered    # every policy access.yml renders, and its needs",
    ],
    "ops sleep": [
        "tlops ops sleep --env local    # napping: the node stops, the queue stays",
        "tlops ops sleep --env local --deep   # asleep: the queue is deleted too",
    ],
    "ops wake": ["tlops ops wake --env prod --json"],
    "logs": [
        "tlops logs list                 # the same as tlops local logs list",
        "tlops local logs query api_5xx_by_route",
    ],
    "smoke": [
        "tlops smoke                     # the local stack",
        "tlops smoke --env dev --json    # a deployment, with the smoke user's TL_SMOKE_TOKEN",
    ],
    "demo": [
        "tlops demo                      # up, deploy, a cold boot, the watchdog, teardown, down",
        "tlops demo --keep               # and leave the stack running",
    ],
    "completion": [
        "tlops completion bash > ~/.local/share/bash-completion/completions/tlops",
        'tlops completion zsh > "${fpath[1]}/_tlops"',
    ],
}


def attach(subparsers: argparse._SubParsersAction, prefix: str = "") -> None:
    """Give each command (and each subcommand) its examples as its help's epilog."""
    for name, command in subparsers.choices.items():
        key = f"{prefix}{name}"
        lines = EXAMPLES.get(key)
        if lines:
            command.epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)
            command.formatter_class = argparse.RawDescriptionHelpFormatter
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                attach(action, prefix=f"{key} ")

"""One role's task files run by ansible-playbook in a play of their own, on localhost.

For the role logic a whole deploy.yml or bake_ami.yml would take minutes to reach: the play
holds only the tasks a test names (`include_role` with `tasks_from`), with the repository's
ansible.cfg (roles, the tlops.stack collection) and the shared names. With `endpoint`, the
AWS modules talk to that stand-in, as the cloud playbooks' `module_defaults` make them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.playbooks.stand_in import PLAYBOOK_BIN, REGION, REPO

NAMES = REPO / "playbooks/group_vars/all/names.yml"


@dataclass
class Run:
    rc: int
    report: dict[str, Any]
    stdout: str
    stderr: str

    def results(self, name: str) -> list[dict[str, Any]]:
        """The results of every task of that name (a role's task: "<role> : <name>"; a loop's
        items flattened), in order."""
        found = []
        for play in self.report.get("plays", []):
            for task in play["tasks"]:
                if task["task"]["name"].split(" : ")[-1] == name:
                    result = task["hosts"].get("localhost", {})
                    found += result.get("results", [result])
        return found

    def failure(self) -> str:
        """Every failed task's name and message (a loop's items included)."""
        messages = []
        for play in self.report.get("plays", []):
            for task in play["tasks"]:
                result = task["hosts"].get("localhost", {})
                for item in [result, *result.get("results", [])]:
                    # a failed assert's loop items say so by evaluated_to alone
                    if item.get("failed") or item.get("evaluated_to") is False:
                        messages.append(f"{task['task']['name']}: {item.get('msg', '')}")
        return "\n".join(messages)

    def changed(self) -> list[str]:
        return [
            task["task"]["name"]
            for play in self.report.get("plays", [])
            for task in play["tasks"]
            if task["hosts"].get("localhost", {}).get("changed")
        ]


def play(
    tmp_path: Path,
    tasks: list[dict[str, Any]],
    *,
    variables: dict[str, Any] | None = None,
    endpoint: str | None = None,
    env: dict[str, str] | None = None,
    check: bool = False,
) -> Run:
    """Run `tasks` on localhost; `variables` become extra vars (the highest precedence), and
    one given as None is left unset (for a task that sets it)."""
    connection = {
        "endpoint_url": endpoint,
        "region": "{{ aws_region }}",  # as the cloud playbooks' module_defaults have it
        "access_key": "standin-key-id",
        "secret_key": "standin-secret",
    }
    groups = ("amazon.aws.aws", "community.aws.aws", "tlops.stack.aws")
    playbook = [{
        "name": "Run the tasks under test",
        "hosts": "localhost",
        "gather_facts": False,
        "vars_files": [str(NAMES)],
        "module_defaults": {f"group/{group}": connection for group in groups} if endpoint else {},
        "tasks": tasks,
    }]  # fmt: skip
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    extra = {
        "ansible_python_interpreter": sys.executable,
        "project_tag": "tinyllama",
        "aws_region": REGION,
        "aws_account_id": "123456789012",
        "tlops_name_suffix": "rolesuffix",  # what playbooks/tasks/name_suffix.yml sets
        # what the cloud playbooks' lookups and the roles' own modules connect with
        **(
            {
                "aws_endpoint_url": endpoint,
                "aws_access_key": connection["access_key"],
                "aws_secret_key": connection["secret_key"],
            }
            if endpoint
            else {}
        ),
        **(variables or {}),
    }
    extra = {name: value for name, value in extra.items() if value is not None}
    command = [
        str(PLAYBOOK_BIN), str(path), "-i", "localhost,", "-c", "local",
        "-e", json.dumps(extra), *(["--check"] if check else []),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, check=False, timeout=300,
        stdin=subprocess.DEVNULL,
        env={
            **os.environ,
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.timer",
            "ANSIBLE_DEPRECATION_WARNINGS": "false",
            **(env or {}),
        },
    )  # fmt: skip
    start = done.stdout.find("{")
    report = json.JSONDecoder().raw_decode(done.stdout, start)[0] if start >= 0 else {}
    return Run(done.returncode, report, done.stdout, done.stderr)


def include(
    role: str, tasks_from: str, *, public: bool = False, **variables: Any
) -> dict[str, Any]:
    """A task including one task file of a role (its defaults and vars loaded; with `public`,
    left to the tasks after it)."""
    task: dict[str, Any] = {
        "name": f"Run {role}'s {tasks_from}",
        "ansible.builtin.include_role": {"name": role, "tasks_from": tasks_from, "public": public},
    }
    if variables:
        task["vars"] = variables
    return task

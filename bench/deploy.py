"""deploy.yml and teardown.yml on the stand-in: wall time and task counts per run.

A fresh moto server, then: deploy (first run, everything created), deploy again
(nothing to change), the plan (`--check --diff`), teardown idle, teardown all.
Each run's wall time and its task counts (ok / changed / skipped) are printed;
the baseline in the same run is `ansible-playbook` running a one-task playbook
(`ansible.builtin.ping`-like debug) against the same inventory, i.e. what
starting Ansible costs before any AWS call. Figures, not a test.

    .venv/bin/python bench/deploy.py
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

from tlops import checkout
from tlops.cli import playbooks
from tlops.local.services import MotoProcess


def run(name: str, env: dict[str, str], *args: str) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    done = playbooks.run(
        name,
        env={**env, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
             "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.timer",
             "ANSIBLE_DEPRECATION_WARNINGS": "false"},
        args=args,
        capture=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} {args} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    report = json.JSONDecoder().raw_decode(done.stdout, done.stdout.index("{"))[0]
    return elapsed, report["stats"]["localhost"]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tlops-deploy-bench-"))
    moto = MotoProcess(work)
    moto.start()
    env = {"TL_AWS_ENDPOINT_URL": moto.url, "TLOPS_STATE_DIR": str(work / "state")}
    baseline = work / "baseline.yml"
    baseline.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug: {msg: hello}\n"
    )
    rows = []
    try:
        started = time.perf_counter()
        done = playbooks.run(
            str(baseline.relative_to(checkout.ROOT / "playbooks", walk_up=True)),
            env=env, capture=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout
        rows.append(("ansible-playbook, one debug task (baseline)", time.perf_counter() - started,
                     None))  # fmt: skip
        confirm = ("-e", "teardown_confirmation=yes")
        for label, name, args in (
            ("deploy.yml, first run", "deploy.yml", ()),
            ("deploy.yml, second run", "deploy.yml", ()),
            ("deploy.yml --check --diff", "deploy.yml", ("--check", "--diff")),
            ("teardown.yml (idle)", "teardown.yml", confirm),
            ("teardown.yml -e teardown_level=all", "teardown.yml",
             (*confirm, "-e", "teardown_level=all")),
        ):  # fmt: skip
            elapsed, stats = run(name, env, *args)
            rows.append((label, elapsed, stats))
    finally:
        moto.stop()
    print(f"# deploy on the stand-in, {platform.node() or 'machine'}, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}")  # fmt: skip
    base = rows[0][1]
    for label, elapsed, stats in rows:
        counts = (
            "" if stats is None
            else f"ok {stats['ok']:3}  changed {stats['changed']:3}  skipped {stats['skipped']:3}"
        )  # fmt: skip
        print(f"{label:40} {elapsed:6.1f} s  ({elapsed / base:4.1f}x baseline)  {counts}")


if __name__ == "__main__":
    main()

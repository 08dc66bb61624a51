"""`tlops demo` (`make demo`), the README's first command: a cold boot of the local node
with real vLLM, the idle watchdog's stop, the stack asleep with what it costs, and nothing
left running.

Its own module, so that the test workers run it beside the rest of `tlops`' tests.
"""

from __future__ import annotations

import re

import pytest

from tests.support.stack_fixtures import patch_stack_env, pid_gone
from tlops import contract
from tlops.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=6)]


def test_demo_shows_a_cold_boot_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """`make demo`: the node stopped, a prompt, the boot's phases, the completion, then the
    idle watchdog's stop, the stack asleep with what napping and asleep cost, down."""
    patch_stack_env(monkeypatch, tmp_path)
    assert main(["demo", "--prompt", "Count to three."]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^== the node i-\w+ is stopped$", out, re.MULTILINE), out
    assert re.search(r'^== POST /infer -> 202 \{"status": "starting", "eta": \d+', out, re.M), out
    assert "x-gpu-coldboot: true" in out
    # The demo samples the job every poll: a fast node can leave a phase, or all but the
    # first, between two polls; what it shows must still be the boot's phases in order.
    phases = re.findall(r"^== GET /jobs/[0-9a-f-]+ -> queued \(node: ([a-z ]+)\)", out, re.M)
    assert phases and phases[0] == contract.BootPhase.STARTING_INSTANCE, out
    order = [p.value for p in contract.BootPhase]
    assert [order.index(p) for p in phases] == sorted(order.index(p) for p in phases), out
    assert re.search(r"^== GET /jobs/[0-9a-f-]+ -> done \[[\d.]+ s\]$", out, re.MULTILINE), out
    completion = re.search(
        r"^== completion from tlops-tiny-llama \((\d+) tokens", out, re.MULTILINE
    )
    assert completion and int(completion.group(1)) >= 1, out
    # README: the demo shows the idle watchdog's stop; the watchdog is part of the checkout
    assert "skipped: the idle watchdog" not in out, out
    assert re.search(r"^== the idle watchdog stopped the node after \d+ s$", out, re.M), out
    # napping costs the queue and the disk, asleep the disk only (prices.yml: 11.80, 2.43)
    napping = re.search(r"^== napping \(node stopped, queue up\): ([\d.]+) EUR a month", out, re.M)
    asleep = re.search(r"^== asleep \(node stopped, no queue\): ([\d.]+) EUR a month", out, re.M)
    assert napping and asleep, out
    assert float(napping.group(1)) == 14.23 and float(asleep.group(1)) == 2.43, out
    assert re.search(r"^state: asleep \(node stopped, queue none\)$", out, re.MULTILINE), out
    assert "teardown.yml" not in out  # teardown idle is what the sleep is now
    assert "== bringing the local stack down" in out
    pids = [int(p) for p in re.findall(r"pid (\d+)$", out, re.MULTILINE)]
    assert len(pids) == 5  # moto, the queue agent, gateway, relay, the node agent
    for pid in pids:
        assert pid_gone(pid), pid
    assert not (tmp_path / "stack.json").exists()

"""playbooks/node.yml refuses bad settings in its preflight, before it changes anything.

Each case runs the playbook against the local node with one bad variable: it must fail in
a preflight task (the shared one or a role's, all of which run before the first role),
name the variable, and leave the node's prefix directory uncreated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")
# A temporary directory is too deep for a unix socket path (the stack picks short ones too).
SHORT_PATHS = {"supervisor_socket": "/tmp/tlops-t.sock", "vllm_tmp_dir": "/tmp/tlops-t-vllm"}


def run_node_playbook(state_dir: Path, extra: dict) -> tuple[int, str, list[str]]:
    env = {
        **os.environ,
        "TLOPS_STATE_DIR": str(state_dir),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.timer",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
    }
    done = subprocess.run(
        [str(PLAYBOOK_BIN), "playbooks/node.yml", "-e", json.dumps({**SHORT_PATHS, **extra})],
        cwd=REPO, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        check=False, timeout=300,
    )  # fmt: skip
    start = done.stdout.find("{")
    report = json.JSONDecoder().raw_decode(done.stdout, start)[0] if start >= 0 else {}
    failed = [
        task["task"]["name"]
        for play in report.get("plays", [])
        for task in play["tasks"]
        if any(host.get("failed") for host in task["hosts"].values())
    ]
    return done.returncode, done.stdout, failed


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"idle_watchdog_idle_minutes": 0}, "idle_watchdog_idle_minutes"),
        ({"idle_watchdog_idle_minutes": 31}, "idle_watchdog_idle_minutes"),
        (
            {"nginx_tls_certificate_src": "/nowhere/node.crt", "nginx_tls_key_src": "/nowhere/k"},
            "nginx_tls_certificate_src",
        ),
        ({"nginx_tls_https_port": 443}, "nginx_tls_https_port"),
        # The local node takes the queue's URL from node.yml: empty is refused...
        ({"watcher_redis_url": ""}, "watcher_redis_url"),
        ({"idle_watchdog_redis_url": "http://queue:6379"}, "idle_watchdog_redis_url"),
        # ...and an image's node, which reads it at boot, still refuses a malformed one.
        ({"node_settings_from_deployment": True, "watcher_redis_url": "queue:6379"},
         "watcher_redis_url"),
    ],
    ids=["idle-0", "idle-31", "cert-missing", "port-443", "no-queue", "queue-http",
         "from-deployment-malformed"],
)  # fmt: skip
def test_bad_settings_fail_in_preflight_naming_them(tmp_path, extra, named):
    rc, stdout, failed = run_node_playbook(tmp_path, extra)
    assert rc != 0
    assert named in stdout
    assert failed, stdout[-2000:]
    assert all("preflight" in name.lower() or "assert" in name.lower() or "check" in name.lower()
               for name in failed), failed  # fmt: skip
    assert not (tmp_path / "node").exists()  # nothing was changed

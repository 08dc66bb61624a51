"""The watcher as the role installs it: under the node's supervisord, connected to the queue."""

from __future__ import annotations

import json

HEARTBEAT_KEY = "watcher:heartbeat"  # tlops.contract.HEARTBEAT_KEY
ENV_FILE = "/etc/tlops/watcher.env"
VENV_PYTHON = "/opt/tlops/venv/bin/python"


def heartbeat(host) -> dict | None:
    result = host.run(f"redis-cli --raw GET {HEARTBEAT_KEY}")
    assert result.rc == 0, result.stderr
    text = result.stdout.strip()
    return json.loads(text) if text else None


def test_supervisorctl_shows_the_watcher_running(supervisor):
    assert supervisor().get("watcher") == "RUNNING"


def test_it_runs_as_its_own_user_from_the_venv(host):
    (process,) = host.process.filter(args=f"{VENV_PYTHON} -m tlops.node.watcher")
    assert process.user == "tlops"


def test_its_settings_are_readable_by_its_user_only(host):
    env = host.file(ENV_FILE)
    assert env.mode == 0o600
    assert env.user == "tlops"
    assert "TL_REDIS_URL=" in env.content_string


def test_it_reached_the_queue_and_keeps_a_heartbeat(host, eventually):
    beat = eventually(lambda: heartbeat(host), within_s=30)
    assert beat, f"no {HEARTBEAT_KEY} in Redis: the watcher never reached the queue"
    ttl = int(host.run(f"redis-cli TTL {HEARTBEAT_KEY}").stdout.strip())
    assert 0 < ttl <= 30


def test_a_stop_drains_and_removes_the_heartbeat_and_a_start_brings_it_back(
    host, supervisor, eventually
):
    ctl = "/usr/bin/supervisorctl -c /etc/tlops/supervisord.conf"
    assert host.run(f"{ctl} stop watcher").rc == 0
    try:
        assert supervisor().get("watcher") == "STOPPED"  # exited within stopwaitsecs, not killed
        assert heartbeat(host) is None
    finally:
        assert host.run(f"{ctl} start watcher").rc == 0
    assert eventually(lambda: supervisor().get("watcher") == "RUNNING", within_s=30)
    assert eventually(lambda: heartbeat(host), within_s=30)

"""The idle watchdog as the role schedules it: cron, every minute, stopping its own instance.

Each decision below comes from the command the crontab holds, run as cron runs
it (its user, an empty environment), against the stand-in's EC2 and the IMDSv2
double. The node's idle time is set through the activity file, as the watcher
writes it: the newest job's `idle` (2 minutes here) wins over the role's 5.
Cron keeps ticking meanwhile; every tick logs to the same file and takes the
same lock, so the checks read the log, whichever tick wrote it.
"""

from __future__ import annotations

import json
import shlex

import pytest

CRON_FILE = "/etc/cron.d/tlops-idle-watchdog"
ENV_FILE = "/etc/tlops/idle-watchdog.env"
LOG_FILE = "/var/log/tlops/idle-watchdog.log"
STATE_DIR = "/var/lib/tlops/watcher"
STANDIN = "/opt/stand-in/bin/python /opt/stand-in/standin.py"
CTL = "/usr/bin/supervisorctl -c /etc/tlops/supervisord.conf"
IDLE_MINUTES = 2
LIMIT_MS = IDLE_MINUTES * 60_000


def standin(host, *args: str) -> str:
    return host.check_output(f"{STANDIN} {' '.join(args)}").strip()


def now_ms(host) -> int:
    return int(host.check_output("date +%s%3N"))


def cron_entry(host) -> tuple[list[str], str, str]:
    """The crontab's one job: its schedule, its user and its command."""
    lines = [
        line
        for line in host.file(CRON_FILE).content_string.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1, lines
    fields = lines[0].split(None, 6)
    return fields[:5], fields[5], fields[6]


def log_lines(host) -> list[dict]:
    if not host.file(LOG_FILE).exists:
        return []
    return [json.loads(line) for line in host.file(LOG_FILE).content_string.splitlines() if line]


def decisions_since(host, count: int) -> list[dict]:
    return [line for line in log_lines(host)[count:] if "decision" in line]


def tick(host, *, background: bool = False) -> int:
    """Run the crontab's command as cron does; returns the log's length before it."""
    _, user, command = cron_entry(host)
    before = len(log_lines(host))
    as_cron = "env -i PATH=/usr/bin:/bin /usr/sbin/runuser"
    run = f"{as_cron} -u {user} -- /bin/sh -c {shlex.quote(command)}"
    if background:
        run = f"setsid {run} </dev/null >/dev/null 2>&1 &"
    assert host.run(run).rc == 0
    return before


def set_activity(host, last_ms: int, idle_minutes: int | None = IDLE_MINUTES) -> None:
    """Write the activity file as the watcher does (its user, a rename)."""
    body = json.dumps({"last_activity_ms": last_ms, "idle_minutes": idle_minutes})
    script = (
        f"printf '%s\\n' {shlex.quote(body)} > {STATE_DIR}/.last_activity.tmp"
        f" && mv {STATE_DIR}/.last_activity.tmp {STATE_DIR}/last_activity"
    )
    assert host.run(f"/usr/sbin/runuser -u tlops -- /bin/sh -c {shlex.quote(script)}").rc == 0


@pytest.fixture(scope="module", autouse=True)
def quiet_node(host):
    """No watcher writing activity and an empty queue while the checks set the node's state."""
    assert host.run(f"{CTL} stop watcher").rc == 0
    host.run("redis-cli XGROUP SETID jobs watchers '$'")
    yield
    host.run(f"{CTL} start watcher")


@pytest.fixture
def running_node(host) -> None:
    assert standin(host, "start", "node") == "running"


def test_the_crontab_ticks_the_watchdog_every_minute_as_its_user(host):
    cron = host.file(CRON_FILE)
    assert cron.user == "root"
    assert cron.mode == 0o644  # cron ignores group- or world-writable files
    schedule, user, command = cron_entry(host)
    assert schedule == ["*"] * 5
    assert user == "tlops"
    assert f"{ENV_FILE}" in command
    assert "-m tlops.node.watchdog tick" in command
    assert host.service("cron").is_running
    assert host.service("cron").is_enabled


def test_its_settings_reach_the_stand_in_and_stay_private(host):
    env = host.file(ENV_FILE)
    assert env.user == "tlops"
    assert env.mode == 0o600
    settings = env.content_string
    for line in (
        "TL_WATCHDOG_IMDS_URL=http://127.0.0.1:8169",
        "TL_AWS_ENDPOINT_URL=http://127.0.0.1:5000",
        "TL_REDIS_URL=redis://127.0.0.1:6379/0",
        "TL_WATCHDOG_IDLE_MINUTES=5",
    ):
        assert line in settings.replace("'", ""), line


def test_cron_itself_runs_the_tick(host, eventually):
    # Before any tick of these checks: whatever is in the log, cron wrote it.
    assert eventually(lambda: decisions_since(host, 0), within_s=75), f"no tick in {LOG_FILE}"


def test_an_idle_node_is_not_stopped_before_its_idle_time(host, running_node):
    set_activity(host, now_ms(host))
    before = tick(host)
    last = decisions_since(host, before)[-1]
    assert last["decision"] == "idle", last
    assert last["limit_s"] == LIMIT_MS / 1000  # the newest job's idle, not the role's 5 minutes
    assert last["instance"] == standin(host, "ids", "node")
    assert standin(host, "state", "node") == "running"


def test_a_busy_node_is_not_stopped_however_long_ago_its_activity(host, running_node):
    set_activity(host, now_ms(host) - 10 * LIMIT_MS)
    host.check_output("redis-cli XADD jobs '*' job 00000000-0000-4000-8000-000000000000")
    try:
        before = tick(host)
        last = decisions_since(host, before)[-1]
        assert last["decision"] == "busy", last
        assert standin(host, "state", "node") == "running"
    finally:
        host.run("redis-cli XGROUP SETID jobs watchers '$'")


def test_an_idle_node_is_stopped_once_its_idle_time_has_passed(host, running_node):
    stops_before = int(standin(host, "autostops"))
    set_activity(host, now_ms(host) - LIMIT_MS - 1000)
    before = tick(host)
    stopped = [line for line in decisions_since(host, before) if line["decision"] == "stopped"]
    assert stopped, decisions_since(host, before)
    assert stopped[-1]["stopped_ms"] >= stopped[-1]["deadline_ms"]
    assert standin(host, "state", "node") == "stopped"
    assert standin(host, "state", "neighbour") == "running"  # its own instance only
    assert int(standin(host, "autostops")) == stops_before + 1


def test_a_deadline_between_two_ticks_is_kept_by_a_timer_not_before_it(
    host, running_node, eventually
):
    # The deadline falls 30 s after this tick starts, before the next cron tick: the tick
    # waits for it, then stops the instance at the deadline (not up to a minute late).
    set_activity(host, now_ms(host) - LIMIT_MS + 30_000)
    before = tick(host, background=True)
    armed = eventually(
        lambda: [
            d for d in decisions_since(host, before) if d["decision"] == "idle" and d["timer"]
        ],
        within_s=20,
    )
    assert armed, decisions_since(host, before)
    assert standin(host, "state", "node") == "running"  # waiting for the deadline
    stopped = eventually(
        lambda: [d for d in decisions_since(host, before) if d["decision"] == "stopped"],
        within_s=60,
    )
    assert stopped, decisions_since(host, before)
    assert stopped[-1]["deadline_ms"] == armed[0]["deadline_ms"]
    assert stopped[-1]["stopped_ms"] >= stopped[-1]["deadline_ms"]
    assert standin(host, "state", "node") == "stopped"

"""The idle watchdog's decision, each reason alone, and its settings."""

from __future__ import annotations

import pytest

from tlops.node.activity import Reading
from tlops.node.idle import Decision, Observation, decide
from tlops.node.watchdog import environment, parse_settings

MINUTE_MS = 60_000
NOW = 1_800_000_000_000
BASE = {"TL_REDIS_URL": "redis://127.0.0.1:6390/0", "TL_WATCHER_STATE_DIR": "/tmp/state"}


def seen(
    *,
    queued: int = 0,
    in_flight: int = 0,
    last: int | None = NOW - 10 * MINUTE_MS,
    idle: int | None = None,
    boot: int = 0,
    stopped: int | None = None,
    watcher: bool = True,
) -> Observation:
    reading = None if last is None else Reading(last, idle)
    return Observation(queued, in_flight, reading, boot, stopped, watcher)


def verdict(observation: Observation, *, now: int = NOW, default: int = 5):
    return decide(observation, now_ms=now, default_idle_minutes=default)


def test_a_queued_job_keeps_the_node_up_however_long_it_was_idle():
    result = verdict(seen(queued=2, last=NOW - 60 * MINUTE_MS))
    assert result.decision is Decision.BUSY
    assert result.reason == "busy: queued 2 / in flight 0"


def test_a_request_in_flight_keeps_the_node_up():
    result = verdict(seen(in_flight=1, watcher=True))
    assert (result.decision, result.reason) == (Decision.BUSY, "busy: queued 0 / in flight 1")


def test_queued_jobs_without_a_watcher_say_so():
    result = verdict(seen(queued=1, watcher=False))
    assert result.decision is Decision.BUSY
    assert result.reason.endswith("no watcher heartbeat")


def test_idle_less_than_the_default_is_not_yet():
    result = verdict(seen(last=NOW - 4 * MINUTE_MS))
    assert result.decision is Decision.IDLE
    assert result.reason == "idle for 240.0 s of 300 s"
    assert result.deadline_ms == NOW + MINUTE_MS


def test_idle_past_the_default_is_due():
    result = verdict(seen(last=NOW - 5 * MINUTE_MS - 1))
    assert result.decision is Decision.STOP
    assert result.deadline_ms == NOW - 1
    assert result.idle_ms == 5 * MINUTE_MS + 1


def test_the_deadline_itself_is_due():
    assert verdict(seen(last=NOW - 5 * MINUTE_MS)).decision is Decision.STOP


def test_the_newest_jobs_idle_overrides_the_default_both_ways():
    assert verdict(seen(last=NOW - 2 * MINUTE_MS, idle=1)).decision is Decision.STOP
    assert verdict(seen(last=NOW - 20 * MINUTE_MS, idle=30)).decision is Decision.IDLE
    assert verdict(seen(last=NOW - 20 * MINUTE_MS, idle=30)).limit_ms == 30 * MINUTE_MS


def test_the_configured_default_applies_when_no_job_said():
    assert verdict(seen(last=NOW - 2 * MINUTE_MS), default=1).decision is Decision.STOP
    assert verdict(seen(last=NOW - 2 * MINUTE_MS), default=3).decision is Decision.IDLE


def test_a_boot_after_the_last_activity_restarts_the_idle_time():
    result = verdict(seen(last=NOW - 60 * MINUTE_MS, boot=NOW - MINUTE_MS))
    assert result.decision is Decision.IDLE
    assert result.deadline_ms == NOW + 4 * MINUTE_MS


def test_no_activity_file_counts_from_the_boot():
    assert verdict(seen(last=None, boot=NOW - MINUTE_MS)).decision is Decision.IDLE
    assert verdict(seen(last=None, boot=NOW - 6 * MINUTE_MS)).decision is Decision.STOP


def test_a_stop_already_made_for_this_deadline_is_not_made_again():
    deadline = NOW - MINUTE_MS
    result = verdict(seen(last=deadline - 5 * MINUTE_MS, stopped=deadline))
    assert result.decision is Decision.STOPPED
    # a later deadline (new activity since that stop) is a new stop
    other = verdict(seen(last=deadline - 5 * MINUTE_MS + 1, stopped=deadline))
    assert other.decision is Decision.STOP


def test_a_scaled_minute_scales_the_idle_time():
    result = decide(seen(last=NOW - 1500, idle=2), now_ms=NOW, default_idle_minutes=5, minute_s=1)
    assert (result.decision, result.limit_ms, result.deadline_ms) == (
        Decision.IDLE,
        2000,
        NOW + 500,
    )


# --- settings --------------------------------------------------------------------------
def test_settings_come_from_the_environment_with_defaults():
    settings = parse_settings([], BASE)
    assert settings.idle_minutes == 5
    assert settings.imds_url == "http://169.254.169.254"
    assert settings.minute_s == 60.0
    assert settings.project == "tinyllama"
    assert str(settings.lock_dir) == "/tmp/state"


def test_flags_win_over_the_environment():
    settings = parse_settings(["--idle-minutes", "7"], {**BASE, "TL_WATCHDOG_IDLE_MINUTES": "3"})
    assert settings.idle_minutes == 7


def test_environment_is_the_table_read_backwards():
    env = environment(
        redis_url="redis://h:1/0",
        state_dir="/s",
        idle_minutes=9,
        imds_url="http://127.0.0.1:8169",
        own_state_dir=None,
    )
    assert env == {
        "TL_REDIS_URL": "redis://h:1/0",
        "TL_WATCHER_STATE_DIR": "/s",
        "TL_WATCHDOG_IDLE_MINUTES": "9",
        "TL_WATCHDOG_IMDS_URL": "http://127.0.0.1:8169",
    }
    settings = parse_settings([], env)
    assert (settings.idle_minutes, settings.imds_url) == (9, "http://127.0.0.1:8169")
    with pytest.raises(TypeError, match="not watchdog settings: idle"):
        environment(idle=5)


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("TL_WATCHDOG_IDLE_MINUTES", "0", "TL_WATCHDOG_IDLE_MINUTES must be 1-30 minutes, got 0"),
        ("TL_WATCHDOG_IDLE_MINUTES", "31", "TL_WATCHDOG_IDLE_MINUTES must be 1-30"),
        ("TL_WATCHDOG_IDLE_MINUTES", "five", "TL_WATCHDOG_IDLE_MINUTES must be a whole number"),
        ("TL_WATCHDOG_IMDS_URL", "169.254.169.254", "TL_WATCHDOG_IMDS_URL must be http://"),
        ("TL_WATCHDOG_IMDS_URL", "https://169.254.169.254", "TL_WATCHDOG_IMDS_URL must be"),
        ("TL_WATCHDOG_IMDS_URL", "http://h:port", "TL_WATCHDOG_IMDS_URL must be"),
        ("TL_REDIS_URL", "localhost:6379", "TL_REDIS_URL must be a redis or rediss URL"),
        ("TL_AWS_ENDPOINT_URL", "moto", "TL_AWS_ENDPOINT_URL must be a http or https URL"),
        ("TL_WATCHDOG_MINUTE_SECONDS", "0", "TL_WATCHDOG_MINUTE_SECONDS must be from 0.05"),
    ],
)
def test_a_bad_setting_exits_2_naming_it(capsys, name, value, named):
    with pytest.raises(SystemExit) as exited:
        parse_settings([], {**BASE, name: value})
    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_a_bad_flag_is_named_as_the_flag(capsys):
    with pytest.raises(SystemExit) as exited:
        parse_settings(["--idle-minutes", "31"], BASE)
    assert exited.value.code == 2
    assert "--idle-minutes must be 1-30 minutes, got 31" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["TL_REDIS_URL", "TL_WATCHER_STATE_DIR"])
def test_required_settings_are_named_when_missing(capsys, missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(SystemExit) as exited:
        parse_settings([], env)
    assert exited.value.code == 2
    assert f"or {missing} is required" in capsys.readouterr().err


def test_the_command_line_exits_2_on_a_bad_setting(capsys, monkeypatch):
    from tlops.node import watchdog

    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TL_WATCHDOG_IDLE_MINUTES", "0")
    with pytest.raises(SystemExit) as exited:
        watchdog.main(["tick"])
    assert exited.value.code == 2
    assert "TL_WATCHDOG_IDLE_MINUTES must be 1-30" in capsys.readouterr().err

"""The cold-boot ETA model and what a queued job's view says of a boot (tlops.contract.boot)."""

from __future__ import annotations

import pytest

from tlops.contract import boot

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("times", "median"),
    [([], None), ([7], 7.0), ([3, 1, 2], 2.0), ([40, 20, 60, 30], 35.0), ([5, 5, 500], 5.0)],
)
def test_median(times, median):
    assert boot.median_ms(times) == median


def test_the_configured_eta_stands_until_a_boot_was_measured():
    assert boot.eta_seconds([], 90) == 90
    assert boot.eta_seconds([61_001], 90) == 62  # rounded up: never promise too early


def test_a_boot_under_way_gets_what_is_left_and_never_less_than_a_second():
    assert boot.eta_seconds([50_000], 90, elapsed_ms=30_000) == 20
    assert boot.eta_seconds([50_000], 90, elapsed_ms=80_000) == 1
    assert boot.eta_seconds([], 90, elapsed_ms=-5_000) == 90  # a clock behind counts nothing


def test_boot_times_that_are_not_integers_are_skipped():
    assert boot.parse_times(["1200", b"800", "x", "-5", 300]) == [1200, 800, 300]


@pytest.mark.parametrize(
    ("record", "shown"),
    [
        ({}, None),
        ({"phase": "loading model", "since_ms": str(NOW - 1000)}, "loading model"),
        ({"phase": "starting instance", "since_ms": str(NOW)}, "starting instance"),
        ({"phase": "ready", "since_ms": str(NOW)}, None),
        ({"phase": "stopped", "since_ms": str(NOW)}, None),
        ({"phase": "loading model", "since_ms": "soon"}, None),
        ({"phase": "loading model", "since_ms": str(NOW - boot.STALE_AFTER_MS - 1)}, None),
    ],
)
def test_only_a_boot_under_way_and_recent_is_shown(record, shown):
    assert boot.current_phase(record, NOW) == shown

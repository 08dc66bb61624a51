"""The activity file: the last activity and the newest job's idle minutes, as JSON, atomically."""

from __future__ import annotations

import json

import pytest

from tlops.node import activity
from tlops.node.activity import Activity, Reading


def test_the_file_holds_the_last_activity_and_the_newest_jobs_idle(tmp_path):
    marks = Activity(tmp_path)
    marks.mark(1_000, idle=7)
    marks.flush()
    assert json.loads((tmp_path / "last_activity").read_text()) == {
        "last_activity_ms": 1_000,
        "idle_minutes": 7,
    }
    assert activity.read(tmp_path) == Reading(1_000, 7)
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed


def test_a_mark_without_idle_keeps_the_newest_jobs(tmp_path):
    marks = Activity(tmp_path)
    marks.mark(1_000, idle=3)
    marks.mark(2_000)  # a settle or a heartbeat: activity, no new job
    marks.flush()
    assert activity.read(tmp_path) == Reading(2_000, 3)


def test_a_change_of_idle_alone_is_written(tmp_path):
    marks = Activity(tmp_path)
    marks.mark(1_000, idle=3)
    marks.flush()
    marks.mark(1_000, idle=9)
    marks.flush()
    assert activity.read(tmp_path) == Reading(1_000, 9)


def test_nothing_changed_means_no_write(tmp_path):
    marks = Activity(tmp_path)
    marks.mark(1_000)
    marks.flush()
    (tmp_path / "last_activity").unlink()
    marks.flush()
    assert not (tmp_path / "last_activity").exists()
    marks.flush(force=True)
    assert activity.read(tmp_path) == Reading(1_000, None)


def test_no_file_reads_as_none(tmp_path):
    assert activity.read(tmp_path) is None


def test_the_older_bare_number_is_still_read(tmp_path):
    (tmp_path / "last_activity").write_text("1234\n")
    assert activity.read(tmp_path) == Reading(1234, None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1]",
        '{"idle_minutes": 5}',
        '{"last_activity_ms": "1", "idle_minutes": 5}',
        '{"last_activity_ms": true}',
        '{"last_activity_ms": 1, "idle_minutes": 0}',
        '{"last_activity_ms": 1, "idle_minutes": 31}',
        '{"last_activity_ms": 1, "idle_minutes": 5.5}',
    ],
)
def test_anything_else_is_unreadable(tmp_path, text):
    (tmp_path / "last_activity").write_text(text)
    with pytest.raises(activity.Unreadable, match="last_activity"):
        activity.read(tmp_path)


@pytest.mark.parametrize(
    ("record", "idle"),
    [
        ({"idle": "5"}, 5),
        ({"idle": "30"}, 30),
        ({"idle": "31"}, None),
        ({"idle": "x"}, None),
        ({}, None),
    ],
)
def test_a_records_idle_is_taken_only_within_the_contract(record, idle):
    assert activity.idle_of(record) == idle

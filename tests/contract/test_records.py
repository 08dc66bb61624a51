"""The job record's transitions (tlops.contract.records) and the typed S3 result."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tlops.contract import JobStatus, new_job_id, records
from tlops.contract.records import FINISHED, TRANSITIONS, Field
from tlops.contract.request import InferRequest
from tlops.contract.results import JobResult


# --- transitions ---------------------------------------------------------------------
def test_every_status_has_its_transitions_and_final_ones_have_none():
    assert set(TRANSITIONS) == {None, *JobStatus}
    for status in FINISHED:
        assert TRANSITIONS[status] == frozenset()
    assert JobStatus.RUNNING in TRANSITIONS[JobStatus.RUNNING]  # a redelivery


@pytest.mark.parametrize(
    ("before", "fields"),
    [
        (None, records.queued(InferRequest(prompt="p"), sub="s", job_id="j", reply_bucket="b")),
        (JobStatus.QUEUED, records.not_booted("instance_unavailable: no capacity")),
        (JobStatus.RUNNING, records.finished(JobStatus.DONE, sub="s", finished_ms=1)),
        (JobStatus.RUNNING, records.finished(JobStatus.FAILED, sub="s", finished_ms=1, error="x")),
        (JobStatus.RUNNING, records.returned()),
        (None, records.expired(sub="s", finished_ms=1)),
    ],
)
def test_each_transition_writes_a_status_its_state_may_become(before, fields):
    assert JobStatus(fields[Field.STATUS]) in TRANSITIONS[before]
    assert all(isinstance(value, str) for value in fields.values())
    assert set(fields) <= {field.value for field in Field}


def test_a_delivery_settles_only_as_done_failed_or_cancelled():
    with pytest.raises(ValueError, match="done, failed or cancelled"):
        records.finished(JobStatus.EXPIRED, sub="s", finished_ms=1)
    assert records.finished(JobStatus.CANCELLED, sub="s", finished_ms=1)["status"] == "cancelled"


def test_left_pending_keeps_the_status_and_records_the_reason():
    assert records.left_pending("S3 down") == {"error": "S3 down"}


def test_finished_fields_carry_owner_time_and_error():
    assert records.finished(JobStatus.FAILED, sub="alice", finished_ms=42, error="boom") == {
        "status": "failed",
        "sub": "alice",
        "finished_ts": "42",
        "error": "boom",
    }


def test_the_dead_letter_entry_names_job_owner_reason_and_deliveries():
    job_id = new_job_id()
    entry = records.dead_letter(job_id=job_id, sub="alice", reason="r", deliveries=3)
    assert entry == {"id": job_id, "sub": "alice", "reason": "r", "deliveries": "3"}


def test_lua_scripts_get_the_names_from_here():
    script = records.lua("HSET KEYS[1] '$status' '$running' '$attempts' 1 -- $entry_id $entry_sub")
    assert script == "HSET KEYS[1] 'status' 'running' 'attempts' 1 -- id sub"
    idem = records.lua("'$idem_job' '$idem_fingerprint'")
    assert idem == f"'{records.IDEM_JOB}' '{records.IDEM_FINGERPRINT}'"
    with pytest.raises(KeyError):
        records.lua("'$no_such_field'")


# --- the result in S3 ----------------------------------------------------------------
def test_job_result_fields_and_defaults():
    job_id = new_job_id()
    result = JobResult(
        id=job_id,
        status="done",
        queued_at_ms=1,
        started_at_ms=2,
        finished_at_ms=3,
    )
    assert result.status is JobStatus.DONE
    assert result.output == ""
    assert result.usage == {}
    assert result.model == ""
    assert result.latency_ms == 0.0
    assert result.error == ""
    assert result.finish_reason == ""
    dumped = result.model_dump(mode="json")
    assert dumped["status"] == "done"
    assert set(dumped) == {
        "id",
        "status",
        "output",
        "usage",
        "model",
        "latency_ms",
        "queued_at_ms",
        "started_at_ms",
        "finished_at_ms",
        "error",
        "finish_reason",  # why generation stopped (stop, length), as the server said
    }


def test_job_result_json_round_trip():
    result = JobResult(
        id=new_job_id(),
        status=JobStatus.DONE,
        output="42",
        usage={"prompt_tokens": 3, "completion_tokens": 1},
        model="tinyllama",
        latency_ms=12.5,
        queued_at_ms=1,
        started_at_ms=2,
        finished_at_ms=3,
    )
    assert JobResult.model_validate_json(result.model_dump_json()) == result


def test_job_result_requires_timestamps_and_valid_status():
    with pytest.raises(ValidationError):
        JobResult(id="x", status="done")
    with pytest.raises(ValidationError):
        JobResult(id="x", status="nope", queued_at_ms=1, started_at_ms=2, finished_at_ms=3)

"""Typed views of the stored job record and the S3 result (tlops.contract.records)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tlops.contract import InferRequest, JobStatus, new_job_id, queued_job_fields
from tlops.contract.records import JobRecord, JobResult


def make_record(**overrides) -> JobRecord:
    job_id = overrides.pop("id", new_job_id())
    values = {
        "id": job_id,
        "status": JobStatus.QUEUED,
        "sub": "sub-1",
        "prompt": "héllo\nworld",
        "idle": 5,
        "reply_s3": f"s3://b/sub-1/{job_id}.json",
        "ts": 1_700_000_000_123,
        **overrides,
    }
    return JobRecord(**values)


def test_to_hash_is_all_strings_without_id():
    record = make_record(max_tokens=64, temperature=0.7)
    fields = record.to_hash()
    assert "id" not in fields
    assert all(isinstance(value, str) for value in fields.values())
    assert fields["status"] == "queued"
    assert fields["idle"] == "5"
    assert fields["ts"] == "1700000000123"
    assert fields["attempts"] == "0"
    assert fields["error"] == ""
    assert fields["max_tokens"] == "64"
    assert float(fields["temperature"]) == 0.7


def test_to_hash_leaves_out_unset_optionals():
    fields = make_record().to_hash()
    assert "max_tokens" not in fields
    assert "temperature" not in fields


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"max_tokens": 4096, "temperature": 0.0},
        {"status": JobStatus.FAILED, "attempts": 3, "error": "boom"},
        {"status": JobStatus.DONE, "temperature": 1.25},
    ],
)
def test_from_hash_round_trips_to_hash(overrides):
    record = make_record(**overrides)
    again = JobRecord.from_hash(record.id, record.to_hash())
    assert again == record
    assert isinstance(again.idle, int)
    assert isinstance(again.ts, int)
    assert isinstance(again.status, JobStatus)


def test_from_hash_types_strings():
    job_id = new_job_id()
    record = JobRecord.from_hash(
        job_id,
        {
            "status": "running",
            "sub": "s",
            "prompt": "p",
            "idle": "30",
            "reply_s3": "s3://b/s/x.json",
            "ts": "42",
            "attempts": "2",
            "error": "",
            "max_tokens": "10",
            "temperature": "0.5",
        },
    )
    assert record.id == job_id
    assert record.status is JobStatus.RUNNING
    assert (record.idle, record.ts, record.attempts) == (30, 42, 2)
    assert record.max_tokens == 10
    assert record.temperature == 0.5


def test_from_hash_reads_what_the_contract_writes():
    job_id = new_job_id()
    fields = queued_job_fields(
        InferRequest(prompt="p", idle=9, max_tokens=5, temperature=0.3),
        sub="s",
        job_id=job_id,
        reply_bucket="b",
    )
    record = JobRecord.from_hash(job_id, {**fields, "ts": "1000"})
    assert record.status is JobStatus.QUEUED
    assert record.idle == 9
    assert record.max_tokens == 5
    assert record.temperature == 0.3
    assert record.reply_s3 == f"s3://b/s/{job_id}.json"


def test_from_hash_ignores_extra_fields():
    record = make_record()
    again = JobRecord.from_hash(record.id, {**record.to_hash(), "worker": "gpu-1"})
    assert again == record


@pytest.mark.parametrize("status", ["bogus", "QUEUED", ""])
def test_from_hash_rejects_unknown_status(status):
    record = make_record()
    with pytest.raises(ValidationError):
        JobRecord.from_hash(record.id, {**record.to_hash(), "status": status})


@pytest.mark.parametrize("missing", ["status", "sub", "prompt", "idle", "reply_s3", "ts"])
def test_from_hash_rejects_missing_required_field(missing):
    record = make_record()
    fields = record.to_hash()
    del fields[missing]
    with pytest.raises(ValidationError):
        JobRecord.from_hash(record.id, fields)


def test_from_hash_rejects_non_numeric_idle():
    record = make_record()
    with pytest.raises(ValidationError):
        JobRecord.from_hash(record.id, {**record.to_hash(), "idle": "five"})


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

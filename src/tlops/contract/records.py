"""Typed views of what the contract stores and returns: the job record and the result.

These are pydantic models for the long-running side (watcher, CLI, tests),
where validation of Redis and S3 contents is worth its import cost. Names and
statuses come from `tlops.contract`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tlops.contract import JobStatus


class JobRecord(BaseModel):
    """The Redis hash `job:{id}`. Hash values are strings on the wire; this is the typed view."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: JobStatus
    sub: str
    prompt: str
    idle: int
    reply_s3: str
    ts: int = Field(description="enqueue time, ms since the epoch")
    attempts: int = 0
    error: str = ""
    max_tokens: int | None = None
    temperature: float | None = None

    def to_hash(self) -> dict[str, str]:
        """Flatten to the string fields Redis stores; optional fields left out when unset."""
        fields = self.model_dump(exclude={"id"}, exclude_none=True, mode="json")
        return {name: str(value) for name, value in fields.items()}

    @classmethod
    def from_hash(cls, job_id: str, fields: dict[str, str]) -> JobRecord:
        return cls.model_validate({"id": job_id, **fields})


class JobResult(BaseModel):
    """The JSON written to `s3://{reply_bucket}/{sub}/{job_id}.json`."""

    id: str
    status: JobStatus
    output: str = ""
    usage: dict[str, int] = Field(default_factory=dict)
    model: str = ""
    latency_ms: float = 0.0
    queued_at_ms: int
    started_at_ms: int
    finished_at_ms: int
    error: str = ""

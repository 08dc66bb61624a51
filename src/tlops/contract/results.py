"""The result stored in S3, typed: a pydantic model for the long-running side.

The watcher writes it and the CLI reads it, where validating S3 contents is
worth pydantic's import cost; the router never imports this module.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from tlops.contract import JobStatus


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
    # The server's reason the generation ended ("stop", "length"); empty when it did not end
    # by itself (cancelled, failed).
    finish_reason: str = ""

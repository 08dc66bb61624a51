"""Job runners for measuring the watcher without an inference server."""

from __future__ import annotations

from tlops.contract import JobStatus
from tlops.contract.results import JobResult
from tlops.node.runner import Job, Progress, queued_ms


class NoopRunner:
    """Finishes every job at once with an empty output: measures the queue alone (bench)."""

    def run(self, job: Job, progress: Progress | None = None) -> JobResult:
        return JobResult(
            id=job.job_id,
            status=JobStatus.DONE,
            queued_at_ms=queued_ms(job),
            started_at_ms=job.started_ms,
            finished_at_ms=job.started_ms,
        )

    def store_failure(self, job: Job, result: JobResult) -> JobResult | None:
        """Nothing is stored for no-op jobs."""
        return None

"""The bodies the edge answers with; each error body carries one `ErrorCode`."""

from __future__ import annotations

from typing import Any

from tlops.contract import ErrorCode, JobStatus

STARTING = "starting"  # the 202 status when the request started the GPU node
WAKING = "waking"  # the 202 status when the stack slept: the job is held until the queue is back


def error_body(code: ErrorCode, **details: Any) -> dict[str, Any]:
    return {"error": str(code), **details}


def queued_body(job_id: str) -> dict[str, str]:
    return {"status": JobStatus.QUEUED.value, "id": job_id}


def starting_body(job_id: str, eta_seconds: int) -> dict[str, Any]:
    return {"status": STARTING, "eta": eta_seconds, "id": job_id}


def waking_body(job_id: str, eta_seconds: int) -> dict[str, Any]:
    return {"status": WAKING, "eta": eta_seconds, "id": job_id}

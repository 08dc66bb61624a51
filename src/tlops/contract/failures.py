"""What a failed job's `error` may say: a closed set of fixed sentences.

`GET /jobs/{id}` hands a job's `error` to its owner as it was recorded. The
exceptions behind a failure quote AWS (an AccessDenied names the caller's role
ARN, and so the account id), the inference server or Python; none of that is
the client's to read. The watcher records one of these sentences and logs the
detail next to the job id (docs/decisions.md, "AWS's words stay in the log").
"""

from __future__ import annotations

import enum


class FailureReason(enum.StrEnum):
    NOT_STORED = "the result could not be stored"
    INFERENCE_FAILED = "inference failed"
    PROMPT_REFUSED = "the inference server refused the prompt"
    UNUSABLE_RECORD = "the job's record could not be used"
    WATCHER_ERROR = "the watcher failed while running the job"
    LOST = "the watcher lost the job on every delivery"


def gave_up(reason: FailureReason | str, deliveries: int) -> str:
    """The reason of a job out of deliveries: the last delivery's reason, and how many."""
    return f"gave up after {deliveries} deliveries: {reason}"

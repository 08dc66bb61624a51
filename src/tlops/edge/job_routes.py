"""`GET /jobs` and `POST /jobs/{id}/cancel`: a user's list of jobs and the cancel of one.

Mixed into the router (`tlops.edge.router.Router`), whose Redis client, control
link and token check these routes use.
"""

from __future__ import annotations

from typing import Any

from tlops.contract import ErrorCode
from tlops.edge.lambda_http import Answer, Refusal


class JobRoutes:
    def list_jobs(self, event: dict[str, Any], rid: str) -> Answer:
        raise Refusal(404, ErrorCode.NOT_FOUND, route="GET /jobs")

    def cancel_job(self, event: dict[str, Any], rid: str) -> Answer:
        raise Refusal(404, ErrorCode.NOT_FOUND, route="POST /jobs/{id}/cancel")

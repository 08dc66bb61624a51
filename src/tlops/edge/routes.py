"""The HTTP API's routes, as the router dispatches them and the local gateway serves them.

The table below is generated from openapi.yaml (`tlops.tooling.routes`), the one
place routes are written down; the router role builds the deployed HTTP API
from the same file.
"""

from __future__ import annotations

from typing import NamedTuple


class Route(NamedTuple):
    method: str
    path: str  # segments in braces are path parameters: /jobs/{id}
    operation: str  # openapi.yaml's operationId: the router's dispatch name
    function: str  # the Lambda function behind it
    authorized: bool  # behind the JWT authorizer

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters when `path` fits this route's path; None when it does not."""
        want, got = self.path.strip("/").split("/"), path.strip("/").split("/")
        if len(want) != len(got):
            return None
        params = {}
        for pattern, part in zip(want, got, strict=True):
            if pattern.startswith("{") and pattern.endswith("}"):
                if not part:
                    return None
                params[pattern[1:-1]] = part
            elif pattern != part:
                return None
        return params


def method_name(operation: str) -> str:
    """getJob → get_job: the name of the method that serves an operation."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation)


def of_function(function: str) -> dict[str, str]:
    """Route key → operation for the routes behind `function`."""
    return {route.key: route.operation for route in ROUTES if route.function == function}


# --- generated from openapi.yaml by `make routes`; do not edit by hand ---
ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", "health", "router", authorized=False),
    Route("POST", "/infer", "infer", "router", authorized=True),
    Route("GET", "/jobs", "listJobs", "router", authorized=True),
    Route("GET", "/jobs/{id}", "getJob", "router", authorized=True),
    Route("POST", "/jobs/{id}/cancel", "cancelJob", "router", authorized=True),
    Route("GET", "/ping", "ping", "router", authorized=False),
    Route("GET", "/queue-health", "queueHealth", "queue_health", authorized=False),
    Route("POST", "/resize", "resizeNode", "router", authorized=True),
    Route("GET", "/resize/{operationId}", "getResize", "router", authorized=True),
    Route("GET", "/status", "getStatus", "router", authorized=True),
    Route("POST", "/stop", "stopNode", "router", authorized=True),
    Route("POST", "/v1/chat/completions", "createChatCompletion", "router", authorized=True),
    Route("GET", "/v1/models", "listModels", "router", authorized=True),
    Route("POST", "/v1/responses", "createResponse", "router", authorized=True),
    Route("GET", "/v1/responses/{id}", "getResponse", "router", authorized=True),
    Route("POST", "/v1/responses/{id}/cancel", "cancelResponse", "router", authorized=True),
)
# --- end of the generated table ---

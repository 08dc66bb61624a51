"""What tests of a Lambda share: its handler loaded as Lambda loads it, a sample event
from tests/events, and a context like Lambda's (the `lambda_context` fixture)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from tlops.local.relay import Context

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "tests" / "events"


def sample_event(name: str, *, token: str | None = None) -> dict[str, Any]:
    """tests/events/<name>.json, its Authorization header replaced by `token` when given."""
    event = json.loads((EVENTS / f"{name}.json").read_text())
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    return event


def load_handler(function: str) -> ModuleType:
    """lambda_src/<function>/handler.py as a fresh module (Lambda's handler `handler`)."""
    path = REPO / "lambda_src" / function / "handler.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{function}_handler", path)
    assert spec is not None and spec.loader is not None, f"no handler at {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LambdaContext(Context):
    """The stand-in relay's context (the time left), with the names Lambda's carries too."""

    def __init__(self, function: str = "test", timeout_s: float = 30.0):
        super().__init__(timeout_s)
        self.function_name = function
        self.aws_request_id = "00000000-0000-4000-8000-000000000000"
        self.memory_limit_in_mb = 256

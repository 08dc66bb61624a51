"""Fixtures every integration module may take without importing them itself."""

from .vllm_fixtures import vllm_server  # noqa: F401 - registered here: one server per run

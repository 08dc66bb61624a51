"""A real vLLM OpenAI server for the test run: one start per session, on a free port.

Any test module takes it by naming the `vllm_server` fixture (registered for the
whole directory in this package's conftest). It is ready only once it has
answered one real completion, and `VllmProcess.start` tries a second time if the
first start fails (a port taken between the check and the bind). There is no
skip: without the vLLM venv the fixture fails and says to run `make vllm`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from tlops.local import tiny_model, vllm
from tlops.local.services import ServiceError

__all__ = ["VllmServer", "vllm_server"]


@dataclasses.dataclass(frozen=True)
class VllmServer:
    """What a test needs to talk to the server: its base URL and the served model's name."""

    url: str
    model: str
    max_model_len: int = tiny_model.CONFIG["max_position_embeddings"]


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory) -> Iterator[VllmServer]:
    try:
        python = vllm.vllm_python()
        model_dir = vllm.build_tiny_model(python)
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    process = vllm.VllmProcess(
        tmp_path_factory.mktemp("vllm"), model_dir, python, tiny_model.MODEL_NAME
    )
    try:
        process.start()
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield VllmServer(url=process.url, model=process.model)
    finally:
        process.stop()

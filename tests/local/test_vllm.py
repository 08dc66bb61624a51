"""The local stack's inference server for real: vLLM's CPU build serving the tiny Llama.

These are the answers the watcher depends on: a completion with usage counts,
a chat job streamed through the watcher's own runner (the model's chat template,
server-sent events, the usage in the last chunk), the model listed under the
name the stack serves it as, and vLLM's own 400 for a prompt longer than the
model's context (the watcher turns that into a failed job instead of retrying it).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.support.vllm_fixtures import VllmServer
from tlops.contract.results import JobResult
from tlops.local import tiny_model, vllm
from tlops.local.services import ServiceError
from tlops.node.runner import Job, OpenAIRunner
from tlops.node.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=2)]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_the_model_is_listed_under_its_served_name(vllm_server: VllmServer):
    models = get_json(vllm_server.url + "/v1/models")
    assert [m["id"] for m in models["data"]] == [tiny_model.MODEL_NAME]
    assert models["data"][0]["max_model_len"] == vllm_server.max_model_len


class StoredResults:
    """The runner's S3 calls on a dict: the result is what this test reads, not S3."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def put_object(self, *, Body: bytes, **_: object) -> dict:
        self.bodies.append(Body)
        return {}


def test_a_completion_and_a_streamed_chat_come_back_with_their_token_counts(
    vllm_server: VllmServer,
):
    answer = vllm.post_completion(
        vllm_server.url, vllm_server.model, "Tell me a story", max_tokens=8
    )
    [choice] = answer["choices"]
    assert isinstance(choice["text"], str)
    assert answer["model"] == tiny_model.MODEL_NAME
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 0
    # random weights may pick the end token early, never more than asked
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    # A chat job as the watcher runs it: streamed from /v1/chat/completions.
    stored, published = StoredResults(), []
    settings = Settings(redis_url="redis://unused", inference_url=vllm_server.url,
                        model=vllm_server.model, partial_tokens=1)  # fmt: skip
    record = {
        "reply_s3": "s3://replies/u/j.json",
        "max_tokens": "8",
        "messages": json.dumps([{"role": "user", "content": "Tell me a story"}]),
    }
    OpenAIRunner(settings, s3=stored).run(
        Job("1-0", "j", "u", record, 1), lambda text: published.append(text) or False
    )  # fmt: skip
    [body] = stored.bodies
    result = JobResult.model_validate_json(body)
    assert (result.status, result.model) == ("done", tiny_model.MODEL_NAME)
    assert result.finish_reason in ("stop", "length")
    assert 1 <= result.usage["completion_tokens"] <= 8
    assert result.usage["prompt_tokens"] > 0  # the chat template's tokens and the message's
    assert all(result.output.startswith(text) for text in published)


def test_concurrent_completions_all_answer(vllm_server: VllmServer):
    """The watcher keeps several requests in flight; vLLM batches them."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = [f"Question number {i}?" for i in range(8)]
    with ThreadPoolExecutor(len(prompts)) as pool:
        answers = list(
            pool.map(
                lambda p: vllm.post_completion(vllm_server.url, vllm_server.model, p, 4),
                prompts,
            )
        )
    assert all(a["usage"]["completion_tokens"] >= 1 for a in answers)
    assert len({a["id"] for a in answers}) == len(prompts)


def test_a_prompt_too_long_for_the_model_is_refused_with_vllms_400(vllm_server: VllmServer):
    prompt = "word " * (vllm_server.max_model_len + 50)  # well over 256 tokens
    with pytest.raises(urllib.error.HTTPError) as raised:
        vllm.post_completion(vllm_server.url, vllm_server.model, prompt, max_tokens=4)
    assert raised.value.code == 400
    error = json.loads(raised.value.read())["error"]
    assert f"maximum context length is {vllm_server.max_model_len} tokens" in error["message"]
    # the server stays healthy for the next request
    assert vllm.completion_ok(vllm_server.url, vllm_server.model)


def test_the_tiny_model_build_is_cached_and_deterministic(vllm_server: VllmServer, tmp_path):
    """The session's model came from the cache; a fresh build has the same recipe stamp."""
    python = vllm.vllm_python()
    cached = vllm.model_cache_dir() / tiny_model.MODEL_NAME
    assert tiny_model.is_built(cached)
    assert vllm.build_tiny_model(python) == cached  # a hit: nothing rebuilt
    fresh = vllm.build_tiny_model(python, tmp_path / "model")
    for name in ("model.safetensors", "tokenizer.json", "config.json", tiny_model.STAMP_FILE):
        assert (fresh / name).read_bytes() == (cached / name).read_bytes(), name


def test_without_the_vllm_venv_the_error_says_what_to_run(monkeypatch, tmp_path):
    monkeypatch.setenv("TLOPS_VLLM_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(ServiceError, match=r"make vllm.*--no-inference"):
        vllm.vllm_python()

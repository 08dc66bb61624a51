"""The official `openai` Python SDK against the local gateway over HTTP (issue 21, item 6).

`OpenAI(base_url=<gateway>/v1, api_key=<ID token>)`, as docs/api.md tells a user, in
front of the real router, Redis, the moto S3 and a real watcher process running jobs on
the inference double (vLLM's chat route, streamed). What is checked is what an app sees
through the SDK: its typed objects and its typed errors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import openai
import pytest
from openai import OpenAI

from tests.doubles.inference import InferenceDouble
from tests.support.gateway_fixtures import *  # noqa: F403 - the fixtures
from tests.support.gateway_fixtures import LiveGateway
from tests.support.watcher_fixtures import WatcherProcess, make_bucket, wait_for
from tlops import contract
from tlops.contract.control import Action

pytestmark = pytest.mark.integration

MODEL = "tinyllama-1.1b-chat"  # the name vLLM serves by default (roles/vllm)
HELLO = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def sdk(gateway: LiveGateway, token) -> Callable[..., OpenAI]:
    """`sdk(**options)`: the SDK pointed at the gateway, with a new user's ID token as its
    key unless `api_key` is given."""

    def make(**options) -> OpenAI:
        options.setdefault("api_key", token())
        return OpenAI(base_url=f"{gateway.url}/v1", **options)

    return make


@pytest.fixture
def node(tmp_path, redis_url, aws_stand_in) -> Iterator[Callable[[], WatcherProcess]]:
    """`node()` starts the node's part: a watcher (whose heartbeat says the node is awake)
    in front of the inference double, storing results in the reply bucket."""
    make_bucket()
    started: list[WatcherProcess] = []
    with InferenceDouble(tokens=4) as double:

        def start() -> WatcherProcess:
            watcher = WatcherProcess(tmp_path, redis_url, double.url, "--visibility-timeout", "5")
            started.append(watcher.start())
            return watcher

        yield start
        for watcher in started:
            watcher.stop()


def awake(redis_client) -> bool:
    return redis_client.exists(contract.HEARTBEAT_KEY) == 1


def test_models_a_chat_completion_and_a_background_response(sdk, node, redis_client):
    node()
    wait_for(lambda: awake(redis_client), "the watcher's heartbeat")
    client = sdk()
    assert [model.id for model in client.models.list()] == [MODEL]

    completion = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens >= 1

    response = client.responses.create(model=MODEL, input="Say hi", background=True)
    assert (response.status, response.output_text) == ("queued", "")
    deadline = time.monotonic() + 10
    while response.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.1)
        response = client.responses.retrieve(response.id)
    assert response.status == "completed"
    assert response.output_text


def test_a_background_response_cancelled(sdk, node_alive, redis_client):
    """Queued (the heartbeat says awake, no watcher takes it): the cancel keeps it from
    ever running, and reading it again says so."""
    client = sdk()
    response = client.responses.create(model=MODEL, input="Say hi", background=True)
    assert client.responses.cancel(response.id).status == "cancelled"
    assert client.responses.retrieve(response.id).status == "cancelled"
    job_id = response.id.removeprefix("resp_")
    assert redis_client.hget(contract.job_key(job_id), "status") == "cancelled"


def test_a_cold_chat_completion_comes_through_the_sdks_retries(
    sdk, gateway, node, redis_client, relay, monkeypatch
):
    """No node awake: the first answers are 503 with Retry-After (the boot's ETA, 1 s here)
    and queue nothing; the wake request starts the node, and a retry gets the answer. One
    job ran, however many tries it took."""
    monkeypatch.setenv("TL_COLD_BOOT_ETA_S", "1")

    def boot_on_wake() -> None:
        deadline = time.monotonic() + 15
        while not relay.requests(Action.WAKE) and time.monotonic() < deadline:
            time.sleep(0.05)
        node()

    threading.Thread(target=boot_on_wake, daemon=True).start()
    client = sdk(max_retries=10)
    completion = client.chat.completions.create(model=MODEL, messages=HELLO)
    assert completion.choices[0].message.content
    wait_for(lambda: 200 in [r["status"] for r in gateway.access_records()], "the 200's log line")
    answers = [r["status"] for r in gateway.access_records()]
    assert answers[0] == 503 and answers[-1] == 200, answers
    assert redis_client.xlen(contract.JOB_STREAM) == 1


def test_401_403_and_429_are_the_sdks_typed_errors(sdk, node_alive, monkeypatch):
    monkeypatch.setenv("TL_RATE_BURST", "1")
    with pytest.raises(openai.AuthenticationError) as no_token:
        sdk().models.list(extra_headers={"Authorization": openai.omit})  # sent without a token
    assert no_token.value.status_code == 401
    with pytest.raises(openai.PermissionDeniedError) as forged:
        sdk(api_key="not.a.token").models.list()
    assert forged.value.status_code == 403

    client = sdk(max_retries=0)
    client.responses.create(model=MODEL, input="Say hi", background=True)
    with pytest.raises(openai.RateLimitError) as limited:
        client.responses.create(model=MODEL, input="Say hi again", background=True)
    assert limited.value.code == "rate_limited"
    assert int(limited.value.response.headers["retry-after"]) >= 1

"""The node's callers of vLLM send its key: vLLM with VLLM_API_KEY answers 401 to any /v1
request without `Authorization: Bearer <key>` (issue 20, item 1). The watcher's runner and
the boot reporter's readiness probe, against an inference double that asks for the key as
vLLM does."""

from __future__ import annotations

import uuid

import pytest

from tests.doubles.inference import InferenceDouble
from tlops.node import boot
from tlops.node.runner import Job, OpenAIRunner, Transient
from tlops.node.settings import Settings, parse_settings

KEY = "the-deployments-key-0123456789abcdefghij"


class S3Double:
    """put_object and get_object on a dict: enough for the runner's conditional write."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **_: object) -> dict:
        self.objects[(Bucket, Key)] = Body
        return {}


def job() -> Job:
    job_id = str(uuid.uuid4())
    record = {"reply_s3": f"s3://replies/alice/{job_id}.json", "prompt": "hi", "ts": "1"}
    return Job("1-0", job_id, "alice", record, 1, 1)


def runner(url: str, key: str) -> tuple[OpenAIRunner, S3Double]:
    s3 = S3Double()
    settings = Settings(redis_url="redis://unused", inference_url=url, inference_api_key=key)
    return OpenAIRunner(settings, s3=s3), s3


def test_the_runner_sends_the_key_to_list_models_and_to_complete():
    with InferenceDouble(api_key=KEY) as inference:
        run, s3 = runner(inference.url, KEY)
        result = run.run(job())  # no model configured: it asks /v1/models first
    assert result.output and inference.completed == 1 and inference.model_lookups == 1
    assert inference.unauthorized == 0 and len(s3.objects) == 1


def test_a_key_vllm_does_not_take_is_a_setup_fault_retried_not_the_prompts():
    with InferenceDouble(api_key=KEY, model="m") as inference:
        run, s3 = runner(inference.url, "another-key-0123456789abcdefghijklmno")
        run._model = "m"
        with pytest.raises(Transient, match="401"):
            run.run(job())
    assert inference.unauthorized == 1 and not s3.objects


def test_the_watchers_key_comes_from_the_environment_only():
    settings = parse_settings([], {"TL_REDIS_URL": "redis://q:6379/0", "TL_INFERENCE_API_KEY": KEY})
    assert settings.inference_api_key == KEY
    with pytest.raises(SystemExit):  # no flag: a key in argv would show in the process list
        parse_settings(["--inference-api-key", KEY], {"TL_REDIS_URL": "redis://q:6379/0"})


def test_the_boot_reporters_probe_sends_the_key():
    with InferenceDouble(api_key=KEY) as inference:
        env = boot.environment(redis_url="redis://unused", inference_url=inference.url,
                               inference_api_key=KEY)  # fmt: skip
        settings = boot.BootSettings.from_env(env)
        assert boot.completion_ok(settings)  # the model from /v1/models, then a completion
        assert KEY not in repr(settings)
        without = boot.BootSettings.from_env({**env, "TL_INFERENCE_API_KEY": ""})
        assert not boot.completion_ok(without)
    assert inference.completed == 1 and inference.unauthorized == 1

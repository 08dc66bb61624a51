"""The OpenAI-compatible `/v1` routes through the router: real redis-server, the moto S3,
test-signed tokens (issue 21, item 5).

Expected shapes are OpenAI's documented ones (the error object, Response, chat.completion,
the model list) and the issue's: every bad input a 400 naming its param, the not-awake
503 with Retry-After = min(ETA, 30) that queues nothing. Where a job must run, a thread
settles its record and result the way the watcher writes them (tests/local/test_openai_sdk.py
runs the real watcher behind the real SDK).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from tests.conftest import http_event
from tests.edge.test_openapi import check_against_spec
from tests.support.gateway_fixtures import Reply as GatewayReply
from tests.support.role_templates import trusted
from tests.support.router_fixtures import *  # noqa: F403 - the fixtures
from tlops import contract
from tlops.common import aws
from tlops.common.settings_table import ConfigError
from tlops.contract.control import Action
from tlops.edge.auth import compact_jwks
from tlops.edge.router import Router, RouterConfig

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REPLY_BUCKET = "replies-test"  # what conftest.router_env sets
MODEL = "tinyllama-1.1b-chat"  # roles/vllm and roles/ami_bake: the name vLLM serves by default
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}]}


# --- helpers --------------------------------------------------------------------------
class Reply:
    def __init__(self, answer: dict[str, Any]):
        self.status = answer["statusCode"]
        self.headers = answer["headers"]
        self.body = json.loads(answer["body"])


SPEC = yaml.safe_load((REPO / "openapi.yaml").read_text())


def call(
    router: Router,
    method: str,
    route: str,
    *,
    token: str | None,
    body: Any = None,
    response_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    path = route.replace("{id}", response_id or "")
    raw = None if body is None else body if isinstance(body, str) else json.dumps(body)
    event = http_event(method, path, body=raw, token=token, headers=headers)
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {route}"
    if response_id is not None:
        event["pathParameters"] = {"id": response_id}
    reply = Reply(router.handle(event))
    # every answer is one openapi.yaml documents, with its body and headers
    check_against_spec(SPEC, method, route, GatewayReply(reply.status, reply.headers, reply.body))
    return reply


def chat(router: Router, token: str, body: Any = None) -> Reply:
    return call(router, "POST", "/v1/chat/completions", token=token, body=body or CHAT)


def create(router: Router, token: str, **fields: Any) -> Reply:
    body = {"model": MODEL, "input": "Say hi", "background": True, **fields}
    return call(router, "POST", "/v1/responses", token=token, body=body)


def retrieve(router: Router, token: str, response_id: str) -> Reply:
    return call(router, "GET", "/v1/responses/{id}", token=token, response_id=response_id)


def openai_error(reply: Reply) -> dict[str, Any]:
    """The error object, checked to be exactly OpenAI's four fields."""
    assert set(reply.body) == {"error"}, reply.body
    assert set(reply.body["error"]) == {"message", "type", "code", "param"}, reply.body
    assert reply.body["error"]["message"]
    return reply.body["error"]


def queued_nothing(redis_client) -> bool:
    return redis_client.xlen(contract.JOB_STREAM) == 0 and not redis_client.keys("job:*")


def settle(redis_client, job_id: str, status: str, **result: Any) -> None:
    """What the watcher leaves: the result object in S3, then the record's final status."""
    key = contract.job_key(job_id)
    bucket, s3_key = contract.split_s3_uri(redis_client.hget(key, "reply_s3"))
    stored = {
        "id": job_id,
        "status": status,
        "output": "",
        "usage": {},
        "model": MODEL,
        "queued_at_ms": 1,
        "started_at_ms": 2,
        "finished_at_ms": 3,
        **result,
    }
    aws.client("s3").put_object(Bucket=bucket, Key=s3_key, Body=json.dumps(stored).encode())
    redis_client.hset(key, mapping={"status": status, "error": result.get("error", "")})


def settle_when_queued(redis_client, status: str, **result: Any) -> threading.Thread:
    """The watcher's part for the next job queued, in a thread: it settles it as `status`."""

    def run() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            entries = redis_client.xrange(contract.JOB_STREAM)
            if entries:
                settle(redis_client, entries[0][1]["id"], status, **result)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def replies(aws_stand_in) -> None:
    aws.client("s3").create_bucket(
        Bucket=REPLY_BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region()}
    )


@pytest.fixture
def configured(router_env, monkeypatch) -> Iterator:
    """`configured(NAME=value, ...)`: a router with those TL_ settings."""

    def make(**settings: str) -> Router:
        for name, value in settings.items():
            monkeypatch.setenv(f"TL_{name}", value)
        return Router(RouterConfig.from_env())

    yield make


# --- bad input: 400 naming the param, in OpenAI's shape ----------------------------------
TOOL = {"type": "function", "function": {"name": "f", "parameters": {}}}
BAD_CHATS = [
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": []}, "messages"),
    (
        {"messages": [{"role": "user", "content": "x" * (contract.PROMPT_MAX_BYTES + 1)}]},
        "messages",
    ),
    ({"messages": [{"role": "user", "content": "hi"}] * (contract.MESSAGES_MAX + 1)}, "messages"),
    (
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ]
        },
        "messages[0].content[0].type",
    ),
    ({"tools": [TOOL]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"functions": [TOOL["function"]]}, "functions"),
    (
        {"messages": [{"role": "assistant", "content": "", "tool_calls": []}]},
        "messages[0].tool_calls",
    ),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"n": 2}, "n"),
    ({"stream": True}, "stream"),
    ({"model": None}, "model"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": contract.MAX_TOKENS_LIMIT + 1}, "max_completion_tokens"),
    ({"temperature": 2.5}, "temperature"),
    ({"metadata": "x"}, "metadata"),
]
BAD_RESPONSES = [
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": []}, "input"),
    ({"input": ""}, "input"),
    ({"input": "x" * (contract.PROMPT_MAX_BYTES + 1)}, "input"),
    (
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
        "input[0].content[0].type",
    ),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "input[0].type"),
    ({"instructions": "x" * 4000, "input": "y" * 4000}, "input"),
    ({"instructions": 7}, "instructions"),
    ({"tools": [TOOL]}, "tools"),
    ({"stream": True}, "stream"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"background": "yes"}, "background"),
]


@pytest.mark.parametrize(("fields", "param"), BAD_CHATS, ids=[p for _, p in BAD_CHATS])
def test_a_bad_chat_completion_is_400_naming_the_param(
    router, heartbeat, keyset, redis_client, fields, param
):
    body = {**CHAT, **fields}
    if body["model"] is None:
        del body["model"]
    reply = chat(router, keyset.token(), body)
    assert reply.status == 400, reply.body
    error = openai_error(reply)
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert queued_nothing(redis_client)


@pytest.mark.parametrize(("fields", "param"), BAD_RESPONSES, ids=[p for _, p in BAD_RESPONSES])
def test_a_bad_response_request_is_400_naming_the_param(
    router, heartbeat, keyset, redis_client, fields, param
):
    reply = create(router, keyset.token(), **fields)
    assert reply.status == 400, reply.body
    error = openai_error(reply)
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert queued_nothing(redis_client)


def test_stream_on_the_sync_route_names_the_background_route(router, heartbeat, keyset):
    message = openai_error(chat(router, keyset.token(), {**CHAT, "stream": True}))["message"]
    assert "POST /v1/responses" in message and "background" in message


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/responses"])
def test_a_model_not_served_is_400_model_not_found(router, heartbeat, keyset, redis_client, route):
    body = {**CHAT, "model": "gpt-4o"}
    if route == "/v1/responses":
        body = {"model": "gpt-4o", "input": "hi"}
    reply = call(router, "POST", route, token=keyset.token(), body=body)
    assert reply.status == 400
    error = openai_error(reply)
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert MODEL in error["message"]
    assert queued_nothing(redis_client)


def test_models_lists_the_served_model(configured, keyset):
    reply = call(
        configured(SERVED_MODEL="tlops-tiny-llama"), "GET", "/v1/models", token=keyset.token()
    )
    assert reply.status == 200
    assert reply.body["object"] == "list"
    [card] = reply.body["data"]
    assert (card["id"], card["object"], card["owned_by"]) == (
        "tlops-tiny-llama",
        "model",
        "tinyllama-ops",
    )
    assert isinstance(card["created"], int)


# --- every router error in OpenAI's shape -----------------------------------------------
def test_errors_are_in_openai_shape_typed_by_status(configured, heartbeat, keyset, redis_client):
    router = configured(RATE_BURST="1")
    assert openai_error(call(router, "GET", "/v1/models", token=None))["type"] == (
        "authentication_error"
    )
    forged = keyset.token(iss="https://elsewhere.example")
    refused = openai_error(call(router, "GET", "/v1/models", token=forged))
    assert (refused["type"], refused["code"]) == ("permission_error", "invalid_token")
    user = keyset.token()
    other = create(router, keyset.token())
    missing = retrieve(router, user, other.body["id"])
    assert missing.status == 404
    assert openai_error(missing)["type"] == "not_found_error"
    plain = call(
        router,
        "POST",
        "/v1/responses",
        token=user,
        body="{}",
        headers={"content-type": "text/plain"},
    )
    assert (plain.status, openai_error(plain)["type"]) == (415, "invalid_request_error")
    assert create(router, user).status == 200
    limited = create(router, user)
    assert limited.status == 429
    assert openai_error(limited)["type"] == "rate_limit_error"
    assert int(limited.headers["retry-after"]) >= 1
    bad_id = retrieve(router, user, other.body["id"].removeprefix("resp_"))
    assert (bad_id.status, openai_error(bad_id)["param"]) == (400, "id")


# --- background responses --------------------------------------------------------------------
def test_a_background_response_is_a_job_followed_to_completion(
    router, heartbeat, keyset, redis_client, replies
):
    user = keyset.token()
    created = create(router, user, instructions="Be brief.", max_output_tokens=16)
    assert created.status == 200, created.body
    response = created.body
    assert response["id"].startswith("resp_")
    job_id = response["id"].removeprefix("resp_")
    assert contract.is_job_id(job_id)
    assert (response["object"], response["status"], response["output"]) == (
        "response",
        "queued",
        [],
    )
    assert (response["model"], response["background"]) == (MODEL, True)
    record = redis_client.hgetall(contract.job_key(job_id))
    assert json.loads(record["messages"]) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hi"},
    ]
    assert record["max_tokens"] == "16"

    redis_client.hset(contract.job_key(job_id), mapping={"status": "running", "partial": "Hel"})
    running = retrieve(router, user, response["id"]).body
    assert running["status"] == "in_progress"
    [message] = running["output"]
    assert (message["type"], message["role"], message["status"]) == (
        "message",
        "assistant",
        "in_progress",
    )
    assert message["content"] == [{"type": "output_text", "text": "Hel", "annotations": []}]

    settle(
        redis_client,
        job_id,
        "done",
        output="Hello!",
        usage={"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    )
    done = retrieve(router, user, response["id"]).body
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["text"] == "Hello!"
    assert done["output"][0]["status"] == "completed"
    assert {k: done["usage"][k] for k in ("input_tokens", "output_tokens", "total_tokens")} == {
        "input_tokens": 9,
        "output_tokens": 3,
        "total_tokens": 12,
    }
    assert done["created_at"] == int(record["ts"]) // 1000


def test_a_failed_background_response_says_why(router, heartbeat, keyset, redis_client, replies):
    user = keyset.token()
    response_id = create(router, user).body["id"]
    settle(redis_client, response_id.removeprefix("resp_"), "failed", error="inference failed")
    failed = retrieve(router, user, response_id).body
    assert (failed["status"], failed["error"]["message"]) == ("failed", "inference failed")


def test_cancel_a_queued_response_and_not_someone_elses(router, heartbeat, keyset, redis_client):
    owner, stranger = keyset.token(), keyset.token()
    response_id = create(router, owner).body["id"]
    job_key = contract.job_key(response_id.removeprefix("resp_"))
    path = "/v1/responses/{id}/cancel"
    refused = call(router, "POST", path, token=stranger, response_id=response_id)
    assert (refused.status, openai_error(refused)["type"]) == (404, "not_found_error")
    assert redis_client.hget(job_key, "status") == "queued"
    cancelled = call(router, "POST", path, token=owner, response_id=response_id)
    assert (cancelled.status, cancelled.body["status"]) == (200, "cancelled")
    assert redis_client.hget(job_key, "status") == "cancelled"
    again = call(router, "POST", path, token=owner, response_id=response_id)
    assert (again.status, again.body["status"]) == (200, "cancelled")


def test_reads_are_not_counted_against_the_submit_limit(
    configured, heartbeat, keyset, redis_client
):
    router = configured(RATE_BURST="1")
    user = keyset.token()
    response_id = create(router, user).body["id"]
    sub = redis_client.hget(contract.job_key(response_id.removeprefix("resp_")), "sub")
    for _ in range(3):
        assert retrieve(router, user, response_id).status == 200
        assert call(router, "GET", "/v1/models", token=user).status == 200
    assert redis_client.zcard(contract.rate_key(sub)) == 1


# --- chat completions: answered while the node is awake, else 503 with Retry-After -----------
def test_a_chat_completion_waits_for_its_job(router, heartbeat, keyset, redis_client, replies):
    settle_when_queued(
        redis_client,
        "done",
        output="Hi!",
        finish_reason="length",
        usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    )
    reply = chat(router, keyset.token(), {**CHAT, "max_completion_tokens": 2, "temperature": 0})
    assert reply.status == 200, reply.body
    completion = reply.body
    [entry] = redis_client.xrange(contract.JOB_STREAM)
    assert completion["id"] == f"chatcmpl-{entry[1]['id']}"
    assert (completion["object"], completion["model"]) == ("chat.completion", MODEL)
    assert completion["choices"] == [
        {
            "index": 0,
            "finish_reason": "length",
            "logprobs": None,
            "message": {"role": "assistant", "content": "Hi!"},
        }
    ]
    assert completion["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    record = redis_client.hgetall(contract.job_key(entry[1]["id"]))
    assert (record["max_tokens"], record["temperature"]) == ("2", "0.0")
    assert redis_client.zcard(contract.SYNC_WAITS_KEY) == 0  # the wait's slot given back


def test_a_response_without_background_is_answered_once_done(
    router, heartbeat, keyset, redis_client, replies
):
    settle_when_queued(redis_client, "done", output="Hello")
    reply = create(router, keyset.token(), background=False)
    assert reply.status == 200, reply.body
    assert (reply.body["status"], reply.body["background"]) == ("completed", False)
    assert reply.body["output"][0]["content"][0]["text"] == "Hello"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (
            "gave up after 1 deliveries: the inference server refused the prompt",
            400,
            "prompt_refused",
        ),
        ("inference failed", 422, "job_failed"),
    ],
)
def test_a_failed_chat_job_is_a_4xx_the_sdk_does_not_retry(
    router, heartbeat, keyset, redis_client, replies, error, status, code
):
    settle_when_queued(redis_client, "failed", error=error)
    reply = chat(router, keyset.token())
    assert reply.status == status
    assert (openai_error(reply)["code"], openai_error(reply)["message"]) == (code, error)


@pytest.mark.parametrize(("eta", "retry_after"), [("7", "7"), ("90", "30")])
def test_not_awake_is_503_retry_after_a_boot_and_queues_nothing(
    configured, keyset, redis_client, relay, eta, retry_after
):
    reply = chat(configured(COLD_BOOT_ETA_S=eta), keyset.token())
    assert reply.status == 503
    assert reply.headers["retry-after"] == retry_after
    assert openai_error(reply)["type"] == "service_unavailable"
    assert queued_nothing(redis_client)
    assert relay.requests(Action.WAKE)  # the node is being woken


def test_every_wait_taken_is_503_and_a_dead_routers_wait_expires(
    configured, heartbeat, keyset, redis_client
):
    router = configured(SYNC_WAITS_MAX="1", SYNC_WAIT_S="1")
    seconds, micros = redis_client.time()
    now_ms = seconds * 1000 + micros // 1000
    redis_client.zadd(contract.SYNC_WAITS_KEY, {"another": now_ms})
    busy = chat(router, keyset.token())
    assert busy.status == 503
    assert 1 <= int(busy.headers["retry-after"]) <= 1  # the other wait ends within its 1 s
    assert openai_error(busy)["code"] == "too_many_waits"
    assert queued_nothing(redis_client)
    # a wait older than a router can live is over: its slot no longer counts
    gone_ms = now_ms - router.config.sync_worst_case_s() * 1000 - 1
    redis_client.zadd(contract.SYNC_WAITS_KEY, {"another": gone_ms})
    assert openai_error(chat(router, keyset.token()))["code"] == "answer_not_ready"


def test_a_wait_that_runs_out_cancels_its_job(configured, heartbeat, keyset, redis_client):
    reply = chat(configured(SYNC_WAIT_S="1"), keyset.token())
    assert reply.status == 503
    assert reply.headers["retry-after"] == "5"
    assert openai_error(reply)["code"] == "answer_not_ready"
    [entry] = redis_client.xrange(contract.JOB_STREAM)
    assert redis_client.hget(contract.job_key(entry[1]["id"]), "status") == "cancelled"
    assert redis_client.zcard(contract.SYNC_WAITS_KEY) == 0


# --- configuration: the wait fits the function's time limit; one name for the model ----------
def role_defaults() -> dict[str, Any]:
    return yaml.safe_load((REPO / "roles" / "router" / "defaults" / "main.yml").read_text())


def test_the_sync_path_fits_the_functions_time_limit(keyset):
    """With the keys in the environment (as deployed), the wait and the router's own calls
    around it, a second to spare, fit the role's time limit, which is under the HTTP API's 30 s;
    the role's rule (wait at most the limit less 9 s) keeps that for any limit."""
    defaults = role_defaults()
    env = {
        "TL_REDIS_URL": "redis://q:6379",
        "TL_JWT_ISSUER": "https://i",
        "TL_JWT_AUDIENCE": "a",
        "TL_REPLY_BUCKET": "r",
        "TL_CONTROL_BUCKET": "c",
        "TL_JWKS": compact_jwks(keyset.jwks()),
    }
    config = RouterConfig.from_env({**env, "TL_SYNC_WAIT_S": str(defaults["router_sync_wait_s"])})
    assert config.sync_worst_case_s() + 1.0 <= defaults["router_timeout_s"] < 30
    for limit in range(10, 30):
        widest = RouterConfig.from_env({**env, "TL_SYNC_WAIT_S": str(min(limit - 9, 20))})
        assert widest.sync_worst_case_s() + 1.0 <= limit
    for bad in ("0", "21", "twenty"):
        with pytest.raises(ConfigError, match="TL_SYNC_WAIT_S"):
            RouterConfig.from_env({**env, "TL_SYNC_WAIT_S": bad})


def role_environment(**inventory: Any) -> dict[str, str]:
    """The router function's environment as the router role renders it, with `inventory`."""
    variables = {
        **trusted(role_defaults()),
        **trusted(yaml.safe_load((REPO / "roles" / "router" / "vars" / "main.yml").read_text())),
        "project_tag": "tinyllama",
        "tlops_name_suffix": "abc",
        "aws_region": "eu-west-1",
        "queue_redis_url": "redis://q:6379",
        "auth_issuer": "https://i",
        "auth_client_id": "a",
        **inventory,
    }
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trusted("{{ _router_environment.router }}"))


def test_the_role_passes_the_v1_settings():
    config = RouterConfig.from_env(role_environment(router_sync_wait_s=12, router_sync_waits_max=3))
    assert (config.sync_wait_s, config.sync_waits_max) == (12, 3)
    defaults = RouterConfig.from_env(role_environment())
    assert (defaults.sync_wait_s, defaults.sync_waits_max) == (20, 4)  # openapi.yaml's figures


def test_one_name_for_the_served_model():
    """The router's model id is the name vLLM serves: ami_bake's variable where an inventory
    sets it (the local one does, to what the local node's vLLM serves), else the default of
    the vllm and ami_bake roles."""
    vllm = yaml.safe_load((REPO / "roles" / "vllm" / "defaults" / "main.yml").read_text())
    ami_bake = yaml.safe_load((REPO / "roles" / "ami_bake" / "defaults" / "main.yml").read_text())
    assert vllm["vllm_served_model_name"] == ami_bake["ami_bake_served_model_name"] == MODEL
    assert RouterConfig.from_env(role_environment()).served_model == MODEL
    local = yaml.safe_load((REPO / "inventories/local/group_vars/all/ami_bake.yml").read_text())
    node = yaml.safe_load((REPO / "inventories/local/group_vars/node/vllm.yml").read_text())
    assert local["ami_bake_served_model_name"] == node["vllm_served_model_name"]
    served = RouterConfig.from_env(role_environment(**local)).served_model
    assert served == node["vllm_served_model_name"]

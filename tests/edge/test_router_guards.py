"""The router's guards: keys from its configuration, the admins-only stop with its own rate
limit, the media type, and a bound on every call it makes against the function's time limit.

Real redis-server and moto as in test_router; the helpers come from there.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

import tlops.edge.router
from tests.doubles.raw_http import RawHttpServer
from tests.doubles.silent import SilentServer
from tests.doubles.tokens import KeySet
from tests.edge.test_router import (
    FULL_ENV,
    body,
    ec2,
    infer_event,
    instance_state,
    stdout_records,
    stream_ids,
)
from tests.lambdas import sample_event
from tests.support.router_fixtures import *  # noqa: F403 - the fixtures
from tests.support.router_fixtures import admin_token, router_s3
from tlops import contract
from tlops.contract.control import Action
from tlops.edge.router import Router, RouterConfig
from tlops.local.services import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def logged(capsys, message: str) -> list[dict[str, Any]]:
    return [r for r in stdout_records(capsys) if r.get("message") == message]


# --- keys from the function's configuration (TL_JWKS) ----------------------------------
@pytest.fixture
def static_router(router_env, monkeypatch, keyset) -> Router:
    """A router as deployed: the keys in TL_JWKS, the JWKS URL unreachable."""
    from tlops.edge.auth import compact_jwks

    monkeypatch.setenv("TL_JWKS", compact_jwks(keyset.jwks()))
    monkeypatch.setenv("TL_JWKS_URL", f"http://127.0.0.1:{free_port()}/.well-known/jwks.json")
    return Router(RouterConfig.from_env())


def test_with_tl_jwks_the_router_verifies_without_fetching(static_router, heartbeat, keyset):
    result = static_router.handle(infer_event(keyset.token()))
    assert result["statusCode"] == 202


def test_a_key_the_configuration_lacks_is_403_and_the_log_says_to_deploy(
    static_router, redis_client, capsys
):
    rotated = KeySet(count=3)  # the pool now signs with kid-2, which TL_JWKS predates
    result = static_router.handle(infer_event(rotated.token(kid="kid-2")))
    assert result["statusCode"] == 403
    assert body(result) == {"error": "invalid_token"}
    [refused] = logged(capsys, "token refused")
    assert "unknown key id 'kid-2'" in refused["reason"]
    assert "run deploy.yml" in refused["reason"]
    assert stream_ids(redis_client) == []


@pytest.mark.parametrize(
    "value",
    ["not json", "[1, 2]", '{"keys": 5}', '{"keys": []}', "[" * 100_000],
    ids=["not-json", "a-list", "keys-not-a-list", "no-keys", "nested-too-deep"],
)
def test_a_malformed_tl_jwks_stops_the_container_naming_the_variable(value):
    with pytest.raises(RuntimeError, match="TL_JWKS"):
        RouterConfig.from_env({**FULL_ENV, "TL_JWKS": value})


def test_without_tl_jwks_the_router_fetches_from_the_url(keyset):
    assert RouterConfig.from_env({**FULL_ENV, "TL_JWKS": ""}).jwks is None
    config = RouterConfig.from_env({**FULL_ENV, "TL_JWKS": json.dumps(keyset.jwks())})
    assert config.jwks is not None


def test_a_broken_jwks_answer_is_503_auth_unavailable_not_a_crash(
    router_env, monkeypatch, keyset, capsys
):
    with RawHttpServer(b"NOT HTTP AT ALL\r\n\r\n") as server:
        monkeypatch.setenv("TL_JWKS_URL", server.url)
        router = Router(RouterConfig.from_env())
        result = router.handle(infer_event(keyset.token()))
    assert result["statusCode"] == 503
    assert body(result) == {"error": "auth_unavailable"}
    assert "Traceback" not in capsys.readouterr().err


# --- POST /stop: the admins group only, at most 2 a minute ----------------------------
def stop(router: Router, token: str) -> dict[str, Any]:
    """The sample stop event with a request id of its own, as each API request has (the
    router names its request to control after it)."""
    event = sample_event("stop", token=token)
    event["requestContext"]["requestId"] = uuid.uuid4().hex
    return router.handle(event)


def test_stop_outside_the_admins_group_is_403_forbidden(router, gpu_node, relay, keyset):
    ec2().start_instances(InstanceIds=[gpu_node])
    relay.observe()
    for claims in ({}, {"cognito:groups": ["users"]}, {"cognito:groups": "[users]"}):
        result = stop(router, keyset.token(**claims))
        assert result["statusCode"] == 403
        assert body(result) == {
            "error": "forbidden",
            "message": "this route is for the admins group",
        }
    assert relay.requests(Action.STOP) == []
    assert instance_state(gpu_node) == "running"


def test_the_sample_events_authorizer_claims_do_not_make_an_admin(router, gpu_node, keyset):
    """stop.json's authorizer says `cognito:groups: [admins]`; only the verified token counts."""
    event = sample_event("stop", token=keyset.token())
    assert event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] == "[admins]"
    assert router.handle(event)["statusCode"] == 403


def test_a_third_stop_in_a_minute_is_429_with_retry_after(
    router, gpu_node, relay, redis_client, keyset
):
    relay.observe()
    token = admin_token(keyset, sub="admin-1")
    assert [stop(router, token)["statusCode"] for _ in range(2)] == [202, 202]
    limited = stop(router, token)
    assert limited["statusCode"] == 429
    retry_after = int(limited["headers"]["retry-after"])
    assert 55 <= retry_after <= 60
    assert body(limited) == {"error": "rate_limited", "retry_after": retry_after}
    assert redis_client.zcard(contract.stop_rate_key("admin-1")) == 2
    assert len(relay.requests(Action.STOP)) == 2  # the refused one asked nothing
    assert stop(router, admin_token(keyset, sub="admin-2"))["statusCode"] == 202
    assert len(relay.requests(Action.STOP)) == 3


def test_a_refused_stop_asks_control_nothing(router, relay, keyset):
    """Without a recorded node a stop reads the state and is 503; a stop refused for its rate
    or its group reads nothing and writes nothing."""
    from botocore.stub import Stubber

    token = admin_token(keyset)
    with Stubber(router_s3()) as stubber:  # any call not stubbed would raise
        stubber.add_client_error("get_object", service_error_code="NoSuchKey",
                                 http_status_code=404)  # fmt: skip
        stubber.add_client_error("get_object", service_error_code="NoSuchKey",
                                 http_status_code=404)  # fmt: skip
        assert [stop(router, token)["statusCode"] for _ in range(2)] == [503, 503]
        assert stop(router, token)["statusCode"] == 429
        assert stop(router, keyset.token())["statusCode"] == 403
        stubber.assert_no_pending_responses()
    assert relay.keys() == []


def test_without_redis_an_admin_can_still_stop_the_node(
    router, gpu_node, relay, redis_server, keyset, capsys
):
    ec2().start_instances(InstanceIds=[gpu_node])
    import os

    print(
        "DEBUG",
        os.environ.get("PYTEST_XDIST_WORKER"),
        os.environ["TL_AWS_ENDPOINT_URL"],
        relay.observe()["node"],
        [
            (i["InstanceId"], i["State"]["Name"], str(i["LaunchTime"]))
            for r in ec2().describe_instances()["Reservations"]
            for i in r["Instances"]
        ],
    )
    redis_server.stop()
    try:
        result = stop(router, admin_token(keyset))
    finally:
        redis_server.start()
    assert result["statusCode"] == 202
    assert body(result) == {"status": "stopping", "instance": gpu_node}
    relay.deliver()
    assert instance_state(gpu_node) == "stopped"
    assert logged(capsys, "stop not rate-limited")


# --- the body must be JSON ----------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/x-www-form-urlencoded", "application/jsonp"],
    ids=["missing", "empty", "text", "form", "jsonp"],
)
def test_a_body_that_is_not_declared_json_is_415(
    router, heartbeat, redis_client, keyset, content_type
):
    event = infer_event(keyset.token())
    del event["headers"]["content-type"]
    if content_type is not None:
        event["headers"]["content-type"] = content_type
    result = router.handle(event)
    assert result["statusCode"] == 415
    assert body(result)["error"] == "unsupported_media_type"
    assert stream_ids(redis_client) == []


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", " application/json "]
)
def test_json_with_parameters_or_another_case_passes(router, heartbeat, keyset, content_type):
    result = router.handle(infer_event(keyset.token(), headers={"content-type": content_type}))
    assert result["statusCode"] == 202


def test_the_token_is_checked_before_the_media_type(router):
    event = infer_event(None, headers={"content-type": "text/plain"})
    assert router.handle(event)["statusCode"] == 401


# --- every call bounded, and the bounds fit the function's time limit ------------------
def router_timeout_s() -> float:
    defaults = yaml.safe_load((REPO / "roles" / "router" / "defaults" / "main.yml").read_text())
    return float(defaults["router_timeout_s"])


def test_the_worst_path_fits_the_router_functions_time_limit(keyset):
    """The longer of the two paths at their timeouts, with a second to spare, fits the time
    limit the router role deploys the function with: awake, admission, the state read, the
    wake request and the failure mark; asleep, a refused connection, the state read, the
    held job's two listings, its write and the wake request."""
    from tlops.edge.auth import compact_jwks

    config = RouterConfig.from_env({**FULL_ENV, "TL_JWKS": compact_jwks(keyset.jwks())})
    assert config.worst_case_s() + 1.0 <= router_timeout_s()
    # fetching the keys instead costs its own timeout on top
    fetching = RouterConfig.from_env(FULL_ENV)
    assert fetching.worst_case_s() == pytest.approx(config.worst_case_s() + config.jwks_timeout_s)
    # the asleep path is the longer: a connect timeout and five S3 calls of (1 + 2) s
    assert config.worst_case_s() == pytest.approx(0.25 + 5 * 3.0)


def test_the_old_client_defaults_would_not_fit():
    """The operator's defaults (5 s timeouts, 3 attempts) blow the budget: the reason the
    router has its own."""
    loose = dataclasses.replace(
        RouterConfig.from_env(FULL_ENV),
        aws_connect_timeout_s=5.0,
        aws_read_timeout_s=5.0,
        aws_max_attempts=3,
    )
    assert loose.worst_case_s() > router_timeout_s()


def test_the_routers_aws_clients_carry_the_bounds(router_env):
    config = RouterConfig.from_env()
    for service in ("s3",):  # the only service the router calls (the control bucket)
        client_config = config.aws_client(service).meta.config
        assert client_config.connect_timeout == config.aws_connect_timeout_s == 1.0
        assert client_config.read_timeout == config.aws_read_timeout_s == 2.0
        assert client_config.retries["total_max_attempts"] == config.aws_max_attempts == 1


def test_an_s3_endpoint_that_never_answers_costs_one_read_timeout(
    router_env, monkeypatch, redis_client, keyset
):
    """The cold path's state read hangs: one attempt, then 503 and the job marked failed
    (nothing is asked of control after a failed read)."""
    with SilentServer() as silent:
        monkeypatch.setenv("TL_AWS_ENDPOINT_URL", f"http://127.0.0.1:{silent.port}")
        router = Router(RouterConfig.from_env())
        result = router.handle(infer_event(keyset.token()))
        assert silent.connections == 1  # one attempt, no retries
    assert result["statusCode"] == 503
    assert body(result)["error"] == "instance_unavailable"
    assert redis_client.hget(contract.job_key(body(result)["id"]), "status") == "failed"


class FakeContext:
    def __init__(self, remaining_ms: int):
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


# 20 s held POST /infer's longest path; a chat completion's wait (20 s) and its calls need 27.25
@pytest.mark.parametrize(
    ("remaining_ms", "warned"), [(3_000, True), (19_990, True), (28_990, False)]
)
def test_a_time_limit_below_the_worst_case_is_warned_about_once(
    router_env, monkeypatch, keyset, capsys, remaining_ms, warned
):
    from tlops.edge.auth import compact_jwks

    monkeypatch.setenv("TL_JWKS", compact_jwks(keyset.jwks()))
    monkeypatch.setattr(tlops.edge.router, "_router", None)
    for _ in range(2):
        tlops.edge.router.lambda_handler(sample_event("ping"), FakeContext(remaining_ms))
    warnings = logged(capsys, "function time limit below the router's worst case")
    assert len(warnings) == (1 if warned else 0)
    if warned:
        assert warnings[0]["remainingS"] == remaining_ms / 1000
        assert warnings[0]["worstCaseS"] == pytest.approx(0.25 + 8 * 0.5 + 3.0 + 20.0)


def test_an_admission_redis_runs_too_late_is_503_and_writes_nothing(
    router_env, monkeypatch, heartbeat, redis_client, keyset, capsys
):
    monkeypatch.setattr(RouterConfig, "admission_within_s", -1.0)  # a deadline already past
    router = Router(RouterConfig.from_env())
    result = router.handle(infer_event(keyset.token(sub=f"late-{uuid.uuid4()}")))
    assert result["statusCode"] == 503
    assert body(result) == {"error": "queue_unavailable"}
    assert redis_client.keys("job:*") == []
    assert stream_ids(redis_client) == []
    [failure] = logged(capsys, "redis unavailable")
    assert "after its deadline" in failure["reason"]

"""Who reaches the admin routes (`POST /stop`, `POST /resize`, `GET /resize/{operationId}`),
and how often:

- an admin is a verified token whose `cognito:groups` is a JSON list naming `admins`
  exactly, as Cognito issues it; no string form counts (issue 20, item 9);
- where admins must use MFA (TL_ADMINS_REQUIRE_MFA), the token's `amr` claim must name
  `mfa`, or the answer is 403 `mfa_required` (item 12);
- `/stop` and `/resize` start and stop the node, and share one limit per admin: 2 a minute,
  the limit docs/architecture.md sets for `/stop` (item 14).

Real redis-server and moto as in test_router. The node is recorded in the control bucket as
control records it: the router reads only that.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import http_event
from tests.edge.test_router import body
from tests.support.router_fixtures import *  # noqa: F403 - the fixtures
from tests.support.router_fixtures import admin_token
from tlops import contract
from tlops.common.settings_table import ConfigError
from tlops.contract import resize as resize_spec
from tlops.contract.control import Action
from tlops.edge import auth
from tlops.edge.router import Router, RouterConfig

pytestmark = pytest.mark.integration

# The methods an MFA sign-in reports in `amr`: AWS's own example, on
# https://docs.aws.amazon.com/cognito/latest/developerguide/cognito-user-pools-step-up-authentication.html
MFA_SIGN_IN = ["pwd", "otp", "mfa"]


def stop(router: Router, token: str) -> dict[str, Any]:
    return router.handle(http_event("POST", "/stop", token=token))


def resize(router: Router, token: str, action: str = "stop") -> dict[str, Any]:
    payload = json.dumps({"action": action})
    return router.handle(http_event("POST", "/resize", body=payload, token=token))


def progress(router: Router, token: str) -> dict[str, Any]:
    """GET /resize/{operationId} for an operation nobody began: 404 to an admin."""
    operation = contract.new_job_id()
    event = http_event("GET", "/resize/{operationId}", token=token)
    event["rawPath"] = f"/resize/{operation}"
    event["pathParameters"] = {"operationId": operation}
    return router.handle(event)


ROUTES = {"stop": stop, "resize": resize}


@pytest.fixture
def node(relay) -> None:
    """A running node, as control last recorded it."""
    relay.record("running")


def asked_nothing(relay) -> bool:
    return relay.keys("requests/") == []


# --- item 9: membership is a JSON list naming admins exactly ---------------------------------
NOT_ADMINS = [
    pytest.param("admins", id="the-string-admins"),
    pytest.param("[admins]", id="the-string-as-api-gateway-flattens-a-list"),
    pytest.param("users admins", id="a-string-naming-admins-among-others"),
    pytest.param(["notadmins"], id="notadmins"),
    pytest.param(["admins-x"], id="admins-x"),
    pytest.param(["Admins"], id="another-case"),
    pytest.param([" admins"], id="a-space-before"),
    pytest.param([["admins"]], id="a-nested-list"),
    pytest.param({"admins": True}, id="an-object"),
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["admins", "users"], {"admins", "users"}),  # the ID token's own claim
        ([5, "", "admins"], {"admins"}),
        ("[admins users]", set()),  # API Gateway's flattened copy: never a token's claim
        ("admins", set()),
        ("", set()),
        (None, set()),
        (5, set()),
    ],
    ids=lambda v: repr(sorted(v)) if isinstance(v, set) else repr(v),  # same in every worker
)
def test_groups_of_a_token(value, expected):
    claims = {} if value is None else {"cognito:groups": value}
    assert auth.groups(claims) == expected


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("groups", NOT_ADMINS)
def test_only_a_json_list_naming_admins_exactly_makes_an_admin(router, node, relay, keyset,
                                                               route, groups):  # fmt: skip
    result = ROUTES[route](router, keyset.token(**{"cognito:groups": groups}))
    assert result["statusCode"] == 403
    assert body(result)["error"] == "forbidden"
    assert asked_nothing(relay)


@pytest.mark.parametrize("route", ROUTES)
def test_a_json_list_naming_admins_passes(router, node, relay, keyset, route):
    token = keyset.token(**{"cognito:groups": ["users", "admins"]})
    assert ROUTES[route](router, token)["statusCode"] == 202
    assert not asked_nothing(relay)


# --- item 12: admins may be required to have signed in with MFA ------------------------------
@pytest.fixture
def mfa_router(router_env, monkeypatch) -> Router:
    """A router deployed with auth_admins_require_mfa on."""
    monkeypatch.setenv("TL_ADMINS_REQUIRE_MFA", "true")
    return Router(RouterConfig.from_env())


WITHOUT_MFA = [
    pytest.param(None, id="no-amr"),
    pytest.param(["pwd"], id="a-password-only"),
    pytest.param(["otp"], id="a-one-time-code-only"),
    pytest.param([], id="empty"),
    pytest.param("mfa", id="a-string"),
    pytest.param("pwd otp mfa", id="a-string-of-methods"),
    pytest.param({"mfa": True}, id="an-object"),
]


@pytest.mark.parametrize("route", [*ROUTES, "progress"])
@pytest.mark.parametrize("amr", WITHOUT_MFA)
def test_with_mfa_required_an_admin_without_it_is_403_mfa_required(mfa_router, node, relay,
                                                                   keyset, route, amr):  # fmt: skip
    call = {**ROUTES, "progress": progress}[route]
    result = call(mfa_router, admin_token(keyset, amr=amr))
    assert result["statusCode"] == 403
    refused = body(result)
    assert refused["error"] == "mfa_required"
    assert "MFA" in refused["message"]
    assert asked_nothing(relay)


@pytest.mark.parametrize("route", ROUTES)
def test_with_mfa_required_an_admin_who_signed_in_with_mfa_passes(mfa_router, node, relay,
                                                                  keyset, route):  # fmt: skip
    assert ROUTES[route](mfa_router, admin_token(keyset, amr=MFA_SIGN_IN))["statusCode"] == 202
    assert progress(mfa_router, admin_token(keyset, amr=MFA_SIGN_IN))["statusCode"] == 404


def test_with_mfa_required_a_user_outside_admins_is_still_forbidden(mfa_router, node, keyset):
    result = stop(mfa_router, keyset.token(amr=MFA_SIGN_IN))
    assert (result["statusCode"], body(result)["error"]) == (403, "forbidden")


@pytest.mark.parametrize("route", ROUTES)
def test_without_the_setting_admins_pass_as_before(router, node, keyset, route):
    assert not router.config.admins_require_mfa  # off unless the deploy turns it on
    assert ROUTES[route](router, admin_token(keyset))["statusCode"] == 202


@pytest.mark.parametrize("value", ["yes", "1", "on", "ture"])
def test_a_setting_that_is_not_true_or_false_is_refused_naming_it(router_env, value):
    with pytest.raises(ConfigError, match="TL_ADMINS_REQUIRE_MFA must be true or false"):
        RouterConfig.from_env({**router_env, "TL_ADMINS_REQUIRE_MFA": value})


# --- item 14: /resize starts and stops count against the /stop limit -------------------------
def finished(redis_client, accepted: dict[str, Any]) -> None:
    """The operation done, as GET /resize records it once control has finished: the lock no
    longer holds the next POST /resize back (409), so only the rate limit can."""
    operation = body(accepted)["operationId"]
    redis_client.hset(resize_spec.operation_key(operation), "status", "done")


def assert_rate_limited(result: dict[str, Any]) -> None:
    assert result["statusCode"] == 429
    retry_after = int(result["headers"]["retry-after"])
    assert 0 < retry_after <= 60
    assert body(result) == {"error": "rate_limited", "retry_after": retry_after}


def test_after_two_stops_a_resize_stop_is_429_and_begins_nothing(router, node, relay,
                                                                 redis_client, keyset):  # fmt: skip
    token = admin_token(keyset, sub="admin-1")
    assert [stop(router, token)["statusCode"] for _ in range(2)] == [202, 202]
    assert_rate_limited(resize(router, token, "stop"))
    assert relay.requests(Action.RESIZE) == []
    assert redis_client.get(contract.RESIZE_LOCK_KEY) is None  # no operation began
    # another admin's stops and starts are their own
    assert resize(router, admin_token(keyset, sub="admin-2"), "stop")["statusCode"] == 202


def test_after_two_resizes_a_stop_is_429(router, node, relay, redis_client, keyset):
    """Only operations that begin count: a request refused for its body, or for another
    operation in progress (409), uses none of the limit."""
    token = admin_token(keyset, sub="admin-1")
    assert [resize(router, token, "explode")["statusCode"] for _ in range(2)] == [400, 400]
    first = resize(router, token, "stop")
    assert first["statusCode"] == 202
    assert resize(router, token, "start")["statusCode"] == 409  # the first one still runs
    finished(redis_client, first)
    second = resize(router, token, "start")
    assert second["statusCode"] == 202
    finished(redis_client, second)
    assert_rate_limited(stop(router, token))
    assert relay.requests(Action.STOP) == []
    assert_rate_limited(resize(router, token, "start"))
    assert len(relay.requests(Action.RESIZE)) == 2  # the refused one asked nothing
    assert redis_client.get(contract.RESIZE_LOCK_KEY) is None  # and let the lock go

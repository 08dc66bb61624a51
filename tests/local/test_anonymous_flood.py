"""An anonymous flood against the stage throttling the router role deploys (issue 20, item 4).

The local gateway throttles each route before its JWT authorizer (AWS does not document
the order; the gateway keeps the pessimistic one), so requests without a token use up
the bucket of a signed-in route. The role's figures must leave a signed-in user served
after a flood well above the old burst (30 requests sufficed), and still refuse one far
above the new limit. The stage is rendered from the role's own task with Ansible's
templar, read back in the shape `get_stages` returns, and served by the real gateway.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from tests.support.gateway_fixtures import *  # noqa: F403 - the fixtures
from tests.support.gateway_fixtures import LiveGateway
from tests.support.role_templates import trusted
from tlops.local.throttling import Limit, Throttling
from tlops.tooling.routes import http_api_routes

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "router"

# The design in docs/decisions.md ("Signed-in routes get headroom an anonymous flood cannot
# cheaply use up"): every route behind the JWT authorizer, a burst of 500 and 50 per second.
SIGNED_IN = Limit(burst=500, rate=50.0)
# The issue: 30 requests without a token made a signed-in user's /infer and GET /jobs 429.
# A flood of 200 is ten times the old burst (20) and well inside the new one.
FLOOD = 200


def _get_stages_view(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "ThrottlingBurstLimit": int(settings["burst_limit"]),
        "ThrottlingRateLimit": float(settings["rate_limit"]),
    }


def deployed_stage_throttling() -> Throttling:
    """The router role's `tl_http_api` stage throttling, rendered with the role's defaults
    and openapi.yaml's routes as a deploy renders it."""
    tasks = yaml.safe_load((ROLE / "tasks" / "configure.yml").read_text())
    api_task = next(task for task in tasks if "tlops.stack.tl_http_api" in task)
    stage = api_task["tlops.stack.tl_http_api"]["stage"]
    variables = {
        **trusted(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())),
        "_router_routes": http_api_routes(yaml.safe_load((REPO / "openapi.yaml").read_text())),
    }
    rendered = Templar(loader=DataLoader(), variables=variables).template(
        trusted({key: stage[key] for key in ("default_throttling", "route_throttling")})
    )
    return Throttling.from_stage(
        {
            "DefaultRouteSettings": _get_stages_view(rendered["default_throttling"]),
            "RouteSettings": {
                key: _get_stages_view(value) for key, value in rendered["route_throttling"].items()
            },
        }
    )


def flood(live: LiveGateway, method: str, path: str, count: int) -> Counter[int]:
    """`count` requests without a token, one after another as fast as one client sends
    them (each on its own connection): how many got each status."""
    body = {} if method == "POST" else None
    return Counter(live.request(method, path, body).status for _ in range(count))


@pytest.fixture
def deployed_gateway(start_gateway) -> LiveGateway:
    return start_gateway(throttling=deployed_stage_throttling())


def test_the_role_gives_every_signed_in_route_the_designed_limit():
    throttling = deployed_stage_throttling()
    for route in ("POST /infer", "GET /jobs/{id}", "POST /stop", "GET /status"):
        assert throttling.limit(route) == SIGNED_IN, route


def test_a_signed_in_user_is_served_after_an_anonymous_flood(deployed_gateway, token, node_alive):
    """Each of the user's requests comes right after a flood on its own route."""
    user = token()
    flooded_infer = flood(deployed_gateway, "POST", "/infer", FLOOD)
    queued = deployed_gateway.infer(user)
    assert queued.status == 202, (queued, flooded_infer)

    job = f"/jobs/{queued.body['id']}"
    flooded_jobs = flood(deployed_gateway, "GET", job, FLOOD)
    read = deployed_gateway.request("GET", job, token=user)
    assert read.status == 200, (read, flooded_jobs)
    unknown = deployed_gateway.request("GET", f"/jobs/{uuid.uuid4()}", token=user)
    assert unknown.status == 404, unknown
    # the floods were below the limit: every request of them reached the authorizer
    assert flooded_infer == flooded_jobs == Counter({401: FLOOD})


def test_a_flood_far_above_the_signed_in_limit_still_meets_429(deployed_gateway):
    """Three bursts' worth: the first burst passes to the authorizer (401), and the rate
    cannot refill two more bursts before the flood ends, so some are throttled."""
    statuses = flood(deployed_gateway, "POST", "/infer", 3 * SIGNED_IN.burst)
    assert set(statuses) == {401, 429}
    assert statuses[401] >= SIGNED_IN.burst
    assert statuses[429] > 0

"""Canned Cost Explorer figures for the stand-in, which tracks no cost.

moto answers `GetCostAndUsage` with results queued through its API
(`POST /moto-api/static/ce/cost-and-usage-results`): the first request with a body it has
not seen takes the next queued result and keeps it for that body; with nothing queued it
answers no figures and keeps nothing. `ensure` asks first and loads a month only when the
stand-in has no figures for the request yet, so repeated runs queue nothing more.

The month is made up but plausible for this stack, the same every time for a given day:
the stopped node's volume every day, and on some days a few GPU hours with the queue and
the router's endpoint up around them. Everything that shows it says it is canned.
"""

from __future__ import annotations

import json
import random
import urllib.request
from datetime import date, timedelta
from typing import Any

from tlops.guard import costs

CANNED_LABEL = "canned Cost Explorer data of the local stand-in, not real spend"
STATIC_PATH = "/moto-api/static/ce/cost-and-usage-results"

# USD a day, from the list prices of playbooks/vars/prices.yml (eu-west-1).
_VOLUME_DAY = 30 * 0.088 / 30  # 30 GiB of gp3
_GPU_HOUR = 0.587  # g4dn.xlarge on demand
_QUEUE_DAY = 0.0175 * 24  # cache.t4g.micro
_ENDPOINT_DAY = 0.011 * 24  # one interface endpoint in one AZ


def day_costs(day: date) -> dict[str, float]:
    """What the canned account spent on `day`, by Cost Explorer's service names."""
    chance = random.Random(day.toordinal())  # noqa: S311 - made-up figures, not security
    gpu_hours = chance.choice([0, 0, 0, 0.5, 1.0, 1.5, 2.5])
    spent = {
        "EC2 - Other": _VOLUME_DAY,
        "Amazon Simple Storage Service": 0.0012,
        "AmazonCloudWatch": 0.01,
        "AWS Lambda": 0.0004,
    }
    if gpu_hours:
        spent["Amazon Elastic Compute Cloud - Compute"] = gpu_hours * _GPU_HOUR
        spent["Amazon ElastiCache"] = _QUEUE_DAY
        spent["Amazon Virtual Private Cloud"] = _ENDPOINT_DAY
    return {service: round(amount, 6) for service, amount in spent.items()}


def canned_result(today: date) -> dict[str, Any]:
    """Cost Explorer's answer to `costs.request(today)`, from `day_costs`."""
    start, end = costs.period(today)
    results, day = [], start
    while day < end:
        groups = [
            {
                "Keys": [service],
                "Metrics": {costs.METRIC: {"Amount": f"{amount:.6f}", "Unit": "USD"}},
            }
            for service, amount in sorted(day_costs(day).items())
        ]
        results.append(
            {
                "TimePeriod": {
                    "Start": day.isoformat(),
                    "End": (day + timedelta(days=1)).isoformat(),
                },
                "Total": {},
                "Groups": groups,
                "Estimated": day >= today - timedelta(days=2),
            }
        )
        day += timedelta(days=1)
    return {"ResultsByTime": results, "DimensionValueAttributes": []}


def load(endpoint_url: str, result: dict[str, Any]) -> None:
    """Queue one Cost Explorer result in the stand-in."""
    data = json.dumps({"results": [result]}).encode()
    sent = urllib.request.Request(  # noqa: S310 - the stand-in's own loopback URL
        endpoint_url.rstrip("/") + STATIC_PATH,
        data=data,
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(sent, timeout=5) as answer:  # noqa: S310
        if answer.status != 201:
            raise RuntimeError(f"the stand-in refused the canned figures: HTTP {answer.status}")


def ensure(ce: Any, endpoint_url: str, today: date) -> bool:
    """Make sure the stand-in answers `costs.request(today)` with figures; True if it loaded
    the canned month now. A failing Cost Explorer is left for the real read to report."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if ce.get_cost_and_usage(**costs.request(today)).get("ResultsByTime"):
            return False
    except (BotoCoreError, ClientError):
        return False
    load(endpoint_url, canned_result(today))
    return True

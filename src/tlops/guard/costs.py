"""What the account spends, from Cost Explorer, and where the month is heading.

One `GetCostAndUsage` request (daily unblended cost, grouped by service) from the first of
the month (or from yesterday, on the 1st) up to today gives everything the mail and
`tlops cost` show: yesterday, the month to date, the top drivers and the daily series.
Today is left out: its figures are partial. Cost Explorer bills each request (USD 0.01),
so the mail makes one a day and `tlops cost` one per run (docs/decisions.md).

The projection (tested with canned data, tests/guard/test_guard_costs.py):

    projection = month to date + rate x days left (today included)
    rate = mean daily spend of the last 7 complete days of this month
           (all of them early in the month; on the 1st, yesterday's spend)

A week's mean follows a change of use within days, where the month's mean would lag; one
quiet day does not hide a busy week. It assumes the coming days look like the last week:
a node left running today shows in tomorrow's projection, not in today's.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Any, NamedTuple

RECENT_DAYS = 7
WARN_PROJECTION_PERCENT = 90.0  # the mail's subject gets a warning sign from here
METRIC = "UnblendedCost"
# Cost Explorer's service names, shortened for the mail and the chart.
SHORT_NAMES = {
    "Amazon Elastic Compute Cloud - Compute": "EC2",
    "EC2 - Other": "EC2 other (EBS, IPs)",
    "Amazon ElastiCache": "ElastiCache",
    "Amazon Virtual Private Cloud": "VPC",
    "AmazonCloudWatch": "CloudWatch",
    "Amazon Simple Storage Service": "S3",
    "AWS Lambda": "Lambda",
    "Amazon API Gateway": "API Gateway",
    "Amazon Cognito": "Cognito",
    "Amazon Simple Notification Service": "SNS",
    "AWS Cost Explorer": "Cost Explorer",
}


class CostsUnavailable(RuntimeError):
    """Cost Explorer did not answer with figures; the message says what happened."""


class Spend(NamedTuple):
    """Cost Explorer's answer: day → service → amount, in one unit."""

    days: dict[date, dict[str, float]]
    unit: str
    estimated: bool  # some of the days are still AWS's estimates


class Summary(NamedTuple):
    today: date
    unit: str
    budget: float
    budget_unit: str
    yesterday: date
    yesterday_amount: float
    month_to_date: float
    percent: float  # of the budget
    projection: float
    projection_percent: float
    rate: float  # the daily rate projected with
    rate_days: int  # how many complete days that rate is the mean of
    days_left: int  # today included
    drivers: list[tuple[str, float]]  # the top three services of the month
    daily: list[tuple[date, float]]  # this month's complete days
    estimated: bool

    @property
    def warning(self) -> bool:
        return self.projection_percent >= WARN_PROJECTION_PERCENT

    def as_dict(self) -> dict[str, Any]:
        out = self._asdict()
        out.update(
            today=self.today.isoformat(),
            yesterday=self.yesterday.isoformat(),
            drivers=[{"service": s, "amount": round(a, 2)} for s, a in self.drivers],
            daily=[{"day": d.isoformat(), "amount": round(a, 4)} for d, a in self.daily],
            warning=self.warning,
        )
        return out


def period(today: date) -> tuple[date, date]:
    """[start, end) of the request: this month's complete days, and always yesterday."""
    yesterday = today - timedelta(days=1)
    return min(today.replace(day=1), yesterday), today


def request(today: date) -> dict[str, Any]:
    """The GetCostAndUsage request the mail and `tlops cost` make (one, the same one)."""
    start, end = period(today)
    return {
        "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
        "Granularity": "DAILY",
        "Metrics": [METRIC],
        "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}],
    }


def read(ce: Any, today: date) -> Spend:
    """The spend of the request's period, page by page. Raises CostsUnavailable."""
    from botocore.exceptions import BotoCoreError, ClientError

    days: dict[date, dict[str, float]] = {}
    units, estimated, token = set(), False, None
    try:
        while True:
            extra = {"NextPageToken": token} if token else {}
            answer = ce.get_cost_and_usage(**request(today), **extra)
            for result in answer.get("ResultsByTime", []):
                day = date.fromisoformat(result["TimePeriod"]["Start"])
                services = days.setdefault(day, {})
                estimated = estimated or bool(result.get("Estimated"))
                for group in result.get("Groups", []):
                    cost = group["Metrics"][METRIC]
                    services[group["Keys"][0]] = services.get(group["Keys"][0], 0.0) + float(
                        cost["Amount"]
                    )
                    units.add(cost.get("Unit", "USD"))
            token = answer.get("NextPageToken")
            if not token:
                break
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CostsUnavailable(
            f"Cost Explorer refused GetCostAndUsage: {error.get('Code', '?')}: "
            f"{error.get('Message', '')}".rstrip(": ")
        ) from None
    except (BotoCoreError, KeyError, ValueError, TypeError) as exc:
        raise CostsUnavailable(f"Cost Explorer could not be read: {exc}") from None
    if not days:
        start, end = period(today)
        raise CostsUnavailable(f"Cost Explorer returned no figures for {start} to {end}")
    if len(units) > 1:
        raise CostsUnavailable(f"Cost Explorer answered in several units: {sorted(units)}")
    return Spend(days, units.pop() if units else "USD", estimated)


def short_name(service: str) -> str:
    return SHORT_NAMES.get(service, service)


def summarise(spend: Spend, today: date, budget: float, budget_unit: str) -> Summary:
    """Yesterday, the month to date against the budget, the projection, the top drivers."""
    yesterday = today - timedelta(days=1)
    month = [d for d in sorted(spend.days) if (d.year, d.month) == (today.year, today.month)]
    month = [d for d in month if d < today]
    daily = [(d, sum(spend.days[d].values())) for d in month]
    month_to_date = sum(amount for _, amount in daily)
    recent = [amount for _, amount in daily[-RECENT_DAYS:]]
    if not recent:  # the 1st: nothing of this month is complete yet
        recent = [sum(spend.days.get(yesterday, {}).values())]
    rate = sum(recent) / len(recent)
    days_left = calendar.monthrange(today.year, today.month)[1] - len(daily)
    projection = month_to_date + rate * days_left
    by_service: dict[str, float] = {}
    for d in month:
        for service, amount in spend.days[d].items():
            by_service[service] = by_service.get(service, 0.0) + amount
    drivers = sorted(
        ((short_name(s), a) for s, a in by_service.items() if a > 0),
        key=lambda item: (-item[1], item[0]),
    )[:3]

    def percent(amount: float) -> float:
        return 100.0 * amount / budget if budget > 0 else 0.0

    return Summary(
        today=today,
        unit=spend.unit,
        budget=budget,
        budget_unit=budget_unit,
        yesterday=yesterday,
        yesterday_amount=sum(spend.days.get(yesterday, {}).values()),
        month_to_date=month_to_date,
        percent=percent(month_to_date),
        projection=projection,
        projection_percent=percent(projection),
        rate=rate,
        rate_days=len(recent),
        days_left=days_left,
        drivers=drivers,
        daily=daily,
        estimated=spend.estimated,
    )


def money(amount: float, unit: str) -> str:
    return f"{unit} {amount:,.2f}"

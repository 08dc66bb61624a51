"""Cost Explorer's figures, the month's projection and the daily mail, from canned answers:
the projection method of tlops.guard.costs checked figure by figure, and a failing Cost
Explorer (botocore's Stubber) reported as a failure, never as zeros."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import boto3
import pytest
from botocore.stub import Stubber

from tlops.guard import costs
from tlops.guard.summary import WARNING_SIGN, SummaryConfig, build
from tlops.local import costs as canned

CONFIG = SummaryConfig(project="tinyllama", topic_arn="arn:aws:sns:eu-west-1:1:t", budget=20.0,
                       budget_unit="USD")  # fmt: skip


def answer(days: dict[date, dict[str, float]], unit: str = "USD", token: str | None = None):
    results = [
        {
            "TimePeriod": {"Start": d.isoformat(), "End": (d + timedelta(days=1)).isoformat()},
            "Total": {},
            "Groups": [
                {"Keys": [s], "Metrics": {"UnblendedCost": {"Amount": str(a), "Unit": unit}}}
                for s, a in services.items()
            ],
            "Estimated": False,
        }
        for d, services in sorted(days.items())
    ]
    out = {"ResultsByTime": results, "DimensionValueAttributes": []}
    if token:
        out["NextPageToken"] = token
    return out


def stubbed(*answers, error: str | None = None):
    ce = boto3.client("ce", region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x")  # fmt: skip
    stub = Stubber(ce)
    for reply in answers:
        stub.add_response("get_cost_and_usage", reply)
    if error:
        stub.add_client_error("get_cost_and_usage", error, "Cost Explorer is not enabled")
    stub.activate()
    return ce


def test_the_request_covers_this_months_complete_days_and_yesterday():
    assert costs.period(date(2026, 11, 23)) == (date(2026, 11, 1), date(2026, 11, 23))
    assert costs.period(date(2026, 12, 1)) == (date(2026, 11, 30), date(2026, 12, 1))
    request = costs.request(date(2026, 11, 23))
    assert request["Granularity"] == "DAILY" and request["Metrics"] == ["UnblendedCost"]
    assert request["GroupBy"] == [{"Type": "DIMENSION", "Key": "SERVICE"}]


def test_projection_is_month_to_date_plus_the_last_weeks_mean_for_each_day_left():
    today = date(2026, 11, 11)  # 10 complete days; November has 30
    days = {date(2026, 11, d): {"EC2 - Other": 0.1, "Amazon Elastic Compute Cloud - Compute":
            (2.0 if d >= 4 else 0.0)} for d in range(1, 11)}  # fmt: skip
    summary = costs.summarise(costs.read(stubbed(answer(days)), today), today, 20.0, "USD")
    assert summary.month_to_date == pytest.approx(10 * 0.1 + 7 * 2.0)  # 15.0
    assert summary.rate == pytest.approx(2.1)  # days 4-10, the last seven
    assert (summary.rate_days, summary.days_left) == (7, 20)
    assert summary.projection == pytest.approx(15.0 + 2.1 * 20)  # 57.0
    assert summary.percent == pytest.approx(75.0)
    assert summary.projection_percent == pytest.approx(285.0)
    assert summary.yesterday == date(2026, 11, 10) and summary.yesterday_amount == 2.1
    assert summary.drivers == [("EC2", 14.0), ("EC2 other (EBS, IPs)", pytest.approx(1.0))]
    assert summary.warning


def test_early_in_the_month_the_rate_is_the_days_there_are():
    today = date(2026, 11, 4)
    days = {date(2026, 11, 1): {"S": 1.0}, date(2026, 11, 2): {"S": 2.0},
            date(2026, 11, 3): {"S": 3.0}}  # fmt: skip
    summary = costs.summarise(costs.read(stubbed(answer(days)), today), today, 20.0, "USD")
    assert (summary.rate, summary.rate_days, summary.days_left) == (2.0, 3, 27)
    assert summary.projection == pytest.approx(6.0 + 2.0 * 27)


def test_on_the_first_the_projection_runs_yesterdays_spend_over_the_whole_month():
    today = date(2026, 12, 1)
    days = {date(2026, 11, 30): {"S": 0.5}}
    summary = costs.summarise(costs.read(stubbed(answer(days)), today), today, 20.0, "USD")
    assert summary.month_to_date == 0.0 and summary.daily == []
    assert summary.yesterday_amount == 0.5
    assert summary.projection == pytest.approx(0.5 * 31)


def test_pages_are_followed_and_added_up():
    today = date(2026, 11, 3)
    first = answer({date(2026, 11, 1): {"A": 1.0}}, token="more")
    second = answer({date(2026, 11, 1): {"B": 0.5}, date(2026, 11, 2): {"A": 1.0}})
    spend = costs.read(stubbed(first, second), today)
    assert spend.days[date(2026, 11, 1)] == {"A": 1.0, "B": 0.5}


def test_a_quiet_month_mails_without_a_warning():
    today = date(2026, 11, 11)
    days = {date(2026, 11, d): {"EC2 - Other": 0.088} for d in range(1, 11)}
    mail = build(CONFIG, stubbed(answer(days)), today)
    assert mail.subject == "tinyllama daily cost, 2026-11-11"
    assert "- **Month to date**: USD 0.88 of USD 20.00 (4 %)" in mail.body
    assert "- **Projection for November 2026**: USD 2.64 (13 % of the budget)" in mail.body
    assert "- **Yesterday** (2026-11-10): USD 0.09" in mail.body
    assert "USD 21.00" in mail.body  # the kill line


def test_a_projection_at_ninety_percent_warns_in_the_subject():
    today = date(2026, 11, 11)
    days = {date(2026, 11, d): {"EC2 - Other": 0.6} for d in range(1, 11)}  # 18.0 projected
    mail = build(CONFIG, stubbed(answer(days)), today)
    assert mail.summary.projection_percent == pytest.approx(90.0)
    assert mail.subject.startswith(WARNING_SIGN) and "projection 90 %" in mail.subject
    days = {date(2026, 11, d): {"EC2 - Other": 0.59} for d in range(1, 11)}  # 17.7
    assert not build(CONFIG, stubbed(answer(days)), today).subject.startswith(WARNING_SIGN)


def test_cost_explorer_failing_is_said_and_never_zero():
    mail = build(CONFIG, stubbed(error="DataUnavailableException"), date(2026, 11, 11))
    assert mail.summary is None
    assert (
        mail.subject
        == f"{WARNING_SIGN} tinyllama daily cost, 2026-11-11: Cost Explorer unavailable"
    )
    assert "DataUnavailableException" in mail.body and "not a zero" in mail.body
    assert "0.00" not in mail.body


def test_no_figures_at_all_is_a_failure_too():
    mail = build(CONFIG, stubbed({"ResultsByTime": []}), date(2026, 11, 11))
    assert mail.summary is None and "returned no figures" in mail.problem


def test_another_unit_than_the_budgets_is_not_compared():
    today = date(2026, 11, 11)
    days = {date(2026, 11, d): {"S": 0.6} for d in range(1, 11)}
    mail = build(dataclasses.replace(CONFIG, budget_unit="EUR"), stubbed(answer(days)), today)
    assert "of EUR" not in mail.body and "are not compared" in mail.body
    assert not mail.subject.startswith(WARNING_SIGN)


def test_the_canned_month_answers_the_request_it_is_loaded_for():
    today = date(2026, 11, 23)
    result = canned.canned_result(today)
    days = [r["TimePeriod"]["Start"] for r in result["ResultsByTime"]]
    assert days[0] == "2026-11-01" and days[-1] == "2026-11-22" and len(days) == 22
    summary = costs.summarise(costs.read(stubbed(result), today), today, 20.0, "USD")
    assert 0 < summary.month_to_date < summary.projection
    assert canned.canned_result(today) == result  # the same figures every time

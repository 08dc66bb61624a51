"""The daily cost summary: Cost Explorer's figures as a short Markdown mail, published to the
cost topic (EventBridge runs it at 05:00 UTC). When Cost Explorer fails, the mail says so
instead of reporting zeros. `tlops ops cost-mail --dry-run` prints the same mail."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from tlops.common import settings_table
from tlops.common.settings_table import number, setting
from tlops.common.telemetry import Telemetry
from tlops.guard import costs
from tlops.guard.costs import CostsUnavailable, Summary, money

telemetry = Telemetry("cost_summary")

WARNING_SIGN = "\N{WARNING SIGN}\N{VARIATION SELECTOR-16}"
SUBJECT_LIMIT = 99  # SNS takes subjects of fewer than 100 characters


@dataclasses.dataclass(frozen=True)
class SummaryConfig:
    project: str = setting(None, "TL_PROJECT", "the Project tag the mail names")
    topic_arn: str = setting(None, "TL_COST_TOPIC_ARN", "the SNS topic the mail goes to")
    budget: float = setting(None, "TL_BUDGET_AMOUNT", "the monthly budget", parse=number(float))
    budget_unit: str = setting(None, "TL_BUDGET_UNIT", "its currency (USD, EUR)")
    kill_percent: float = setting(
        None, "TL_KILL_PERCENT", "% of the budget that kills", 105.0, number(float)
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SummaryConfig:
        return settings_table.from_env(cls, os.environ if env is None else env, "cost summary")


class Mail(NamedTuple):
    subject: str
    body: str
    summary: Summary | None  # None when Cost Explorer failed
    problem: str = ""


def _title(config: SummaryConfig, today: date) -> str:
    return f"{config.project} daily cost, {today.isoformat()}"


def compose(config: SummaryConfig, today: date, summary: Summary) -> Mail:
    unit = summary.unit
    month = f"{today:%B %Y}"
    comparable = unit == config.budget_unit
    budget = money(config.budget, config.budget_unit)
    of_budget = f" of {budget} ({summary.percent:.0f} %)" if comparable else ""
    drivers = ", ".join(f"{name} {money(amount, unit)}" for name, amount in summary.drivers)
    lines = [
        f"# {_title(config, today)}",
        "",
        f"- **Yesterday** ({summary.yesterday.isoformat()}): "
        f"{money(summary.yesterday_amount, unit)}",
        f"- **Month to date**: {money(summary.month_to_date, unit)}{of_budget}",
        f"- **Projection for {month}**: {money(summary.projection, unit)}"
        + (f" ({summary.projection_percent:.0f} % of the budget)" if comparable else ""),
        f"- **Top drivers this month**: {drivers or 'none yet'}",
        "",
        f"Projection: the month to date plus the mean of the last {summary.rate_days} complete "
        f"day(s) ({money(summary.rate, unit)} a day) for each of the {summary.days_left} "
        "day(s) left, today included.",
    ]
    if comparable:
        kill_line = config.budget * config.kill_percent / 100
        lines.append(
            f"At {config.kill_percent:g} % ({money(kill_line, unit)}) the budget killer stops the "
            "GPU node and deletes the queue and its endpoint."
        )
    else:
        lines.append(
            f"The budget is in {config.budget_unit} but Cost Explorer answers in {unit}: the two "
            "are not compared here."
        )
    lines.append(
        "Figures: Cost Explorer's unblended cost per day"
        + (", the latest days still estimates." if summary.estimated else ".")
    )
    subject = _title(config, today)
    if summary.warning and comparable:
        subject = f"{WARNING_SIGN} {subject}: projection {summary.projection_percent:.0f} %"
    return Mail(subject, "\n".join(lines) + "\n", summary)


def compose_failure(config: SummaryConfig, today: date, problem: str) -> Mail:
    body = (
        f"# {_title(config, today)}\n\n"
        f"**No figures today: {problem}.**\n\n"
        "Nothing is known about yesterday's spend or the month's; this is not a zero. Check "
        "Cost Explorer in the billing console, and the cost_summary function's log.\n"
    )
    subject = f"{WARNING_SIGN} {_title(config, today)}: Cost Explorer unavailable"
    return Mail(subject, body, None, problem)


def build(config: SummaryConfig, ce: Any, today: date) -> Mail:
    try:
        spend = costs.read(ce, today)
    except CostsUnavailable as exc:
        telemetry.log("ERROR", "cost explorer unavailable", reason=str(exc))
        return compose_failure(config, today, str(exc))
    return compose(config, today, costs.summarise(spend, today, config.budget, config.budget_unit))


def send(config: SummaryConfig, ce: Any, sns: Any, today: date) -> tuple[Mail, str]:
    """Build the day's mail and publish it to the cost topic; (the mail, its message id)."""
    mail = build(config, ce, today)
    published = sns.publish(
        TopicArn=config.topic_arn, Subject=mail.subject[:SUBJECT_LIMIT], Message=mail.body
    )
    telemetry.log("INFO", "cost summary published", subject=mail.subject, problem=mail.problem)
    return mail, published.get("MessageId", "")


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (re-exported by lambda_src/cost_summary)."""
    from tlops.common import aws

    config = SummaryConfig.from_env()
    ce, sns = aws.client("ce", read_timeout=10.0), aws.client("sns")
    mail, message_id = send(config, ce, sns, datetime.now(UTC).date())
    return {"subject": mail.subject, "message_id": message_id, "problem": mail.problem}

"""`tlops cost`: the month to date against the budget, the projection, the top drivers, and
what the deployment costs a month while idle; `--json` for scripts, `--png PATH` for a chart.

The figures are Cost Explorer's, from the same one request the daily mail makes
(tlops.guard.costs), against the budget the deployed cost_summary function is configured
with. On the local stand-in, which tracks no cost, they are canned (tlops.local.costs) and
say so, in the output and on the chart. The idle cost is tlops.cost.idle's report, the one
status.yml and teardown.yml print (through the tl_idle_cost module).
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tlops.cli.session import CliError

UNAVAILABLE = 3  # the exit code when Cost Explorer gave no figures


def stand_in() -> str | None:
    """The stand-in's endpoint when the CLI talks to one (its own or the local stack's)."""
    from tlops.cli.session import running_local_stack

    if not os.environ.get("TL_AWS_ENDPOINT_URL"):
        stack = running_local_stack()
        if stack is not None:
            os.environ.update({k: v for k, v in stack.env().items() if k not in os.environ})
    return os.environ.get("TL_AWS_ENDPOINT_URL") or None


def project() -> str:
    return os.environ.get("TL_PROJECT", "tinyllama")


def deployed_environment(function: str) -> dict[str, str]:
    """The environment the deployed function runs with (alias prod); CliError if absent."""
    from botocore.exceptions import BotoCoreError, ClientError

    from tlops.common import aws

    try:
        config = aws.client("lambda").get_function_configuration(
            FunctionName=function, Qualifier="prod"
        )
    except (BotoCoreError, ClientError) as exc:
        raise CliError(
            f"cannot read the function {function} ({exc}): run ansible-playbook "
            "playbooks/deploy.yml first (the guardrails role deploys it)"
        ) from None
    return dict((config.get("Environment") or {}).get("Variables") or {})


def read_costs(endpoint: str | None, budget: float, unit: str, today: date):
    """(summary or None, problem): the month's figures as of `today`, canned first on a
    stand-in."""
    from tlops.common import aws
    from tlops.guard import costs

    ce = aws.client("ce")
    if endpoint:
        from tlops.local import costs as canned

        try:
            canned.ensure(ce, endpoint, today)
        except (OSError, RuntimeError) as exc:  # the stand-in refused the canned figures
            return None, f"the stand-in took no canned figures: {exc}"
    try:
        spend = costs.read(ce, today)
    except costs.CostsUnavailable as exc:
        return None, str(exc)
    return costs.summarise(spend, today, budget, unit), ""


def _print(report: dict[str, Any]) -> None:
    from tlops.guard.costs import money

    print(f"spend of Project={report['project']}: {report['source']}")
    summary = report["summary"]
    if summary is None:
        print(f"  Cost Explorer: no figures: {report['problem']}")
    else:
        unit, budget = summary["unit"], money(summary["budget"], summary["budget_unit"])
        rate = money(summary["rate"], unit)
        print(f"  month to date  {money(summary['month_to_date'], unit)} of {budget} "
              f"({summary['percent']:.0f} %)")  # fmt: skip
        print(f"  yesterday      {money(summary['yesterday_amount'], unit)} "
              f"({summary['yesterday']})")  # fmt: skip
        print(f"  projection     {money(summary['projection'], unit)} "
              f"({summary['projection_percent']:.0f} % of the budget): the month to date plus "
              f"{rate} a day, the mean of the last {summary['rate_days']} day(s), for the "
              f"{summary['days_left']} day(s) left")  # fmt: skip
        drivers = ", ".join(
            f"{d['service']} {money(d['amount'], unit)}" for d in summary["drivers"]
        )
        print(f"  top drivers    {drivers or 'none yet'}")
        if summary["warning"]:
            print("  warning        the projection is at or past 90 % of the budget")
    idle = report["idle_cost"]
    print(f"  idle cost      EUR {idle['total_eur_month']:.2f} a month for what is deployed now "
          f"(playbooks/vars/prices.yml, recorded {idle['recorded']})")  # fmt: skip
    print(f"  stack state    {idle['state']}: {idle['bills_while_idle']}")
    for row in idle["rows"]:
        if row["eur_month"] > 0:
            print(f"                 {row['eur_month']:8.2f}  {row['item']}")
    if report.get("chart"):
        print(f"  chart          {report['chart']}")


def cmd_cost(args: argparse.Namespace) -> int:
    from tlops.common import aws
    from tlops.cost import idle

    endpoint = stand_in()
    env = deployed_environment(f"{project()}-cost-summary")
    try:
        budget, unit = float(env["TL_BUDGET_AMOUNT"]), env["TL_BUDGET_UNIT"]
    except (KeyError, ValueError):
        raise CliError("the cost_summary function has no budget configured: deploy again") from None
    kill_percent = float(env.get("TL_KILL_PERCENT", "105"))
    today = args.as_of or datetime.now(UTC).date()
    summary, problem = read_costs(endpoint, budget, unit, today)
    if endpoint:
        from tlops.local.costs import CANNED_LABEL

        source = CANNED_LABEL
    else:
        source = "Cost Explorer, unblended cost per day"
    report: dict[str, Any] = {
        "project": project(),
        "source": source,
        "canned": bool(endpoint),
        "summary": None if summary is None else summary.as_dict(),
        "problem": problem,
        "idle_cost": idle.report(aws.client, project()),
    }
    if args.png and summary is not None:
        from tlops.cli import chart

        try:
            chart.write(
                summary,
                Path(args.png),
                title=f"{project()}: daily spend against the budget, {summary.today:%B %Y}",
                label=f"{source}" if endpoint else "",
                kill_percent=kill_percent,
            )
        except chart.ChartUnavailable as exc:
            raise CliError(str(exc)) from None
        report["chart"] = str(args.png)
    if args.json:
        print(json.dumps(report, sort_keys=True, default=str))
    else:
        _print(report)
    if args.png and summary is None:
        print(f"tlops: no chart written: {problem}")
    return UNAVAILABLE if summary is None else 0

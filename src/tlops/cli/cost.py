"""`tlops cost`: the month to date against the budget, the projection, the top drivers, and
what the deployment costs a month while idle; `--json` for scripts, `--png PATH` for a chart.

The figures are Cost Explorer's, from the same one request the daily mail makes
(tlops.guard.costs), against the budget the deployed cost_summary function is configured
with. On the local stand-in, which tracks no cost, they are canned (tlops.local.costs) and
say so, in the output and on the chart; the stand-in is read only when named (`--env
local`, or the environment `tlops local env` exports: `tlops.cli.target`). The idle cost is
tlops.cost.idle's report, the one status.yml and teardown.yml print (through the
tl_idle_cost module).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tlops.cli.session import CliError
from tlops.cli.target import Target, resolve

UNAVAILABLE = 3  # the exit code when Cost Explorer gave no figures


def deployed_environment(target: Target, function: str) -> dict[str, str]:
    """The environment the deployed function runs with (alias prod). CliError when it
    cannot be read, saying what to fix: the credentials, or the deploy."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        config = target.client("lambda").get_function_configuration(
            FunctionName=function, Qualifier="prod"
        )
    except (BotoCoreError, ClientError) as exc:
        code = exc.response["Error"].get("Code") if isinstance(exc, ClientError) else None
        problem = target.credentials_problem(exc)
        if problem is None and code == "ResourceNotFoundException":
            problem = (
                f"no function {function} (alias prod) in {target.describe()}: run "
                f"{target.deploy_command} first"
            )
        raise CliError(
            problem or f"cannot read the function {function} in {target.describe()}: {exc}"
        ) from None
    return dict((config.get("Environment") or {}).get("Variables") or {})


def read_costs(target: Target, budget: float, unit: str, today: date):
    """(summary or None, problem): the month's figures as of `today`, canned first on a
    stand-in."""
    from tlops.guard import costs

    ce = target.client("ce")
    if target.stand_in:
        from tlops.local import costs as canned

        try:
            canned.ensure(ce, target.endpoint_url, today)
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
    from tlops.cost import idle

    target = resolve(args)
    env = deployed_environment(target, f"{target.project}-cost-summary")
    try:
        budget, unit = float(env["TL_BUDGET_AMOUNT"]), env["TL_BUDGET_UNIT"]
    except (KeyError, ValueError):
        raise CliError("the cost_summary function has no budget configured: deploy again") from None
    kill_percent = float(env.get("TL_KILL_PERCENT", "105"))
    today = args.as_of or datetime.now(UTC).date()
    summary, problem = read_costs(target, budget, unit, today)
    if target.stand_in:
        from tlops.local.costs import CANNED_LABEL

        source = CANNED_LABEL
    else:
        source = "Cost Explorer, unblended cost per day"
    report: dict[str, Any] = {
        "project": target.project,
        "target": target.describe(),
        "source": source,
        "canned": target.stand_in,
        "summary": None if summary is None else summary.as_dict(),
        "problem": problem,
        "idle_cost": idle.report(target.client, target.project),
    }
    if args.png and summary is not None:
        from tlops.cli import chart

        try:
            chart.write(
                summary,
                Path(args.png),
                title=f"{target.project}: daily spend against the budget, {summary.today:%B %Y}",
                label=source if target.stand_in else "",
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

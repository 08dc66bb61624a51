"""`tlops ops budget-breach | cost-mail`: drive the guard rails' code paths where nothing
fires by itself (on the stand-in no budget evaluates, no schedule runs, no Lambda executes).

`budget-breach --percent 106` publishes to the kill topic the message the budget would send
at that spend and, on the stand-in, runs the deployed budget_killer's code on it here, with
that function's own environment, as the local gateway does for the router. The killer
believes the budget's own spend, not the message: the stand-in's budget spends nothing, so
there the drill lends it the spend it simulates. On an account it only publishes
(`--drill`, and only where the caller's own IAM policy allows sns:Publish: the topic's
policy grants it to AWS Budgets alone): AWS then runs the real killer, which stops
everything only if the account's actual spend is past the kill line, and otherwise logs the
message as stale or forged.

`cost-mail --dry-run` prints the mail the daily cost summary would send; without
`--dry-run` it publishes it to the cost topic.

The stand-in or an account: `tlops.cli.target` decides (the stand-in only when named).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from tlops.cli.cost import deployed_environment
from tlops.cli.exits import ExitCode
from tlops.cli.session import CliError
from tlops.cli.target import Target, resolve
from tlops.common.pages import TooManyPages, all_items
from tlops.common.telemetry import Telemetry


class _Stderr:
    """sys.stderr as it is when written to (a test may swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextlib.contextmanager
def as_lambda(target: Target, env: dict[str, str]):
    """While a deployed function's code runs here (the stand-in runs no Lambda): the process
    environment as Lambda gives it, the function's own configuration and the runtime's
    region and keys; the environment as it was afterwards."""
    saved = dict(os.environ)
    os.environ.update({**target.lambda_environment(), **env})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def logs_to_stderr(module):
    """The function's log lines go where the operator's errors go: stdout keeps the report."""
    saved = module.telemetry
    module.telemetry = Telemetry(saved.service, stream=_Stderr())  # type: ignore[arg-type]
    try:
        yield
    finally:
        module.telemetry = saved


def _kill_topic(sns, function_arn: str) -> str:
    """The topic subscribed to the killer (its alias or the function itself)."""
    try:
        found = all_items(sns.list_subscriptions, "Subscriptions")
    except TooManyPages as exc:
        raise CliError(f"the account's SNS subscriptions: {exc}") from None
    topics = sorted(
        s["TopicArn"]
        for s in found
        if s.get("Protocol") == "lambda"
        and (
            s.get("Endpoint") == function_arn
            or s.get("Endpoint", "").startswith(function_arn + ":")
        )
    )
    if not topics:
        raise CliError(f"no SNS topic invokes {function_arn}: run playbooks/deploy.yml")
    return topics[0]


def budget_breach(args: argparse.Namespace) -> int:
    from tlops.guard import killer, notification

    if not 0 < args.percent <= 10_000:
        raise CliError(
            f"--percent is the spend as a percentage of the budget, above 0 (got {args.percent:g})"
        )
    target = resolve(args)
    if not target.stand_in and not args.drill:
        raise CliError(
            f"this is a real account, {target.describe()}: publishing the breach makes AWS "
            "run the budget killer, which stops the node and deletes the queue if the actual "
            "spend is past the kill line. Pass --drill to do that on purpose (or --env local "
            "for the stand-in)."
        )
    function = f"{target.project}-budget-killer"
    env = deployed_environment(target, function)
    try:
        config = killer.KillerConfig.from_env(env)
    except RuntimeError as exc:
        raise CliError(f"{function}: {exc}: deploy again") from None
    budget = target.client("budgets").describe_budget(
        AccountId=config.account, BudgetName=config.budget_name
    )["Budget"]
    limit = float(budget["BudgetLimit"]["Amount"])
    unit = budget["BudgetLimit"]["Unit"]
    spend = round(limit * args.percent / 100, 2)
    now = datetime.now(UTC)
    message = notification.budget_message(
        budget_name=config.budget_name, account=config.account, limit=limit, unit=unit,
        threshold_percent=config.kill_percent, spend=spend, when=now,
    )  # fmt: skip
    sns = target.client("sns")
    arn = target.client("lambda").get_function_configuration(FunctionName=function)["FunctionArn"]
    topic = _kill_topic(sns, arn.rsplit(":", 1)[0] if arn.count(":") > 6 else arn)
    subject = f"AWS Budgets: {config.budget_name} has exceeded your alert threshold"
    delivered = "published to"
    try:
        message_id = sns.publish(TopicArn=topic, Subject=subject, Message=message)["MessageId"]
    except (BotoCoreError, ClientError, ResponseParserError) as exc:
        if not target.stand_in:
            raise CliError(f"could not publish to {topic}: {exc}") from None
        # moto runs a topic's Lambda subscribers in Docker, which it lacks: it answers 500.
        message_id = str(uuid.uuid4())
        delivered = "not deliverable by the stand-in (it runs Lambda subscribers in Docker) to"
    out = {
        "budget": config.budget_name,
        "limit": limit,
        "unit": unit,
        "percent": args.percent,
        "spend": spend,
        "topic": topic,
        "message_id": message_id,
        "delivered": delivered,
    }
    if not target.stand_in:
        out["ran"] = "on AWS: see the log group /aws/lambda/" + function
        print(json.dumps(out) if args.json else f"published {message_id} to {topic}; {out['ran']}")
        return 0
    event = notification.sns_event(
        topic_arn=topic, message_id=message_id, message=message, when=now
    )

    def client(service: str):
        made = target.client(service)
        return _LentSpend(made, spend, unit) if service == "budgets" else made

    with as_lambda(target, env), logs_to_stderr(killer):
        report = killer.handle(event, config, client, now)
    out |= {"ran": "here, with the deployed function's environment", **report.as_dict()}
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        _say(out, report, config.kill_percent, function)
    return 1 if report.failed else 0


class _LentSpend:
    """The stand-in's budgets client, answering DescribeBudget with the drill's spend as the
    budget's actual spend: the stand-in accrues none, and the killer believes only that."""

    def __init__(self, budgets, spend: float, unit: str):
        self._budgets, self._spend, self._unit = budgets, spend, unit

    def describe_budget(self, **request):
        answer = self._budgets.describe_budget(**request)
        spent = {"Amount": f"{self._spend:.2f}", "Unit": self._unit}
        answer["Budget"]["CalculatedSpend"] = {"ActualSpend": spent}
        return answer


def _say(out: dict, report, kill_percent: float, function: str) -> None:
    unit, limit, spend = out["unit"], out["limit"], out["spend"]
    print(f"budget {out['budget']}: limit {unit} {limit:.2f}; a breach at {out['percent']:g} % "
          f"is {unit} {spend:.2f} (the kill line is {kill_percent:g} %)")  # fmt: skip
    print(f"the budget's message {out['delivered']} {out['topic']} ({out['message_id']}); ran "
          f"{function} on it here, as SNS would (the stand-in runs no Lambda)")  # fmt: skip
    for reason in report.reasons:
        print(f"  {reason}")
    for action in report.actions:
        detail = f" ({action.detail})" if action.detail else ""
        print(f"  {action.outcome:6} {action.kind:15} {action.resource}: {action.why}{detail}")
    if report.acted and not report.actions:
        print("  nothing was running or deployed that costs by the hour: nothing to do")


def cost_mail(args: argparse.Namespace) -> int:
    from tlops.guard import summary

    target = resolve(args)
    env = deployed_environment(target, f"{target.project}-cost-summary")
    try:
        config = summary.SummaryConfig.from_env(env)
    except RuntimeError as exc:
        raise CliError(f"{exc}: deploy again") from None
    today = datetime.now(UTC).date()
    ce = target.client("ce")
    if target.stand_in:
        from tlops.local import costs as canned

        canned.ensure(ce, target.endpoint_url, today)
        print(f"({canned.CANNED_LABEL})")
    if args.dry_run:
        with logs_to_stderr(summary):
            mail = summary.build(config, ce, today)
        print(f"To: {config.topic_arn}\nSubject: {mail.subject}\n\n{mail.body}", end="")
        return ExitCode.UNHEALTHY if mail.problem else ExitCode.OK
    with logs_to_stderr(summary):
        mail, message_id = summary.send(config, ce, target.client("sns"), today)
    print(f"published {message_id} to {config.topic_arn}: {mail.subject}")
    return ExitCode.UNHEALTHY if mail.problem else ExitCode.OK


def cmd_ops(args: argparse.Namespace) -> int:
    from tlops.cli import nap

    verbs = {"budget-breach": budget_breach, "cost-mail": cost_mail, "sleep": nap.sleep,
             "wake": nap.wake}  # fmt: skip
    return verbs[args.action](args)

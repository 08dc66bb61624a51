"""The budget killer: when the budget's actual spend passes the kill line (105 %), stop what
costs money by the hour, and touch nothing that is not the project's.

Subscribed to the budget's kill topic. For a notification it believes, it

1. leaves its mark in the control bucket (`killed.json`), which keeps every wake off
   (control refuses them) until deploy.yml runs again: a request that comes after the
   kill, or a wake under way, restarts nothing behind it;
2. stops the running instances tagged `Project=<project>`, `Role=gpu` (the node);
3. terminates the instances tagged `Project=<project>`, `Role=bake` (a bake's build
   instance that Packer could not clean up: see `terminate_bakes` for why not a stop);
4. releases the Elastic IPs tagged `Project=<project>` (disassociating them first);
5. deletes the queue's replication groups (`<prefix>-<n>`) that carry `Project` and
   `Role=queue`;

and emits `BudgetStops` (the number of things it stopped or deleted). Every action, and
every notification it ignores, is logged with what and why.

Whom it believes (each rule makes a repeated, late, out-of-order or forged delivery
harmless): the notification must be for the configured budget, about ACTUAL spend and sent
in the current budget period (the calendar month, UTC); then the amount is not the
message's but the budget's own, re-read from AWS Budgets (its actual spend against its
limit as they are now): the killer acts only when that spend is at or above the kill line.
A repeated delivery finds everything already stopped and changes nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from tlops.common import settings_table
from tlops.common.pages import TooManyPages, all_items
from tlops.common.settings_table import number, setting
from tlops.common.telemetry import Telemetry
from tlops.contract import names
from tlops.contract.states import NODE_LIVE_STATES, NODE_UP_STATES
from tlops.guard import notification
from tlops.guard.notification import Delivery

telemetry = Telemetry("budget_killer")

NODE_ROLE = names.NODE_ROLE
_CENT = 0.005


@dataclasses.dataclass(frozen=True)
class KillerConfig:
    project: str = setting(None, "TL_PROJECT", "the Project tag of what it stops")
    budget_name: str = setting(None, "TL_BUDGET_NAME", "the budget whose alerts it believes")
    account: str = setting(None, "TL_ACCOUNT_ID", "the account the budget belongs to")
    region: str = setting(None, "TL_AWS_REGION", "where it acts; default: the Lambda's", "")
    kill_percent: float = setting(
        None, "TL_KILL_PERCENT", "% of the budget that kills", 105.0, number(float)
    )
    queue_prefix: str = setting(
        None, "TL_QUEUE_PREFIX", "the queue groups' id prefix; empty: none is deployed", ""
    )
    control_bucket: str = setting(
        None, "TL_CONTROL_BUCKET", "where the mark goes; empty: there is none", ""
    )

    def __post_init__(self) -> None:
        if not self.region:
            from tlops.common import aws

            object.__setattr__(self, "region", aws.region())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KillerConfig:
        return settings_table.from_env(cls, os.environ if env is None else env, "budget killer")


class Step(enum.StrEnum):
    """What the killer does, in this order."""

    MARK_KILLED = "mark-killed"  # killed.json: control refuses every wake from now on
    STOP_INSTANCE = "stop-instance"
    TERMINATE_BAKE = "terminate-bake"
    RELEASE_ADDRESS = "release-address"
    DELETE_QUEUE = "delete-queue"


class Result(enum.StrEnum):
    DONE = "done"
    FAILED = "failed"


class Action(NamedTuple):
    kind: Step
    resource: str
    outcome: Result
    why: str
    detail: str = ""


class Report(NamedTuple):
    acted: bool  # a notification was believed
    reasons: list[str]  # why each notification was believed or ignored
    actions: list[Action]

    @property
    def changed(self) -> bool:
        return any(a.outcome is Result.DONE for a in self.actions)

    @property
    def failed(self) -> list[Action]:
        return [a for a in self.actions if a.outcome is Result.FAILED]

    def as_dict(self) -> dict[str, Any]:
        return {
            "acted": self.acted,
            "changed": self.changed,
            "reasons": self.reasons,
            "actions": [a._asdict() for a in self.actions],
        }


class KillIncomplete(RuntimeError):
    """Some action failed: raised to the Lambda runtime so that it retries (harmless)."""


def _errors():
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, TooManyPages)


# --- whom to believe ---------------------------------------------------------------------
class BudgetNow(NamedTuple):
    limit: float
    actual: float  # CalculatedSpend.ActualSpend: what AWS Budgets counts as spent this period


def read_budget(budgets: Any, config: KillerConfig) -> BudgetNow:
    """The budget's limit and actual spend as AWS Budgets has them now. DescribeBudget is
    allowed by budgets:ViewBudget on the budget (the Service Authorization Reference for AWS
    Budget Service: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsbudgetservice.html),
    and its answer carries `CalculatedSpend.ActualSpend` (the Budgets API reference:
    https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_budgets_CalculatedSpend.html).
    Raises KeyError or ValueError when the answer lacks either."""
    budget = budgets.describe_budget(AccountId=config.account, BudgetName=config.budget_name)
    budget = budget["Budget"]
    return BudgetNow(
        limit=float(budget["BudgetLimit"]["Amount"]),
        actual=float(budget["CalculatedSpend"]["ActualSpend"]["Amount"]),
    )


def judge(
    delivery: Delivery, config: KillerConfig, budgets: Any, now: datetime
) -> tuple[str | None, str]:
    """(None, note) when the notification calls for the kill; else (why it is ignored, "")."""
    alert = delivery.alert
    if alert.budget_name != config.budget_name:
        return f"a notification for budget {alert.budget_name!r}, not {config.budget_name!r}", ""
    if alert.alert_type != "ACTUAL":
        return f"a {alert.alert_type} alert: only actual spend stops anything", ""
    if (delivery.sent_at.year, delivery.sent_at.month) != (now.year, now.month):
        return f"sent {delivery.sent_at:%Y-%m-%d}, in a budget period that has ended", ""
    try:
        budget = read_budget(budgets, config)
    except _errors() as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code == "NotFoundException":
            return f"budget {config.budget_name!r} no longer exists", ""
        return _judge_by_the_message(alert, config, f"the budget could not be re-read ({exc})")
    except (KeyError, TypeError, ValueError) as exc:
        return _judge_by_the_message(alert, config, f"the budget's answer lacks {exc}")
    kill_line = budget.limit * config.kill_percent / 100
    said = f"{alert.amount:.2f}" if alert.amount is not None else "no amount"
    if budget.actual < kill_line - _CENT:
        return (
            f"the budget's actual spend is {budget.actual:.2f}, under the kill line "
            f"{kill_line:.2f} ({config.kill_percent:g} % of {budget.limit:.2f}); the message "
            f"said {said}: a stale or forged notification"
        ), ""
    return None, f"the budget re-read: actual spend {budget.actual:.2f} of {budget.limit:.2f}"


def _judge_by_the_message(
    alert: notification.BudgetAlert, config: KillerConfig, why: str
) -> tuple[str | None, str]:
    """When AWS Budgets cannot say, the message decides: refusing to act would leave the
    spend running, and a forger would need to make the killer's own read fail as well."""
    note = f"{why}; the message decides"
    if alert.budgeted is None:
        return None, note
    kill_line = alert.budgeted * config.kill_percent / 100
    reported = alert.amount if alert.amount is not None else alert.threshold
    if reported is not None and reported < kill_line - _CENT:
        return (
            f"{why}; it reports {reported:.2f}, under the kill line {kill_line:.2f} "
            f"({config.kill_percent:g} % of {alert.budgeted:.2f}): not a kill notification"
        ), ""
    return None, note


# --- what to stop ---------------------------------------------------------------------------
def tagged_instances(
    ec2: Any, config: KillerConfig, role: str, states: tuple[str, ...]
) -> list[str]:
    """The ids of the instances tagged Project=<project> and Role=<role> in one of `states`."""
    in_state = {"Name": "instance-state-name", "Values": list(states)}
    reservations = all_items(
        ec2.describe_instances,
        "Reservations",
        Filters=[*names.tag_filters(config.project, role), in_state],
    )
    return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])


def stop_nodes(ec2: Any, config: KillerConfig, why: str) -> list[Action]:
    ids = tagged_instances(ec2, config, NODE_ROLE, NODE_UP_STATES)
    if not ids:
        return []
    because = f"tagged Project={config.project}, Role={NODE_ROLE} and running; {why}"
    try:
        ec2.stop_instances(InstanceIds=ids)
    except _errors() as exc:
        return [Action(Step.STOP_INSTANCE, i, Result.FAILED, because, str(exc)) for i in ids]
    return [Action(Step.STOP_INSTANCE, i, Result.DONE, because) for i in ids]


def terminate_bakes(ec2: Any, config: KillerConfig, why: str) -> list[Action]:
    """Terminate, not stop, what a bake left (running or stopped): a build instance holds
    nothing to keep. Packer makes the image only from a build that passed its validation,
    and a stopped bake never resumes (Packer's run and its SSH session are gone), whereas a
    stopped instance would go on billing its root volume, invisible to everything else.
    Terminated, the volume goes with it (delete_on_termination in packer/source.pkr.hcl).
    The node, by contrast, is the deployment's: it is only stopped."""
    ids = tagged_instances(ec2, config, names.BAKE_ROLE, NODE_LIVE_STATES)
    if not ids:
        return []
    because = (
        f"tagged Project={config.project}, Role={names.BAKE_ROLE}: a bake's build instance, "
        f"which holds nothing to keep; {why}"
    )
    try:
        ec2.terminate_instances(InstanceIds=ids)
    except _errors() as exc:
        return [Action(Step.TERMINATE_BAKE, i, Result.FAILED, because, str(exc)) for i in ids]
    return [Action(Step.TERMINATE_BAKE, i, Result.DONE, because) for i in ids]


def release_addresses(ec2: Any, config: KillerConfig, why: str) -> list[Action]:
    addresses = ec2.describe_addresses(Filters=names.tag_filters(config.project))["Addresses"]
    actions = []
    for address in sorted(addresses, key=lambda a: a.get("AllocationId", "")):
        allocation = address.get("AllocationId", address.get("PublicIp", ""))
        because = f"tagged Project={config.project}: an Elastic IP bills by the hour; {why}"
        try:
            if address.get("AssociationId"):
                ec2.disassociate_address(AssociationId=address["AssociationId"])
            ec2.release_address(AllocationId=address["AllocationId"])
        except _errors() as exc:
            failed = Action(Step.RELEASE_ADDRESS, allocation, Result.FAILED, because, str(exc))
            actions.append(failed)
            continue
        detail = f"{address.get('PublicIp', '')} released"
        actions.append(Action(Step.RELEASE_ADDRESS, allocation, Result.DONE, because, detail))
    return actions


def delete_queue(elasticache: Any, config: KillerConfig, why: str) -> list[Action]:
    from tlops.control import queue

    if not config.queue_prefix:
        return []
    because = f"the queue (tagged Project={config.project}, Role=queue) bills by the hour; {why}"
    try:
        deleted = queue.delete(elasticache, config.project, config.queue_prefix)
    except queue.QueueError as exc:
        every = f"{config.queue_prefix}-*"
        return [Action(Step.DELETE_QUEUE, every, Result.FAILED, because, str(exc))]
    return [Action(Step.DELETE_QUEUE, group_id, Result.DONE, because) for group_id in deleted]


def mark_killed(s3: Any, config: KillerConfig, why: str) -> list[Action]:
    """The mark that keeps control from waking anything until deploy.yml runs again."""
    import json

    from tlops.contract import control

    if not config.control_bucket:
        return []
    because = f"no wake may restart what this kill stops; {why}"
    mark = {"at_ms": int(datetime.now(UTC).timestamp() * 1000), "why": why}
    try:
        # Only where there is none: a repeated delivery changes nothing (the first kill's
        # mark stays, with its time), as the module promises.
        s3.put_object(
            Bucket=config.control_bucket, Key=control.KILLED_KEY, Body=json.dumps(mark).encode(),
            IfNoneMatch="*",
        )  # fmt: skip
    except _errors() as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return []  # marked already, by an earlier delivery of this kill or another one
        return [Action(Step.MARK_KILLED, config.control_bucket, Result.FAILED, because, str(exc))]
    return [Action(Step.MARK_KILLED, config.control_bucket, Result.DONE, because)]


# --- the whole run -------------------------------------------------------------------------
def handle(event: Any, config: KillerConfig, client: Any, now: datetime | None = None) -> Report:
    """Judge the event's notifications and, if one is believed, stop everything that costs.
    `client(service)` makes a boto3 client."""
    now = now or datetime.now(UTC)
    found, problems = notification.deliveries(event)
    reasons = [f"ignored: {problem}" for problem in problems]
    believed: Delivery | None = None
    believed_note = ""
    budgets = client("budgets") if found else None
    for delivery in found:
        refused, note = judge(delivery, config, budgets, now)
        reason = (
            f"believed: {delivery.message_id} ({note})"
            if refused is None
            else f"ignored: {refused}"
        )
        reasons.append(reason)
        if refused is None and believed is None:
            believed, believed_note = delivery, note
    for reason in reasons:
        telemetry.log("WARNING" if reason.startswith("believed") else "INFO", reason)
    if believed is None:
        return Report(False, reasons, [])

    why = (
        f"budget {believed.alert.budget_name} is past the kill line ({config.kill_percent:g} %): "
        f"{believed_note}, notification {believed.message_id}"
    )
    ec2 = client("ec2")
    actions: list[Action] = []
    steps = (
        (Step.MARK_KILLED, lambda: mark_killed(client("s3"), config, why)),
        (Step.STOP_INSTANCE, lambda: stop_nodes(ec2, config, why)),
        (Step.TERMINATE_BAKE, lambda: terminate_bakes(ec2, config, why)),
        (Step.RELEASE_ADDRESS, lambda: release_addresses(ec2, config, why)),
        (Step.DELETE_QUEUE, lambda: delete_queue(client("elasticache"), config, why)),
    )
    for kind, step in steps:
        try:
            actions += step()
        except _errors() as exc:  # the lookup itself failed: nothing known, try the rest
            actions.append(Action(kind, "(lookup)", Result.FAILED, why, str(exc)))
    for action in actions:
        level = "ERROR" if action.outcome is Result.FAILED else "WARNING"
        telemetry.log(level, f"budget killer {action.kind}", **action._asdict())
    if not any(a.kind is not Step.MARK_KILLED for a in actions):
        telemetry.log("INFO", "nothing was running or deployed that costs by the hour", why=why)
    stopped = sum(a.outcome is Result.DONE and a.kind is not Step.MARK_KILLED for a in actions)
    telemetry.metric("BudgetStops", stopped)
    return Report(True, reasons, actions)


def _client(service: str):
    from tlops.common import aws

    return aws.client(service, connect_timeout=2.0, read_timeout=5.0, max_attempts=3)


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (re-exported by lambda_src/budget_killer)."""
    report = handle(event, KillerConfig.from_env(), _client)
    if report.failed:
        # Lambda retries an asynchronous invocation twice: every step is safe to repeat.
        raise KillIncomplete(f"{len(report.failed)} action(s) failed: {report.failed}")
    return report.as_dict()

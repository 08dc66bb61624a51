"""The budget killer: when the budget's actual spend passes the kill line (105 %), stop what
costs money by the hour, and touch nothing that is not the project's.

Subscribed to the budget's kill topic. For a notification it believes, it

1. stops the running instances tagged `Project=<project>`, `Role=gpu` (the node);
2. releases the Elastic IPs tagged `Project=<project>` (disassociating them first);
3. deletes the router's EC2 interface endpoint (tagged `Project`, `Role=router`), which
   exists only to reach the node and bills by the hour;
4. deletes the queue's replication group, if it carries `Project` and `Role=queue`;

and emits `BudgetStops` (the number of things it stopped or deleted). Every action, and
every notification it ignores, is logged with what and why.

Whom it believes (each rule makes a repeated, late or out-of-order delivery harmless):
the notification must be for the configured budget, about ACTUAL spend, sent in the
current budget period (the calendar month, UTC), for the budget's limit as it is now (a
message sent before the limit was raised is stale), and report spend at or above the kill
line. A repeated delivery finds everything already stopped and changes nothing.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, NamedTuple

from tlops.common.telemetry import Telemetry
from tlops.guard import notification
from tlops.guard.notification import Delivery

telemetry = Telemetry("budget_killer")

NODE_ROLE = "gpu"
QUEUE_ROLE = "queue"
ENDPOINT_ROLE = "router"
_CENT = 0.005


class KillerConfig(NamedTuple):
    project: str
    budget_name: str
    account: str
    region: str
    kill_percent: float = 105.0
    queue_id: str = ""  # the queue's replication group id; "" when none is deployed

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> KillerConfig:
        env = dict(os.environ if env is None else env)
        needed = ("TL_PROJECT", "TL_BUDGET_NAME", "TL_ACCOUNT_ID")
        missing = [name for name in needed if not env.get(name)]
        if missing:
            raise RuntimeError(f"budget killer configuration incomplete, set: {', '.join(missing)}")
        from tlops.common import aws

        return cls(
            project=env["TL_PROJECT"],
            budget_name=env["TL_BUDGET_NAME"],
            account=env["TL_ACCOUNT_ID"],
            region=env.get("TL_AWS_REGION") or aws.region(),
            kill_percent=float(env.get("TL_KILL_PERCENT", "105")),
            queue_id=env.get("TL_QUEUE_ID", ""),
        )


class Action(NamedTuple):
    kind: str  # stop-instance, release-address, delete-endpoint, delete-queue
    resource: str
    outcome: str  # done, failed
    why: str
    detail: str = ""


class Report(NamedTuple):
    acted: bool  # a notification was believed
    reasons: list[str]  # why each notification was believed or ignored
    actions: list[Action]

    @property
    def changed(self) -> bool:
        return any(a.outcome == "done" for a in self.actions)

    @property
    def failed(self) -> list[Action]:
        return [a for a in self.actions if a.outcome == "failed"]

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

    return (BotoCoreError, ClientError)


def _tag_filters(project: str, role: str | None = None) -> list[dict[str, Any]]:
    filters = [{"Name": "tag:Project", "Values": [project]}]
    if role:
        filters.append({"Name": "tag:Role", "Values": [role]})
    return filters


# --- whom to believe ---------------------------------------------------------------------
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
    note = "the budget's limit re-read"
    try:
        budget = budgets.describe_budget(AccountId=config.account, BudgetName=config.budget_name)
        limit = float(budget["Budget"]["BudgetLimit"]["Amount"])
    except _errors() as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code == "NotFoundException":
            return f"budget {config.budget_name!r} no longer exists", ""
        # Refusing to act would leave the spend running: the message decides.
        note = f"the budget could not be re-read ({exc}); the message decides"
        limit = alert.budgeted
    if limit is not None and alert.budgeted is not None and abs(alert.budgeted - limit) > _CENT:
        return (
            f"sent for a limit of {alert.budgeted:.2f}; the budget's limit is {limit:.2f} now "
            "(changed since: a stale notification)"
        ), ""
    if limit is None:
        return None, note
    kill_line = limit * config.kill_percent / 100
    reported = alert.amount if alert.amount is not None else alert.threshold
    if reported is not None and reported < kill_line - _CENT:
        return (
            f"it reports {reported:.2f}, under the kill line {kill_line:.2f} "
            f"({config.kill_percent:g} % of {limit:.2f}): not a kill notification"
        ), ""
    return None, note


# --- what to stop --------------------------------------------------------------------------
def _pages(call: Any, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    items, token = [], None
    while True:
        answer = call(**kwargs, **({"NextToken": token} if token else {}))
        items += answer.get(key, [])
        token = answer.get("NextToken")
        if not token:
            return items


def stop_nodes(ec2: Any, config: KillerConfig, why: str) -> list[Action]:
    live = {"Name": "instance-state-name", "Values": ["pending", "running"]}
    reservations = _pages(
        ec2.describe_instances,
        "Reservations",
        Filters=[*_tag_filters(config.project, NODE_ROLE), live],
    )
    ids = sorted(i["InstanceId"] for r in reservations for i in r["Instances"])
    if not ids:
        return []
    because = f"tagged Project={config.project}, Role={NODE_ROLE} and running; {why}"
    try:
        ec2.stop_instances(InstanceIds=ids)
    except _errors() as exc:
        return [Action("stop-instance", i, "failed", because, str(exc)) for i in ids]
    return [Action("stop-instance", i, "done", because) for i in ids]


def release_addresses(ec2: Any, config: KillerConfig, why: str) -> list[Action]:
    addresses = ec2.describe_addresses(Filters=_tag_filters(config.project))["Addresses"]
    actions = []
    for address in sorted(addresses, key=lambda a: a.get("AllocationId", "")):
        allocation = address.get("AllocationId", address.get("PublicIp", ""))
        because = f"tagged Project={config.project}: an Elastic IP bills by the hour; {why}"
        try:
            if address.get("AssociationId"):
                ec2.disassociate_address(AssociationId=address["AssociationId"])
            ec2.release_address(AllocationId=address["AllocationId"])
        except _errors() as exc:
            actions.append(Action("release-address", allocation, "failed", because, str(exc)))
            continue
        detail = f"{address.get('PublicIp', '')} released"
        actions.append(Action("release-address", allocation, "done", because, detail))
    return actions


def delete_endpoints(ec2: Any, config: KillerConfig, why: str) -> list[Action]:
    filters = [
        *_tag_filters(config.project, ENDPOINT_ROLE),
        {"Name": "service-name", "Values": [f"com.amazonaws.{config.region}.ec2"]},
        {"Name": "vpc-endpoint-type", "Values": ["Interface"]},
        {"Name": "vpc-endpoint-state", "Values": ["pending", "available"]},
    ]
    found = _pages(ec2.describe_vpc_endpoints, "VpcEndpoints", Filters=filters)
    ids = sorted(e["VpcEndpointId"] for e in found if e.get("VpcEndpointType") == "Interface")
    if not ids:
        return []
    because = (
        f"the router's EC2 interface endpoint (tagged Project={config.project}, "
        f"Role={ENDPOINT_ROLE}) bills by the hour and serves only cold boots; {why}"
    )
    try:
        ec2.delete_vpc_endpoints(VpcEndpointIds=ids)
    except _errors() as exc:
        return [Action("delete-endpoint", i, "failed", because, str(exc)) for i in ids]
    return [Action("delete-endpoint", i, "done", because) for i in ids]


def delete_queue(elasticache: Any, config: KillerConfig, why: str) -> list[Action]:
    if not config.queue_id:
        return []
    try:
        groups = elasticache.describe_replication_groups(ReplicationGroupId=config.queue_id)
    except _errors() as exc:
        if "ReplicationGroupNotFound" in str(exc):
            return []
        raise
    group = (groups.get("ReplicationGroups") or [{}])[0]
    if not group or group.get("Status") in ("deleting", "deleted"):
        return []
    tags = {
        t["Key"]: t["Value"]
        for t in elasticache.list_tags_for_resource(ResourceName=group["ARN"]).get("TagList", [])
    }
    if (tags.get("Project"), tags.get("Role")) != (config.project, QUEUE_ROLE):
        telemetry.log(
            "WARNING",
            "replication group left alone",
            resource=config.queue_id,
            why=f"not tagged Project={config.project}, Role={QUEUE_ROLE} (tags: {tags})",
        )
        return []
    because = (
        f"the queue (tagged Project={config.project}, Role={QUEUE_ROLE}) bills by the hour; {why}"
    )
    try:
        elasticache.delete_replication_group(
            ReplicationGroupId=config.queue_id, RetainPrimaryCluster=False
        )
    except _errors() as exc:
        return [Action("delete-queue", config.queue_id, "failed", because, str(exc))]
    return [Action("delete-queue", config.queue_id, "done", because)]


# --- the whole run -------------------------------------------------------------------------
def handle(event: Any, config: KillerConfig, client: Any, now: datetime | None = None) -> Report:
    """Judge the event's notifications and, if one is believed, stop everything that costs.
    `client(service)` makes a boto3 client."""
    now = now or datetime.now(UTC)
    found, problems = notification.deliveries(event)
    reasons = [f"ignored: {problem}" for problem in problems]
    believed: Delivery | None = None
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
            believed = delivery
    for reason in reasons:
        telemetry.log("WARNING" if reason.startswith("believed") else "INFO", reason)
    if believed is None:
        return Report(False, reasons, [])

    alert = believed.alert
    spend = f"{alert.amount:.2f}" if alert.amount is not None else "?"
    why = (
        f"budget {alert.budget_name} reports actual spend {spend}, past the kill line "
        f"({config.kill_percent:g} %), notification {believed.message_id}"
    )
    ec2 = client("ec2")
    actions: list[Action] = []
    steps = (
        ("stop-instance", lambda: stop_nodes(ec2, config, why)),
        ("release-address", lambda: release_addresses(ec2, config, why)),
        ("delete-endpoint", lambda: delete_endpoints(ec2, config, why)),
        ("delete-queue", lambda: delete_queue(client("elasticache"), config, why)),
    )
    for kind, step in steps:
        try:
            actions += step()
        except _errors() as exc:  # the lookup itself failed: nothing known, try the rest
            actions.append(Action(kind, "(lookup)", "failed", why, str(exc)))
    for action in actions:
        level = "ERROR" if action.outcome == "failed" else "WARNING"
        telemetry.log(level, f"budget killer {action.kind}", **action._asdict())
    if not actions:
        telemetry.log("INFO", "nothing was running or deployed that costs by the hour", why=why)
    telemetry.metric("BudgetStops", sum(a.outcome == "done" for a in actions))
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

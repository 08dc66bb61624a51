"""`eip_watch`: a scheduled Lambda that counts the project's Elastic IPs nobody uses.

The node has no Elastic IP (its public address comes and goes with it), but an
address left behind, by an earlier design, by hand or by a half-finished
teardown, bills about €3.3 a month while it sits unassociated. Every fifteen
minutes (an EventBridge rule of the observability role) this function lists the
addresses tagged `Project=<project>` and emits `DetachedEIPs`, how many of them
are associated with nothing; an alarm fires when that stays above zero for an
hour. It runs outside the VPC (it needs only the EC2 API) and may only describe
addresses (access.yml).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from tlops.common import settings_table
from tlops.common.settings_table import setting
from tlops.common.telemetry import Telemetry
from tlops.contract import names

telemetry = Telemetry("eip_watch")


@dataclasses.dataclass(frozen=True)
class EipWatchSettings:
    project: str = setting(None, "TL_PROJECT", "the Project tag of the addresses", names.PROJECT)


def detached(ec2: Any, project: str) -> list[dict[str, str]]:
    """The project's addresses that no instance or network interface holds."""
    answer = ec2.describe_addresses(Filters=names.tag_filters(project))
    return [
        {"publicIp": a.get("PublicIp", ""), "allocationId": a.get("AllocationId", "")}
        for a in answer.get("Addresses", [])
        if not a.get("AssociationId") and not a.get("InstanceId")
    ]


def watch(ec2: Any, project: str) -> dict[str, Any]:
    """One look: the metric, and one log line naming each detached address."""
    found = detached(ec2, project)
    telemetry.metric("DetachedEIPs", len(found))
    for address in found:
        telemetry.log("WARNING", "elastic ip detached", project=project, **address)
    return {"project": project, "detached": found}


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    from tlops.common import aws

    found = settings_table.from_env(EipWatchSettings, os.environ, "eip_watch")
    return watch(aws.client("ec2", connect_timeout=2.0, read_timeout=5.0), found.project)

"""The queue as ElastiCache sees it: this wake's replication group, found by its tags.

Asleep, the stack has no queue; a wake creates one. A deleted group's id stays
taken until ElastiCache has finished deleting it (minutes on AWS; never on the
stand-in), so every group gets a fresh id, `<prefix>-<n>` with `n` one more than
any group of the prefix still listed, and is known by its tags (`Project`,
`Role=queue`), never by a fixed id. Two wakes at once compute the same id: the
second CreateReplicationGroup is refused as a duplicate, which means the queue
is coming, so there is one create however many ask.

What a new group looks like comes from one place: `QueueSpec`, which deploy.yml
writes into control's configuration from the settings the queue role applied
with `tl_elasticache`, and `create_kwargs`, which both use. Only control creates
a group (tlops.control.wake); the budget killer, which imports this module to
delete one, may not.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from tlops.common.pages import TooManyPages, each_item
from tlops.contract import names
from tlops.contract.states import QUEUE_COMING_STATUSES, QUEUE_UP_STATUSES

ROLE = names.QUEUE_ROLE
# ElastiCache replication group ids: 1-40 letters, digits and hyphens, starting with a letter,
# no two hyphens in a row and none at the end.
# https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_CreateReplicationGroup.html
ID_MAX = 40
_MOST_PAGES = 20  # 100 groups a page: 2000 groups in the account is past any solo account


class QueueError(Exception):
    """ElastiCache refused or did not answer; the message holds its words (for the log)."""


class QueueSpec(NamedTuple):
    """A new queue group's settings: what deploy.yml applied with tl_elasticache."""

    id_prefix: str
    node_type: str = "cache.t4g.micro"
    engine_version: str = "7.1"
    port: int = 6379
    at_rest_encryption: bool = True
    transit_encryption: bool = True
    subnet_group: str = ""
    parameter_group: str = ""  # "" for the engine's default one
    security_group_ids: tuple[str, ...] = ()
    snapshot_retention_limit: int = 0
    description: str = ""
    tags: dict[str, str] = {}  # noqa: RUF012 - NamedTuple defaults are shared, never mutated

    def to_json(self) -> str:
        return json.dumps(self._asdict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> QueueSpec:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the queue spec is not JSON: {exc}") from None
        if not isinstance(data, dict) or not data.get("id_prefix"):
            raise ValueError("the queue spec must be a JSON object with an id_prefix")
        unknown = sorted(set(data) - set(cls._fields))
        if unknown:
            raise ValueError(f"the queue spec has unknown keys: {', '.join(unknown)}")
        data["security_group_ids"] = tuple(data.get("security_group_ids") or ())
        data["tags"] = {str(k): str(v) for k, v in (data.get("tags") or {}).items()}
        return cls(**data)


def create_kwargs(spec: QueueSpec, group_id: str) -> dict[str, Any]:
    """CreateReplicationGroup's arguments for one node (at-rest encryption exists only for
    replication groups, which is why the queue is one)."""
    kwargs: dict[str, Any] = {
        "ReplicationGroupId": group_id,
        "ReplicationGroupDescription": spec.description or "Managed by tl_elasticache",
        "Engine": "redis",
        "EngineVersion": spec.engine_version,
        "CacheNodeType": spec.node_type,
        "NumCacheClusters": 1,
        "AutomaticFailoverEnabled": False,
        "AtRestEncryptionEnabled": spec.at_rest_encryption,
        "TransitEncryptionEnabled": spec.transit_encryption,
        "CacheSubnetGroupName": spec.subnet_group,
        "Port": spec.port,
        "SnapshotRetentionLimit": spec.snapshot_retention_limit,
    }
    if spec.security_group_ids:
        kwargs["SecurityGroupIds"] = list(spec.security_group_ids)
    if spec.parameter_group:
        kwargs["CacheParameterGroupName"] = spec.parameter_group
    if spec.tags:
        kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())]
    return kwargs


def check_prefix(prefix: str) -> str:
    """The id prefix, lower-cased as AWS stores ids; ValueError when no id can follow it."""
    prefix = prefix.lower()
    if not re.fullmatch(r"[a-z](?!.*--)[a-z0-9-]*[a-z0-9]", prefix) or len(prefix) > ID_MAX - 3:
        raise ValueError(
            f"queue id prefix {prefix!r}: letters, digits and single hyphens, starting with a "
            f"letter, at most {ID_MAX - 3} characters (room for -<n>)"
        )
    return prefix


def number_of(group_id: str, prefix: str) -> int | None:
    match = re.fullmatch(re.escape(prefix.lower()) + r"-(\d{1,3})", group_id.lower())
    return int(match[1]) if match else None


def next_id(existing: list[str], prefix: str) -> str:
    """The id after every `<prefix>-<n>` still listed (deleting ones too: theirs is taken)."""
    numbers = [n for n in (number_of(i, prefix) for i in existing) if n is not None]
    return f"{prefix.lower()}-{max(numbers, default=0) + 1}"


def tags_of(elasticache: Any, arn: str) -> dict[str, str]:
    listed = elasticache.list_tags_for_resource(ResourceName=arn).get("TagList", [])
    return {tag["Key"]: tag["Value"] for tag in listed}


def tags_for(project: str) -> dict[str, str]:
    """The tags every queue group carries, and is known by."""
    return {"Project": project, "Role": ROLE}


def ours(elasticache: Any, prefix: str, wanted: dict[str, str]) -> list[dict[str, Any]]:
    """The prefix's groups carrying every tag in `wanted`, newest (highest n) first."""
    from botocore.exceptions import BotoCoreError, ClientError

    found = []
    try:
        for group in each_item(
            elasticache.describe_replication_groups, "ReplicationGroups", follow="Marker",
            most=_MOST_PAGES,
        ):  # fmt: skip
            if number_of(group["ReplicationGroupId"], prefix) is None:
                continue
            tags = tags_of(elasticache, group["ARN"]) if group.get("ARN") else {}
            if all(tags.get(key) == value for key, value in wanted.items()):
                found.append(group)
    except (BotoCoreError, ClientError, TooManyPages) as exc:
        raise QueueError(f"cannot list the queue's replication groups: {exc}") from exc
    found.sort(key=lambda g: number_of(g["ReplicationGroupId"], prefix) or 0, reverse=True)
    return found


def current(groups: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The group that is, or is becoming, the queue: the newest one up or being created."""
    live = (*QUEUE_UP_STATUSES, *QUEUE_COMING_STATUSES)
    return next((g for g in groups if g.get("Status") in live), None)


def url_of(group: dict[str, Any]) -> str:
    """`redis://host:port/0` (`rediss://` with TLS); "" until the group has an endpoint."""
    for node_group in group.get("NodeGroups") or []:
        endpoint = node_group.get("PrimaryEndpoint") or {}
        if endpoint.get("Address"):
            scheme = "rediss" if group.get("TransitEncryptionEnabled") else "redis"
            return f"{scheme}://{endpoint['Address']}:{endpoint.get('Port', 6379)}/0"
    return ""


def delete(elasticache: Any, project: str, prefix: str) -> list[str]:
    """Delete every group of the prefix tagged as this project's queue that is not already
    being deleted; the ids it deleted. Tags are checked per group (`ours`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    deleted = []
    for group in ours(elasticache, prefix, tags_for(project)):
        if group.get("Status") == "deleting":
            continue
        group_id = group["ReplicationGroupId"]
        try:
            elasticache.delete_replication_group(ReplicationGroupId=group_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("ReplicationGroupNotFoundFault", "InvalidReplicationGroupState"):
                continue  # gone, or already on its way
            raise QueueError(f"cannot delete the queue {group_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise QueueError(f"cannot delete the queue {group_id}: {exc}") from exc
        deleted.append(group_id)
    return deleted

"""Creating the queue of a wake: the one ElastiCache write only control makes."""

from __future__ import annotations

from typing import Any

from tlops.control import queue

# Ids tried past one that is taken by a group that is not ours (no tags of ours): a stranger
# may hold <prefix>-<n>, and the wake must not fail on it forever.
_TRIES = 3


def ensure_queue(
    elasticache: Any, spec: queue.QueueSpec, project: str
) -> tuple[dict[str, Any], bool]:
    """The current queue group, created when there is none: (the group, whether this call
    created it). A group that another wake is creating counts as there. The group always
    carries the queue's tags (whatever the spec says), or no later wake would find it."""
    from botocore.exceptions import BotoCoreError, ClientError

    tags = queue.tags_for(project)
    spec = spec._replace(tags={**spec.tags, **tags})
    groups = queue.ours(elasticache, spec.id_prefix, tags)
    found = queue.current(groups)
    if found is not None:
        return found, False
    taken = [g["ReplicationGroupId"] for g in groups]
    for _ in range(_TRIES):
        group_id = queue.next_id(taken, spec.id_prefix)
        try:
            created = elasticache.create_replication_group(**queue.create_kwargs(spec, group_id))
        except ClientError as exc:
            # The wire code; botocore names its exception class ...AlreadyExistsFault.
            if exc.response.get("Error", {}).get("Code") != "ReplicationGroupAlreadyExists":
                raise queue.QueueError(f"cannot create the queue {group_id}: {exc}") from exc
            again = queue.current(queue.ours(elasticache, spec.id_prefix, tags))
            if again is not None:
                return again, False  # another wake's: one create
            taken.append(group_id)  # a stranger's group holds the id: the next one
            continue
        except BotoCoreError as exc:
            raise queue.QueueError(f"cannot create the queue {group_id}: {exc}") from exc
        return created["ReplicationGroup"], True
    raise queue.QueueError(f"no free id for the queue: {', '.join(taken[-_TRIES:])} are taken")

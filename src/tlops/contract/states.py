"""The deployment's state: awake, napping, asleep (and waking between asleep and napping).

A deployed stack is always in one of these, read off two facts: the GPU node's
EC2 state and whether the queue (the ElastiCache replication group) exists.

    state    | node                  | queue            | bills while idle
    ---------+-----------------------+------------------+-------------------------------
    awake    | pending or running    | up (or coming)   | the instance by the hour
    napping  | stopping or stopped   | up               | the queue + disk + snapshots
    waking   | any                   | being created    | the queue, from its creation
    asleep   | stopping or stopped   | none (or going)  | disk + image snapshots only

Napping turns to asleep by itself (`sleep_after`); a request wakes what sleeps
(docs/decisions.md, "Sleep and wake"). Plain Python: the router imports it.
"""

from __future__ import annotations

import enum

# EC2 instance states in which the node exists (terminated and shutting-down do not count).
NODE_LIVE_STATES = ("pending", "running", "stopping", "stopped")
NODE_UP_STATES = ("pending", "running")
NODE_DOWN_STATES = ("stopping", "stopped")
# ElastiCache replication group statuses. A group being deleted no longer serves and is
# gone within minutes on AWS; one that failed to be created serves nothing either.
QUEUE_UP_STATUSES = ("available", "modifying", "snapshotting")
QUEUE_COMING_STATUSES = ("creating",)


class StackState(enum.StrEnum):
    AWAKE = "awake"
    NAPPING = "napping"
    WAKING = "waking"
    ASLEEP = "asleep"


# What each state keeps paying for while nobody uses it (the idle bill and `tlops status`
# say it beside the figures). "not deployed": no node at all.
NOT_DEPLOYED = "not deployed"
BILLS = {
    StackState.AWAKE.value: (
        "the running instance bills by the hour, besides the queue, the node's disk and the "
        "image snapshots"
    ),
    StackState.NAPPING.value: (
        "the queue bills by the hour, besides the node's disk and the image snapshots; the "
        "instance is stopped"
    ),
    StackState.WAKING.value: (
        "the queue bills from its creation on, besides the node's disk and the image snapshots"
    ),
    StackState.ASLEEP.value: "only the node's disk and the image snapshots bill",
    NOT_DEPLOYED: "no node is deployed; whatever the rows list still bills",
}


def stack_state(node_state: str | None, queue_status: str | None) -> StackState | None:
    """The state from the node's EC2 state and the current queue group's status (None: no
    group); None when no node is deployed at all."""
    if node_state not in NODE_LIVE_STATES:
        return None
    if queue_status in QUEUE_COMING_STATUSES:
        return StackState.WAKING
    if node_state in NODE_UP_STATES:
        return StackState.AWAKE
    if queue_status in QUEUE_UP_STATUSES:
        return StackState.NAPPING
    return StackState.ASLEEP

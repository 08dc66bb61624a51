"""The control bucket: what the VPC's side asks of `control`, and what `control` records.

Nothing inside the VPC calls the EC2 or ElastiCache APIs: that would need an
interface endpoint, billed by the hour, whose private DNS would also capture
the node's own calls (docs/decisions.md, "Sleep and wake"). The router and the
scheduled queue probe write a *request object* into the deployment's control
bucket through the VPC's free S3 gateway endpoint; the bucket's event
notification invokes `control`, a function outside any VPC, which makes the
calls and writes what it saw to the *state document*.

    requests/<action>/<name>.json    a request; ObjectCreated invokes control
    state.json                       the recorded state; control writes it, others read it
    held/<sub>/<ms>-<job id>.json    a job admitted while the queue sleeps
    results/resize/<operation>.json  a resize's progress, as control works on it
    survivors.json                   what the queue held that outlives a sleep
    killed.json                      the budget killer's mark: nothing wakes until a deploy

Plain Python: the router imports it on its cold path.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any, NamedTuple

from tlops.contract import is_job_id

REQUESTS_PREFIX = "requests/"
STATE_KEY = "state.json"
HELD_PREFIX = "held/"
RESIZE_RESULTS_PREFIX = "results/resize/"
SURVIVORS_KEY = "survivors.json"
# Written by the budget killer: no wake and no start until deploy.yml clears it.
KILLED_KEY = "killed.json"

# A request body larger than this is refused unread (control reads it whole).
REQUEST_MAX_BYTES = 16 * 1024
# Wake requests are named by the recorded state and the minute they are asked in: at most
# one a minute reaches control, however many requests arrive while the stack sleeps.
WAKE_EVERY_S = 60
# A job held while the queue sleeps is run if the queue is back within this, else expired.
HELD_TTL_SECONDS = 3600


class Action(enum.StrEnum):
    WAKE = "wake"  # create the queue if it sleeps, start the node if it is stopped
    STOP = "stop"  # stop the node (POST /stop)
    RESIZE = "resize"  # take the node to a goal state and type (POST /resize)
    SLEEP = "sleep"  # stop the node; `deep`: delete the queue too (asleep)
    OBSERVE = "observe"  # look at the node and the queue, record what is seen


class BadRequest(ValueError):
    """A request object that is not one control acts on; it is logged and ignored."""


class Request(NamedTuple):
    action: Action
    by: str  # who asked: router, queue_health, an operator
    at_ms: int
    args: dict[str, Any]


_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_ARGS: dict[Action, dict[str, type | tuple[type, ...]]] = {
    Action.WAKE: {"reason": str, "round": int},
    Action.STOP: {"sub": str},
    Action.RESIZE: {"operation": str, "goal_state": str, "goal_type": str, "instance": str},
    Action.SLEEP: {"deep": bool, "stop_node": bool},
    Action.OBSERVE: {},
}


def request_key(action: Action, name: str) -> str:
    """`requests/<action>/<name>.json`; the name is what makes two requests one."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"a request name is 1-100 of A-Z a-z 0-9 . _ -, got {name!r}")
    return f"{REQUESTS_PREFIX}{Action(action).value}/{name}.json"


def wake_name(now_ms: int, since_ms: int | None) -> str:
    """The name of a wake asked at `now_ms` of a stack in the recorded state it has been in
    since `since_ms` (state.json): one a minute per recorded state, so that a wake asked
    once the state changed again (the node stopped, the stack fell asleep) is never taken
    for the one already served earlier in the same minute."""
    return f"since-{since_ms or 0}-minute-{now_ms // (WAKE_EVERY_S * 1000)}"


def request_body(action: Action, *, by: str, at_ms: int, **args: Any) -> bytes:
    return json.dumps(
        {"action": Action(action).value, "by": by, "at_ms": at_ms, **args},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def parse_request(key: str, body: bytes) -> Request:
    """The request in `body` (read from `key`); BadRequest says what is wrong with it."""
    if not key.startswith(REQUESTS_PREFIX):
        raise BadRequest(f"{key} is not under {REQUESTS_PREFIX}")
    if len(body) > REQUEST_MAX_BYTES:
        raise BadRequest(f"{key} is {len(body)} bytes, over {REQUEST_MAX_BYTES}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{key} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"{key} must hold a JSON object")
    try:
        action = Action(data.get("action"))
    except ValueError:
        raise BadRequest(f"{key}: unknown action {data.get('action')!r}") from None
    folder = key[len(REQUESTS_PREFIX) :].partition("/")[0]
    if folder != action.value:
        raise BadRequest(f"{key}: a {action.value} request under requests/{folder}/")
    by, at_ms = data.get("by"), data.get("at_ms")
    if not isinstance(by, str) or not by:
        raise BadRequest(f"{key}: `by` must name who asks")
    if not isinstance(at_ms, int) or isinstance(at_ms, bool) or at_ms < 0:
        raise BadRequest(f"{key}: `at_ms` must be a time in ms")
    args = {}
    for name, kind in _ARGS[action].items():
        if name in data:
            value = data[name]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise BadRequest(f"{key}: `{name}` has the wrong type")
            args[name] = value
    if action == Action.RESIZE:
        _check_resize(key, args)
    return Request(action, by, at_ms, args)


def _check_resize(key: str, args: dict[str, Any]) -> None:
    """A resize names its operation, a goal control can reach and the node it began with:
    anything less is refused before any EC2 step."""
    from tlops.contract.resize import INSTANCE_TYPES

    if not is_job_id(str(args.get("operation", ""))):
        raise BadRequest(f"{key}: `operation` must be an operation id")
    if args.get("goal_state") not in ("running", "stopped"):
        raise BadRequest(f"{key}: `goal_state` must be running or stopped")
    if args.get("goal_type") not in INSTANCE_TYPES:
        raise BadRequest(f"{key}: `goal_type` must be one of {', '.join(INSTANCE_TYPES)}")
    if not str(args.get("instance", "")).startswith("i-"):
        raise BadRequest(f"{key}: `instance` must name the node's instance")


# --- the state document ---------------------------------------------------------------
# Written by control only (and by deploy.yml, through the same code); read by the router
# after Redis fails to connect, by the node at boot (the queue's address), by `tlops status`.
class QueueRecord(NamedTuple):
    id: str
    status: str
    url: str  # "" until ElastiCache gives the group an endpoint


def parse_state(body: bytes | str | None) -> dict[str, Any]:
    """The state document as a dict; {} when there is none or it is not a JSON object."""
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def queue_of(state: dict[str, Any]) -> QueueRecord | None:
    queue = state.get("queue")
    if not isinstance(queue, dict) or not queue.get("id"):
        return None
    return QueueRecord(str(queue["id"]), str(queue.get("status", "")), str(queue.get("url", "")))


# --- held jobs ------------------------------------------------------------------------
class HeldKey(NamedTuple):
    sub: str
    at_ms: int
    job_id: str


_HELD = re.compile(r"held/([^/]{1,128})/(\d{13})-([0-9a-f-]{36})\.json")


def held_key(sub: str, at_ms: int, job_id: str) -> str:
    """`held/<sub>/<ms>-<job id>.json`: a user's held jobs list oldest first."""
    if "/" in sub or not sub:
        raise ValueError(f"not a token subject: {sub!r}")
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return f"{HELD_PREFIX}{sub}/{at_ms:013d}-{job_id}.json"


def held_prefix(sub: str) -> str:
    return f"{HELD_PREFIX}{sub}/"


def parse_held_key(key: str) -> HeldKey | None:
    match = _HELD.fullmatch(key)
    if match is None or not is_job_id(match[3]):
        return None
    return HeldKey(match[1], int(match[2]), match[3])


def resize_result_key(operation_id: str) -> str:
    if not is_job_id(operation_id):
        raise ValueError(f"not an operation id: {operation_id!r}")
    return f"{RESIZE_RESULTS_PREFIX}{operation_id}.json"

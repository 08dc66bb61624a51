"""`control`: the function outside the VPC that calls EC2 and ElastiCache for the stack.

It is invoked three ways, and acts the same whichever it is:

- by the control bucket's event notification, for each request object written under
  `requests/` (the router's wakes, stops and resizes; the queue probe's sleeps);
- by an EventBridge rule when EC2 says the node changed state (it records the state);
- directly, with a request as the payload (EventBridge Scheduler's scheduled wake,
  `tlops ops wake` on an account).

What it does, by action (tlops.contract.control.Action):

- wake: unless the budget killer has stopped the stack, create the queue if there is
  none (a fresh id, tlops.control.queue) and start the node if it is stopped, both at
  once; then wait, bounded, for the queue to be available, and record its address and
  how long the wake took (the next wake's ETA). A wait that outlasts one invocation is
  handed to the next through a request control writes itself, a bounded number of times.
- stop: stop the node.
- resize: take the node to the operation's goal (tlops.control.resize).
- sleep: stop the node if asked; `deep`: then delete the queue, only once the node is
  stopped (a wake that started it in between wins, and the sleep does nothing).
- observe: look, and record.

After each, it records what it sees (tlops.control.state). A failure is recorded in the
state, logged with AWS's words, counted (`WakeFailures`, `ControlFailures`) and not
raised: the next request retries, so Lambda's own retries of an asynchronous invocation
would add nothing but duplicate calls. A malformed request is logged and ignored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from tlops.common import aws
from tlops.common.control_bucket import BucketUnavailable, ControlBucket
from tlops.common.telemetry import Telemetry
from tlops.contract import control
from tlops.contract.control import Action, BadRequest, Request
from tlops.contract.resize import Goal
from tlops.contract.states import QUEUE_COMING_STATUSES, QUEUE_UP_STATUSES
from tlops.control import node as gpu_node
from tlops.control import queue, resize, state
from tlops.control.config import WAKE_CONTINUATIONS, ControlConfig
from tlops.control.wake import ensure_queue

telemetry = Telemetry("control")

EC2_STATE_CHANGE = "EC2 Instance State-change Notification"
QUEUE_POLL_S = 10.0
NODE_STOP_WAIT_S = 300.0  # a deep sleep that stops the node first waits this long for it


class Control:
    def __init__(
        self,
        config: ControlConfig,
        *,
        client: Callable[[str], Any] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.config = config
        self._client = client or _client
        self.clock, self.sleep = clock, sleep
        self.bucket = ControlBucket(self._client("s3"), config.bucket)

    @property
    def ec2(self) -> Any:
        return self._client("ec2")

    @property
    def elasticache(self) -> Any:
        return self._client("elasticache")

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- entry -------------------------------------------------------------------------
    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        """Every request the event carries, run in turn; their outcomes."""
        outcomes = []
        for request in self.requests_of(event):
            outcomes.append(self.run(request, context))
        return {"outcomes": outcomes}

    def requests_of(self, event: dict[str, Any]) -> list[Request]:
        if isinstance(event.get("Records"), list):
            return [r for r in (self._from_record(rec) for rec in event["Records"]) if r]
        if event.get("source") == "aws.ec2" and event.get("detail-type") == EC2_STATE_CHANGE:
            return [Request(Action.OBSERVE, "ec2", self.now_ms(), {})]
        if "action" in event:  # a direct invocation: the payload is the request
            body = json.dumps({"by": "direct", "at_ms": self.now_ms(), **event}).encode()
            key = f"{control.REQUESTS_PREFIX}{event['action']}/direct.json"
            try:
                return [control.parse_request(key, body)]
            except BadRequest as exc:
                telemetry.log("WARNING", "request ignored", reason=str(exc))
                return []
        telemetry.log(
            "WARNING", "event ignored", reason="neither a request nor an EC2 state change"
        )
        return []

    def _from_record(self, record: dict[str, Any]) -> Request | None:
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        key = unquote_plus((s3.get("object") or {}).get("key", ""))
        if bucket != self.config.bucket or not key.startswith(control.REQUESTS_PREFIX):
            telemetry.log("WARNING", "request ignored", bucket=bucket, key=key,
                          reason="not a request in the control bucket")  # fmt: skip
            return None
        try:
            body = self.bucket.s3.get_object(Bucket=bucket, Key=key)["Body"].read(
                control.REQUEST_MAX_BYTES + 1
            )
            return control.parse_request(key, body)
        except BadRequest as exc:
            telemetry.log("WARNING", "request ignored", key=key, reason=str(exc))
        except Exception as exc:
            telemetry.log("ERROR", "request unreadable", key=key, reason=str(exc))
        return None

    def run(self, request: Request, context: Any = None) -> dict[str, Any]:
        act = {
            Action.WAKE: self.wake,
            Action.STOP: self.stop,
            Action.RESIZE: self.resize,
            Action.SLEEP: self.sleep_stack,
            Action.OBSERVE: self.observe,
        }[request.action]
        telemetry.log("INFO", f"{request.action} asked", by=request.by, atMs=request.at_ms)
        try:
            outcome = act(request, _deadline(context, self.clock, self.config.queue_wait_s))
        except (gpu_node.NodeUnavailable, queue.QueueError, BucketUnavailable) as exc:
            telemetry.metric("ControlFailures", Action=request.action.value)
            telemetry.log("ERROR", f"{request.action} failed", reason=str(exc))
            outcome = {"outcome": "failed", "reason": str(exc)}
        return {"action": request.action.value, **outcome}

    # --- looking ------------------------------------------------------------------------
    def look(self) -> dict[str, Any]:
        return state.observe(
            self.ec2,
            self.elasticache,
            project=self.config.project,
            prefix=self.config.queue_prefix,
            url=self.config.queue_url,
            pinned=self.config.node_instance_id,
        )

    def find_node(self) -> gpu_node.Node | None:
        """The deployment's node: the tagged instance with the id deploy.yml pinned."""
        return gpu_node.find(self.ec2, self.config.project, self.config.node_instance_id)

    def record(self, seen: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
        return state.record(
            self.bucket, seen if seen is not None else self.look(), project=self.config.project,
            **changes,
        )  # fmt: skip

    def observe(self, request: Request, deadline: float) -> dict[str, Any]:
        doc = self.record()
        return {"outcome": "recorded", "state": doc["state"]}

    # --- wake ---------------------------------------------------------------------------
    def wake(self, request: Request, deadline: float) -> dict[str, Any]:
        killed = self.bucket.get_json(control.KILLED_KEY)
        if killed:
            reason = "the budget killer stopped the stack; see docs/ops/budget_recovery.md"
            self.record(wake={"error": reason, "error_ms": self.now_ms()})
            telemetry.log("WARNING", "wake refused", reason=reason, killedMs=killed.get("at_ms"))
            return {"outcome": "refused", "reason": reason}
        before = self.bucket.state()
        wake = dict(before.get("wake") or {})
        wake.setdefault("requested_ms", request.at_ms)
        wake.pop("error", None)
        seen = self.look()
        created = False
        if seen["queue"] is None and self.config.queue is not None:
            try:
                group, created = ensure_queue(
                    self.elasticache, self.config.queue, self.config.project
                )
            except queue.QueueError as exc:
                return self._wake_failed(seen, wake, "the queue could not be created", exc)
            telemetry.log("INFO", "queue created" if created else "queue already coming",
                          queue=group["ReplicationGroupId"])  # fmt: skip
        started = self._start_node(seen, deadline)
        seen = self.look()
        self.record(seen, wake=wake)
        group_id = seen["queue"]["id"] if seen["queue"] else ""
        if seen["queue"] and seen["queue"]["status"] in QUEUE_COMING_STATUSES:
            return self._wait_for_queue(request, group_id, wake, deadline, created, started)
        return self._woken(wake, created=created, started=started, group_id=group_id)

    def _start_node(self, seen: dict[str, Any], deadline: float) -> bool:
        node = seen["node"]
        if node is None:
            raise gpu_node.NodeUnavailable("no GPU node is deployed")
        if node["state"] == "stopping":  # EC2 starts it only once stopped: wait, bounded
            self._wait_node_stopped(min(deadline, self.clock() + NODE_STOP_WAIT_S))
            found = self.find_node()
            node = {**node, "state": found.state if found else "gone"}
        if node["state"] != "stopped":
            return False  # running, or on its way (pending)
        gpu_node.start_instance(
            self.ec2, gpu_node.Node(node["instance"], node["state"], node["type"])
        )
        telemetry.metric("EC2Starts", Reason="Wake")
        return True

    def _wait_for_queue(
        self,
        request: Request,
        group_id: str,
        wake: dict,
        deadline: float,
        created: bool,
        started: bool,
    ) -> dict[str, Any]:
        while self.clock() + QUEUE_POLL_S < deadline:
            self.sleep(QUEUE_POLL_S)
            seen = self.look()
            status = seen["queue"]["status"] if seen["queue"] else ""
            if status in QUEUE_UP_STATUSES:
                return self._woken(wake, created=created, started=started, group_id=group_id)
            if status not in QUEUE_COMING_STATUSES:
                return self._wake_failed(
                    seen, wake, "the queue could not be created",
                    queue.QueueError(f"queue {group_id} is {status or 'gone'}"),
                )  # fmt: skip
        round_ = int(request.args.get("round", 0)) + 1
        if round_ > WAKE_CONTINUATIONS:
            return self._wake_failed(
                self.look(), wake, "the queue took too long to be created",
                queue.QueueError(f"queue {group_id} still creating after {round_} waits"),
            )  # fmt: skip
        # Hand the wait on: one more invocation, named so that it happens once.
        self.bucket.ask(
            Action.WAKE, f"{group_id}-wait-{round_}", by="control", now_ms=self.now_ms(),
            reason="waiting for the queue", round=round_,
        )  # fmt: skip
        return {"outcome": "waiting", "queue": group_id, "round": round_}

    def _woken(self, wake: dict, *, created: bool, started: bool, group_id: str) -> dict[str, Any]:
        doc = self.bucket.state()
        wakes = doc.get("wakes_ms", [])
        if created:  # a wake's length is the queue's creation: what the next ETA needs
            took = max(0, self.now_ms() - int(wake.get("requested_ms", self.now_ms())))
            wakes = [took, *wakes]
        self.record(wake={}, wakes_ms=wakes)
        return {"outcome": "awake", "queue": group_id, "created": created, "started": started}

    def _wake_failed(self, seen: dict, wake: dict, public: str, exc: Exception) -> dict[str, Any]:
        telemetry.metric("WakeFailures")
        telemetry.log("ERROR", "wake failed", reason=str(exc))
        # The next wake is timed from its own request, not from this one's.
        wake = {k: v for k, v in wake.items() if k != "requested_ms"}
        self.record(seen, wake={**wake, "error": public, "error_ms": self.now_ms()})
        return {"outcome": "failed", "reason": public}

    # --- stop, resize, sleep -----------------------------------------------------------
    def stop(self, request: Request, deadline: float) -> dict[str, Any]:
        stopped = gpu_node.stop(self.ec2, self.config.project, self.config.node_instance_id)
        self.record()
        if stopped is None:
            return {"outcome": "no node"}
        telemetry.log("INFO", "node stop requested", instance=stopped.instance_id,
                      sub=request.args.get("sub", ""))  # fmt: skip
        return {"outcome": stopped.state, "instance": stopped.instance_id}

    def resize(self, request: Request, deadline: float) -> dict[str, Any]:
        operation = str(request.args.get("operation", ""))
        key = control.resize_result_key(operation)  # ValueError: not an operation id
        goal = Goal(str(request.args.get("goal_state")), str(request.args.get("goal_type")))
        if self.bucket.get_json(control.KILLED_KEY) and goal.state == "running":
            progress = {"status": "failed", "phase": "failed", "steps": [],
                        "error": "the budget killer stopped the stack"}  # fmt: skip
            self.bucket.put_json(key, {**progress, "updated_ms": self.now_ms()})
            return {"outcome": "refused"}

        # The steps with when they were taken, those of earlier invocations of this operation
        # first: a continuation (the router's re-ask) adds to them, never replaces them.
        stamped: list[dict[str, Any]] = list((self.bucket.get_json(key) or {}).get("steps", []))
        earlier = len(stamped)

        def report(progress: dict[str, Any]) -> None:
            detail = progress.pop("detail", None)
            if detail:
                telemetry.log("ERROR", "resize step refused", operation=operation, reason=detail)
            stamped.extend(
                {"step": s, "at": self.now_ms()}
                for s in progress["steps"][len(stamped) - earlier :]
            )
            self.bucket.put_json(key, {**progress, "steps": stamped, "updated_ms": self.now_ms()})

        progress = resize.run(
            self.ec2, self.config.project, str(request.args.get("instance", "")), goal,
            deadline=deadline, report=report, pinned=self.config.node_instance_id,
            clock=self.clock, sleep=self.sleep,
        )  # fmt: skip
        self.record()
        return {"outcome": progress["status"], "operation": operation}

    def sleep_stack(self, request: Request, deadline: float) -> dict[str, Any]:
        """Stop the node when asked (`stop_node`); `deep`: delete the queue, once the node is
        stopped. Never deletes the queue under a node that runs."""
        if request.args.get("stop_node"):
            gpu_node.stop(self.ec2, self.config.project, self.config.node_instance_id)
            self._wait_node_stopped(min(deadline, self.clock() + NODE_STOP_WAIT_S))
        seen = self.look()
        if not request.args.get("deep"):
            self.record(seen)
            return {"outcome": "napping" if seen["state"] == "napping" else seen["state"]}
        node_state = (seen["node"] or {}).get("state")
        if node_state not in (None, "stopped"):
            self.record(seen)
            telemetry.log("INFO", "deep sleep not taken", reason=f"the node is {node_state}")
            return {"outcome": "not taken", "reason": f"the node is {node_state}"}
        deleted = queue.delete(self.elasticache, self.config.project, self.config.queue_prefix)
        for group_id in deleted:
            telemetry.log("INFO", "queue deleted", queue=group_id)
        # The measured boots go with the queue: the wake's ETA needs them meanwhile.
        saved = self.bucket.get_json(control.SURVIVORS_KEY) or {}
        boots = [int(t) for t in saved.get("boot_times", []) if str(t).isdigit()]
        doc = self.record(**({"boot_times_ms": boots} if boots else {}))
        return {"outcome": doc["state"], "deleted": deleted}

    def _wait_node_stopped(self, until: float) -> None:
        while self.clock() < until:
            found = self.find_node()
            if found is None or found.state == "stopped":
                return
            self.sleep(min(5.0, max(0.0, until - self.clock())))


def _deadline(context: Any, clock: Callable[[], float], most_s: float) -> float:
    """Until when an action may wait: Lambda's remaining time less a margin to record, and
    never more than `most_s` (the configured wait)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    left_s = remaining() / 1000 if remaining else 60.0
    return clock() + min(most_s, max(0.0, left_s - 20.0))


def _client(service: str) -> Any:
    return aws.client(service, connect_timeout=2.0, read_timeout=10.0, max_attempts=3)


_control: Control | None = None


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (re-exported by lambda_src/control)."""
    global _control  # noqa: PLW0603 - one Control per warm Lambda container
    if _control is None:
        _control = Control(ControlConfig.from_env())
    return _control.handle(event, context)

"""The local relay: S3's event notifications and EventBridge's EC2 rule, made to fire.

moto stores a bucket's notification configuration and an EventBridge rule but
delivers nothing (it would need Docker to run a function). This relay
(`python -m tlops.local.relay`, one of the local stack's services, like the node
agent) reads what deploy.yml configured, as AWS would, and delivers it:

- for every bucket tagged with the project, its `LambdaFunctionConfigurations`:
  each new object created under a configuration's prefix (and suffix) is
  delivered to that function as an S3 event record, once;
- for every EventBridge rule of the project whose pattern is EC2's "Instance
  State-change Notification" (as `aws.ec2` sends it), each change of a tagged
  instance's state that the pattern matches is delivered to the rule's targets.

A delivery runs the function's own handler in this process, with the function's
environment as the stand-in holds it (`tlops.local.gateway.handler_factory`,
which the gateway uses too), on a thread of its own: like Lambda's asynchronous
invocation, the writer of the object does not wait. What it delivered is kept in
`--state-file`, so a restarted relay delivers nothing twice.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from tlops.common import aws
from tlops.common.telemetry import Telemetry
from tlops.contract import names
from tlops.local import services

CONFIG_REFRESH_S = 3.0  # how stale the notification configuration and rules may be
EC2_STATE_CHANGE = "EC2 Instance State-change Notification"
MOST_KEYS = 5000
MOST_SEEN = 20000  # keys remembered as delivered (the oldest are forgotten first)


class Context:
    """What a handler learns of its invocation: the time it has left (Lambda's timeout)."""

    def __init__(self, timeout_s: float):
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class Relay:
    def __init__(
        self,
        project: str,
        state_file: Path,
        *,
        poll_s: float = 0.2,
        workers: int = 4,
        telemetry: Telemetry | None = None,
    ):
        self.project = project
        self.state_file = state_file
        self.poll_s = poll_s
        self.log = telemetry or Telemetry("relay")
        self.stop_event = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="invoke")
        self.seen: dict[str, None] = dict.fromkeys(self._load_seen())
        self.instances: dict[str, str] = {}  # instance id → the state last delivered
        self._configs: list[dict[str, Any]] = []
        self._rules: list[dict[str, Any]] = []
        self._refreshed = float("-inf")
        self._written = float("-inf")
        self.delivered = 0

    def client(self, service: str) -> Any:
        return aws.client(service, connect_timeout=1, read_timeout=5, max_attempts=1)

    # --- what deploy.yml configured -------------------------------------------------------
    def refresh(self) -> None:
        if time.monotonic() - self._refreshed < CONFIG_REFRESH_S:
            return
        self._refreshed = time.monotonic()
        s3, events = self.client("s3"), self.client("events")
        configs = []
        for bucket in s3.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            try:
                tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=name)["TagSet"]}
            except s3.exceptions.ClientError:
                continue
            if tags.get("Project") != self.project:
                continue
            found = s3.get_bucket_notification_configuration(Bucket=name)
            for config in found.get("LambdaFunctionConfigurations", []):
                rules = config.get("Filter", {}).get("Key", {}).get("FilterRules", [])
                keyed = {r["Name"].lower(): r["Value"] for r in rules}
                configs.append({
                    "bucket": name,
                    "function": config["LambdaFunctionArn"],
                    "events": config.get("Events", []),
                    "prefix": keyed.get("prefix", ""),
                    "suffix": keyed.get("suffix", ""),
                })  # fmt: skip
        rules = []
        for rule in events.list_rules(NamePrefix=self.project).get("Rules", []):
            pattern = json.loads(rule.get("EventPattern") or "{}")
            if EC2_STATE_CHANGE not in pattern.get("detail-type", []):
                continue
            if rule.get("State", "ENABLED") != "ENABLED":
                continue
            targets = events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])
            rules.append({"pattern": pattern, "functions": [t["Arn"] for t in targets]})
        self._configs, self._rules = configs, rules

    # --- one look ------------------------------------------------------------------------
    def step(self) -> None:
        self.refresh()
        for config in self._configs:
            self._deliver_objects(config)
        if self._rules:
            self._deliver_state_changes()

    def _deliver_objects(self, config: dict[str, Any]) -> None:
        if not any(e.startswith("s3:ObjectCreated") for e in config["events"]):
            return
        s3 = self.client("s3")
        listed = s3.list_objects_v2(
            Bucket=config["bucket"], Prefix=config["prefix"], MaxKeys=1000
        ).get("Contents", [])
        fresh = [
            item
            for item in listed
            if item["Key"].endswith(config["suffix"])
            and f"{config['bucket']}/{item['Key']}/{item.get('ETag', '')}" not in self.seen
        ]
        for item in sorted(fresh, key=lambda i: i.get("LastModified", 0)):
            mark = f"{config['bucket']}/{item['Key']}/{item.get('ETag', '')}"
            self._remember(mark)
            event = _s3_event(config["bucket"], item)
            self.pool.submit(self._invoke, config["function"], event, item["Key"])

    def _deliver_state_changes(self) -> None:
        ec2 = self.client("ec2")
        found = ec2.describe_instances(Filters=names.tag_filters(self.project))
        for reservation in found.get("Reservations", []):
            for instance in reservation["Instances"]:
                ident, state = instance["InstanceId"], instance["State"]["Name"]
                if self.instances.get(ident) == state:
                    continue
                first_look = ident not in self.instances
                self.instances[ident] = state
                if first_look:
                    continue  # what it was before the relay started is no change it saw
                event = _ec2_event(ident, state)
                for rule in self._rules:
                    if _matches(rule["pattern"], event):
                        for function in rule["functions"]:
                            self.pool.submit(self._invoke, function, event, f"{ident} {state}")

    def _invoke(self, function_arn: str, event: dict[str, Any], what: str) -> None:
        from tlops.local.gateway import handler_factory

        name, _, qualifier = function_arn.split(":function:", 1)[-1].partition(":")
        lam = self.client("lambda")
        try:
            kwargs = {"FunctionName": name, **({"Qualifier": qualifier} if qualifier else {})}
            config = lam.get_function_configuration(**kwargs)
            tags = lam.list_tags(Resource=config["FunctionArn"].rsplit(":", 1)[0]).get("Tags", {})
            env = dict((config.get("Environment") or {}).get("Variables") or {})
            handler = handler_factory(tags.get("Function", ""), env)()
            answer = handler(event, Context(float(config.get("Timeout", 60))))
        except Exception as exc:  # Lambda logs an invocation's failure, and so does the relay
            self.log.log("ERROR", "invocation failed", function=name, what=what, reason=repr(exc))
            return
        self.delivered += 1
        self.log.log("INFO", "delivered", function=name, what=what, answer=answer)

    # --- what it delivered ------------------------------------------------------------------
    def _load_seen(self) -> list[str]:
        try:
            return list(json.loads(self.state_file.read_text()).get("seen", []))
        except (FileNotFoundError, ValueError):
            return []

    def _remember(self, mark: str) -> None:
        self.seen[mark] = None
        while len(self.seen) > MOST_SEEN:
            self.seen.pop(next(iter(self.seen)))
        self._write_state()

    def _write_state(self) -> None:
        self._written = time.monotonic()
        report = {
            "seen": list(self.seen),
            "notifications": len(self._configs),
            "rules": len(self._rules),
        }
        services.write_agent_state(self.state_file, report)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop_event.set())
        self.log.log("INFO", "relay started", project=self.project)
        self._write_state()
        try:
            while not self.stop_event.is_set():
                try:
                    self.step()
                except Exception as exc:  # the stand-in restarting, say: look again
                    self.log.log("WARNING", "relay look failed", reason=repr(exc))
                    self._refreshed = float("-inf")
                if time.monotonic() - self._written >= 1.0:  # also its heartbeat
                    self._write_state()
                self.stop_event.wait(self.poll_s)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=False)
            self._write_state()
            self.log.log("INFO", "relay stopped", delivered=self.delivered)
        return 0


def _s3_event(bucket: str, item: dict[str, Any]) -> dict[str, Any]:
    """One record as S3 sends it to a function (event structure version 2.1): the key is
    URL-encoded, as S3 encodes it."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": quote_plus(item["Key"], safe="/"),
                        "size": item.get("Size", 0),
                        "eTag": str(item.get("ETag", "")).strip('"'),
                    },
                },
            }
        ]
    }


def _ec2_event(instance_id: str, state: str) -> dict[str, Any]:
    return {
        "version": "0",
        "source": "aws.ec2",
        "detail-type": EC2_STATE_CHANGE,
        "detail": {"instance-id": instance_id, "state": state},
    }


def _matches(pattern: Any, event: Any) -> bool:
    """EventBridge's matching for the patterns deploy.yml writes: each field of the pattern
    lists the values allowed, nested objects match field by field."""
    if isinstance(pattern, dict):
        return isinstance(event, dict) and all(
            key in event and _matches(value, event[key]) for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        return event in pattern
    return pattern == event


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlops.local.relay", description=__doc__)
    parser.add_argument("--project", required=True, help="the Project tag of the deployment")
    parser.add_argument("--state-file", type=Path, required=True)
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between looks")
    args = parser.parse_args(argv)
    return Relay(args.project, args.state_file, poll_s=args.poll).run()


if __name__ == "__main__":
    sys.exit(main())

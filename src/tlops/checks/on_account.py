"""What only an account can prove: AWS's own verdicts on the deployment, asked for.

The stand-in enforces neither IAM nor network paths, and the project's judges
(`tlops.checks.access.allows`, `tlops.checks.paths`) encode our reading of AWS's
documentation. On an account, AWS can be asked instead:

- `simulate()`: IAM's policy simulator (SimulatePrincipalPolicy) evaluates each call a
  component's role is declared to make, with the request context AWS would send (the
  resource's tags and the other condition keys access.yml names), against every policy
  the role really holds (inline, managed, permissions boundary). Free of charge
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_testing-policies.html).
- `analyze_path()`: VPC Reachability Analyzer traces a path hop by hop through the
  deployed route tables, security groups and network ACLs, and names the component that
  blocks it. Each analysis is billed (USD 0.10 at the time of writing,
  https://aws.amazon.com/vpc/pricing/), so verify.yml runs it only when asked.

Both take a boto3 client and are tested with botocore's Stubber: nothing here reaches AWS
from the project's tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

# SimulatePrincipalPolicy's EvalDecision values (API_EvaluationResult, IAM API reference).
ALLOWED = "allowed"
# Reachability Analyzer's verdicts on the project's two paths that matter most: the node's
# way out (its public address and the internet gateway: S3, the APIs, the model's download)
# and the router's way to the queue. One billed analysis each.
HTTPS, REDIS = 443, 6379


class Simulated(NamedTuple):
    """IAM's verdict on one declared call."""

    action: str
    resource: str
    decision: str  # allowed, implicitDeny or explicitDeny
    missing_keys: tuple[str, ...]  # condition keys the policies use that the context lacked

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOWED

    def line(self, component: str) -> str:
        why = f" (the context lacked {', '.join(self.missing_keys)})" if self.missing_keys else ""
        verdict = "allowed by IAM's simulator" if self.allowed else f"{self.decision}{why}"
        return f"{component} may {self.action} on {self.resource}: {verdict}"


def _context_entries(keys: Mapping[str, str]) -> list[dict[str, Any]]:
    # ContextEntry: the key, its values and their type (API_ContextEntry, IAM API reference).
    return [
        {"ContextKeyName": key, "ContextKeyValues": [value], "ContextKeyType": "string"}
        for key, value in sorted(keys.items())
    ]


# (role name, its declared requests) → IAM's verdicts: what tlops.checks.deployed asks.
Simulator = Callable[[str, list[tuple[str, str, dict[str, str]]]], list["Simulated"]]


def role_simulator(iam: Any) -> Simulator:
    """A Simulator that asks IAM about the role by name (its ARN looked up with GetRole)."""

    def ask(role_name: str, requests: list[tuple[str, str, dict[str, str]]]) -> list[Simulated]:
        arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
        return simulate(iam, arn, requests)

    return ask


def simulate(
    iam: Any, role_arn: str, requests: Iterable[tuple[str, str, Mapping[str, str]]]
) -> list[Simulated]:
    """IAM's verdict on each (action, resource, condition keys) for the role `role_arn`.

    Calls that share a resource and a context go in one request, as the API allows several
    action names; a resource of `*` is sent as no ResourceArns (the API's default, "*").
    """
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[str]] = {}
    for action, resource, keys in requests:
        groups.setdefault((resource, tuple(sorted(keys.items()))), []).append(action)
    verdicts = []
    for (resource, keys), actions in groups.items():
        ask: dict[str, Any] = {"PolicySourceArn": role_arn, "ActionNames": sorted(set(actions))}
        if resource != "*":
            ask["ResourceArns"] = [resource]
        if keys:
            ask["ContextEntries"] = _context_entries(dict(keys))
        for page in iam.get_paginator("simulate_principal_policy").paginate(**ask):
            for result in page["EvaluationResults"]:
                verdicts.append(
                    Simulated(
                        result["EvalActionName"],
                        resource,
                        result["EvalDecision"],
                        tuple(result.get("MissingContextValues") or ()),
                    )
                )
    return verdicts


class PathAnalysis(NamedTuple):
    """Reachability Analyzer's answer for one path."""

    source: str
    destination: str
    port: int
    reachable: bool | None  # None: the analysis did not finish, or none was made
    explanation: str
    what: str = ""  # which of the project's paths it is

    @classmethod
    def untraced(cls, what: str, why: str) -> PathAnalysis:
        return cls("", "", 0, None, why, what)

    def line(self) -> str:
        named = f"{self.what}: " if self.what else ""
        if not self.source:
            return f"{named}not traced: {self.explanation}"
        if self.reachable is None:
            verdict = f"not finished: {self.explanation}"
        else:
            verdict = "reachable" if self.reachable else f"NOT reachable: {self.explanation}"
        return f"{named}{self.source} → {self.destination} tcp/{self.port}: {verdict}"


def _explain(analysis: Mapping[str, Any]) -> str:
    """The blocking components Reachability Analyzer names (Explanation: ExplanationCode and
    the component's id), in a sentence."""
    parts = []
    for explanation in analysis.get("Explanations") or []:
        component = explanation.get("Component") or {}
        parts.append(
            f"{explanation.get('ExplanationCode', 'blocked')} at {component.get('Id', '?')}"
        )
    return "; ".join(parts) or analysis.get("StatusMessage", "no explanation given")


def analyze_path(
    ec2: Any,
    source: str,
    destination: str,
    port: int,
    *,
    tags: Mapping[str, str],
    what: str = "",
    timeout: float = 300.0,
    delay: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> PathAnalysis:
    """Ask Reachability Analyzer whether `source` reaches `destination` on TCP `port`; the
    path it creates carries `tags` and is deleted afterwards, whatever the answer
    (CreateNetworkInsightsPath, StartNetworkInsightsAnalysis, DescribeNetworkInsightsAnalyses:
    EC2 API reference). One analysis is one billed unit."""
    tag_spec = [
        {
            "ResourceType": "network-insights-path",
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
    ]
    path_id = ec2.create_network_insights_path(
        Source=source,
        Destination=destination,
        DestinationPort=port,
        Protocol="tcp",
        TagSpecifications=tag_spec,
    )["NetworkInsightsPath"]["NetworkInsightsPathId"]
    analysis_id = ""
    try:
        started = ec2.start_network_insights_analysis(NetworkInsightsPathId=path_id)
        analysis_id = started["NetworkInsightsAnalysis"]["NetworkInsightsAnalysisId"]
        waited = 0.0
        while True:
            found = ec2.describe_network_insights_analyses(
                NetworkInsightsAnalysisIds=[analysis_id]
            )["NetworkInsightsAnalyses"][0]
            if found["Status"] == "succeeded":
                reachable = bool(found.get("NetworkPathFound"))
                explanation = "" if reachable else _explain(found)
                return PathAnalysis(source, destination, port, reachable, explanation, what)
            if found["Status"] == "failed":
                return PathAnalysis(source, destination, port, None, _explain(found), what)
            if waited + delay > timeout:
                running = f"still running after {timeout:g} s"
                return PathAnalysis(source, destination, port, None, running, what)
            sleep(delay)
            waited += delay
    finally:  # nothing of it is left behind: the analysis, then its path
        if analysis_id:
            ec2.delete_network_insights_analysis(NetworkInsightsAnalysisId=analysis_id)
        ec2.delete_network_insights_path(NetworkInsightsPathId=path_id)


class Trace(NamedTuple):
    """A path to put to Reachability Analyzer, or why it cannot be (`problem`)."""

    what: str
    source: str = ""
    destination: str = ""
    port: int = 0
    problem: str = ""


def _interfaces(ec2: Any, description: str) -> list[dict[str, Any]]:
    found = ec2.describe_network_interfaces(
        Filters=[{"Name": "description", "Values": [description]}]
    )["NetworkInterfaces"]
    return sorted(found, key=lambda i: i["NetworkInterfaceId"])


def traces(ec2: Any, node: Mapping[str, Any] | None, router: str, queue_id: str) -> list[Trace]:
    """The node's path to its VPC's internet gateway (443) and the router's to the queue
    (6379), as Reachability Analyzer takes them: an instance or network interface as source,
    an internet gateway or network interface as destination (API_CreateNetworkInsightsPath).
    Lambda names the interfaces it makes for a function "AWS Lambda VPC ENI-<function>..."
    and ElastiCache its nodes' "ElastiCache <cluster id>" (their Description)."""
    out = []
    if node is None:
        out.append(Trace("the node's way out", problem="no GPU node is deployed"))
    else:
        gateways = ec2.describe_internet_gateways(
            Filters=[{"Name": "attachment.vpc-id", "Values": [node["VpcId"]]}]
        )["InternetGateways"]
        if gateways:
            gateway = gateways[0]["InternetGatewayId"]
            out.append(Trace("the node's way out", node["InstanceId"], gateway, HTTPS))
        else:
            out.append(Trace("the node's way out", problem=f"{node['VpcId']} has no gateway"))
    if not (router and queue_id):
        out.append(Trace("the router's way to the queue", problem="no router or no queue"))
        return out
    sources = _interfaces(ec2, f"AWS Lambda VPC ENI-{router}*")
    targets = _interfaces(ec2, f"ElastiCache {queue_id}-*")
    if sources and targets:
        source, target = sources[0]["NetworkInterfaceId"], targets[0]["NetworkInterfaceId"]
        out.append(Trace("the router's way to the queue", source, target, REDIS))
    else:
        missing = "the router's network interface" if not sources else "the queue's"
        out.append(Trace("the router's way to the queue", problem=f"{missing} is not found"))
    return out

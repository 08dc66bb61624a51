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
    reachable: bool | None  # None: the analysis did not finish in time
    explanation: str

    def line(self) -> str:
        if self.reachable is None:
            verdict = f"not finished: {self.explanation}"
        else:
            verdict = "reachable" if self.reachable else f"NOT reachable: {self.explanation}"
        return f"{self.source} → {self.destination} tcp/{self.port}: {verdict}"


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
                return PathAnalysis(source, destination, port, reachable, explanation)
            if found["Status"] == "failed":
                return PathAnalysis(source, destination, port, None, _explain(found))
            if waited + delay > timeout:
                return PathAnalysis(
                    source, destination, port, None, f"still running after {timeout:g} s"
                )
            sleep(delay)
            waited += delay
    finally:  # nothing of it is left behind: the analysis, then its path
        if analysis_id:
            ec2.delete_network_insights_analysis(NetworkInsightsAnalysisId=analysis_id)
        ec2.delete_network_insights_path(NetworkInsightsPathId=path_id)

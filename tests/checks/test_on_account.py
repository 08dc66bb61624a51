"""tlops.checks.on_account: AWS's own verdicts, asked through botocore's Stubber.

Nothing here reaches AWS. The stubs answer as the IAM and EC2 API references document
(SimulatePrincipalPolicy's EvaluationResult: EvalDecision is allowed, explicitDeny or
implicitDeny, MissingContextValues lists condition keys the context lacked; Reachability
Analyzer's NetworkInsightsAnalysis: Status running, succeeded or failed, NetworkPathFound,
Explanations), and the Stubber checks that the requests carry what AWS would need: the
role, the resource and the context keys the declaration names.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from tlops.checks import access, on_account

ROLE = "arn:aws:iam::123456789012:role/tinyllama-control"
NODE_ID = "i-0123456789abcdef0"
INSTANCES = f"arn:aws:ec2:eu-west-1:123456789012:instance/{NODE_ID}"
CONTEXT = {
    "region": "eu-west-1",
    "account": "123456789012",
    "project": "tinyllama",
    "control_bucket": "tinyllama-control",
    "queue_prefix": "tinyllama-queue",
    "function_name": "tinyllama-control",
    "instance_id": NODE_ID,
}


@pytest.fixture
def iam():
    client = boto3.client("iam", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")  # fmt: skip
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def ec2():
    client = boto3.client("ec2", region_name="eu-west-1", aws_access_key_id="x",
                          aws_secret_access_key="x")  # fmt: skip
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def result(action, resource, decision, missing=()):
    return {
        "EvalActionName": action,
        "EvalResourceName": resource,
        "EvalDecision": decision,
        "MissingContextValues": list(missing),
    }


def test_each_tagged_call_is_simulated_with_the_tags_aws_would_see(iam):
    client, stubber = iam
    tags = [
        {"ContextKeyName": "aws:ResourceTag/Project", "ContextKeyValues": ["tinyllama"],
         "ContextKeyType": "string"},
        {"ContextKeyName": "aws:ResourceTag/Role", "ContextKeyValues": ["gpu"],
         "ContextKeyType": "string"},
    ]  # fmt: skip
    stubber.add_response(
        "simulate_principal_policy",
        {
            "EvaluationResults": [
                result("ec2:StartInstances", INSTANCES, "allowed"),
                result("ec2:StopInstances", INSTANCES, "allowed"),
            ]
        },
        {
            "PolicySourceArn": ROLE,
            "ActionNames": ["ec2:StartInstances", "ec2:StopInstances"],
            "ResourceArns": [INSTANCES],
            "ContextEntries": tags,
        },
    )
    keys = {"aws:ResourceTag/Project": "tinyllama", "aws:ResourceTag/Role": "gpu"}
    verdicts = on_account.simulate(
        client,
        ROLE,
        [("ec2:StartInstances", INSTANCES, keys), ("ec2:StopInstances", INSTANCES, keys)],
    )
    assert [v.allowed for v in verdicts] == [True, True]


def test_a_denied_call_names_the_decision_and_the_missing_key(iam):
    client, stubber = iam
    stubber.add_response(
        "simulate_principal_policy",
        {
            "EvaluationResults": [
                result("ec2:StopInstances", INSTANCES, "implicitDeny", ["aws:ResourceTag/Role"])
            ]
        },
    )
    (verdict,) = on_account.simulate(client, ROLE, [("ec2:StopInstances", INSTANCES, {})])
    assert not verdict.allowed
    assert verdict.line("control") == (
        f"control may ec2:StopInstances on {INSTANCES}: implicitDeny "
        "(the context lacked aws:ResourceTag/Role)"
    )


def test_a_call_on_any_resource_is_sent_without_resource_arns(iam):
    client, stubber = iam
    stubber.add_response(
        "simulate_principal_policy",
        {"EvaluationResults": [result("ec2:DescribeInstances", "*", "allowed")]},
        {"PolicySourceArn": ROLE, "ActionNames": ["ec2:DescribeInstances"]},
    )
    (verdict,) = on_account.simulate(client, ROLE, [("ec2:DescribeInstances", "*", {})])
    assert verdict.allowed


class RecordingIam:
    """A narrow fake of IAM's simulator paginator: it records each request and allows all."""

    def __init__(self):
        self.asked = []

    def get_paginator(self, name):
        assert name == "simulate_principal_policy"
        return self

    def paginate(self, **ask):
        self.asked.append(ask)
        resource = (ask.get("ResourceArns") or ["*"])[0]
        yield {"EvaluationResults": [result(a, resource, "allowed") for a in ask["ActionNames"]]}


def test_every_declared_call_of_control_is_asked_about_with_its_tags():
    """The requests are access.yml's declared calls, with the context a deployment gives;
    the tag-scoped ones (StartInstances on the node: Project and Role) carry the tags."""
    iam = RecordingIam()
    component = access.load()["control"]
    verdicts = on_account.simulate(iam, ROLE, access.declared_requests(component, CONTEXT))
    declared = {
        (action, resource)
        for statement in component["calls"]
        for action in statement["actions"]
        for resource in statement["resources"]
    }
    asked = {(v.action, v.resource) for v in verdicts}
    assert len(asked) == len(declared)
    assert ("ec2:StartInstances", INSTANCES) in asked
    start = next(a for a in iam.asked if "ec2:StartInstances" in a["ActionNames"])
    keys = {e["ContextKeyName"]: e["ContextKeyValues"] for e in start["ContextEntries"]}
    assert keys.pop("aws:ResourceTag/Project") == ["tinyllama"]
    assert keys.pop("aws:ResourceTag/Role") == ["gpu"]
    # the node starts only in a shape POST /resize offers (README: t3.small or g4dn.xlarge)
    assert list(keys) == ["ec2:InstanceType"]
    assert keys["ec2:InstanceType"][0] in {"t3.small", "g4dn.xlarge"}
    assert all(a["PolicySourceArn"] == ROLE for a in iam.asked)


def analysis(status, found=None, explanations=()):
    body = {"NetworkInsightsAnalysisId": "nia-1", "Status": status}
    if found is not None:
        body["NetworkPathFound"] = found
    if explanations:
        body["Explanations"] = list(explanations)
    return {"NetworkInsightsAnalyses": [body]}


def arrange_path(stubber):
    stubber.add_response(
        "create_network_insights_path",
        {"NetworkInsightsPath": {"NetworkInsightsPathId": "nip-1"}},
        {
            "Source": "i-0node",
            "Destination": "igw-1",
            "DestinationPort": 443,
            "Protocol": "tcp",
            "TagSpecifications": [
                {
                    "ResourceType": "network-insights-path",
                    "Tags": [{"Key": "Project", "Value": "tinyllama"}],
                }
            ],
        },
    )
    stubber.add_response(
        "start_network_insights_analysis",
        {"NetworkInsightsAnalysis": {"NetworkInsightsAnalysisId": "nia-1"}},
        {"NetworkInsightsPathId": "nip-1"},
    )


def cleaned(stubber):
    stubber.add_response(
        "delete_network_insights_analysis",
        {"NetworkInsightsAnalysisId": "nia-1"},
        {"NetworkInsightsAnalysisId": "nia-1"},
    )
    stubber.add_response(
        "delete_network_insights_path",
        {"NetworkInsightsPathId": "nip-1"},
        {"NetworkInsightsPathId": "nip-1"},
    )


def analyze(client, **over):
    return on_account.analyze_path(
        client, "i-0node", "igw-1", 443, tags={"Project": "tinyllama"}, sleep=lambda _: None,
        **over,
    )  # fmt: skip


def test_a_path_found_after_a_poll_is_reachable_and_nothing_is_left_behind(ec2):
    client, stubber = ec2
    arrange_path(stubber)
    stubber.add_response("describe_network_insights_analyses", analysis("running"))
    stubber.add_response("describe_network_insights_analyses", analysis("succeeded", True))
    cleaned(stubber)
    found = analyze(client)
    assert found.reachable is True
    assert found.line() == "i-0node → igw-1 tcp/443: reachable"


def test_a_blocked_path_names_the_component_that_blocks_it(ec2):
    client, stubber = ec2
    arrange_path(stubber)
    blocked = {"ExplanationCode": "ENI_SG_RULES_MISMATCH", "Component": {"Id": "sg-0node"}}
    stubber.add_response(
        "describe_network_insights_analyses", analysis("succeeded", False, [blocked])
    )
    cleaned(stubber)
    found = analyze(client)
    assert found.reachable is False
    assert "ENI_SG_RULES_MISMATCH at sg-0node" in found.line()


def test_an_analysis_that_outlasts_the_timeout_is_reported_unfinished_and_still_cleaned(ec2):
    client, stubber = ec2
    arrange_path(stubber)
    stubber.add_response("describe_network_insights_analyses", analysis("running"))
    stubber.add_response("describe_network_insights_analyses", analysis("running"))
    cleaned(stubber)
    found = analyze(client, timeout=6.0, delay=5.0)
    assert found.reachable is None and "still running after 6 s" in found.line()


# --- the paths put to Reachability Analyzer ----------------------------------------------
NODE = {"InstanceId": "i-0node", "VpcId": "vpc-1"}


def test_the_node_and_the_router_paths_are_found_by_what_aws_names_them(ec2):
    client, stubber = ec2
    stubber.add_response(
        "describe_internet_gateways",
        {"InternetGateways": [{"InternetGatewayId": "igw-1"}]},
        {"Filters": [{"Name": "attachment.vpc-id", "Values": ["vpc-1"]}]},
    )
    stubber.add_response(
        "describe_network_interfaces",
        {"NetworkInterfaces": [{"NetworkInterfaceId": "eni-router"}]},
        {"Filters": [{"Name": "description", "Values": ["AWS Lambda VPC ENI-tl-router*"]}]},
    )
    stubber.add_response(
        "describe_network_interfaces",
        {"NetworkInterfaces": [{"NetworkInterfaceId": "eni-queue"}]},
        {"Filters": [{"Name": "description", "Values": ["ElastiCache tl-queue-3-*"]}]},
    )
    found = on_account.traces(client, NODE, "tl-router", "tl-queue-3")
    assert [(t.source, t.destination, t.port) for t in found] == [
        ("i-0node", "igw-1", 443),
        ("eni-router", "eni-queue", 6379),
    ]


def test_without_a_queue_the_router_path_is_not_traced_and_says_why(ec2):
    client, stubber = ec2
    stubber.add_response("describe_internet_gateways", {"InternetGateways": []})
    found = on_account.traces(client, NODE, "tl-router", "")
    assert [t.problem for t in found] == ["vpc-1 has no gateway", "no router or no queue"]
    untraced = on_account.PathAnalysis.untraced(found[1].what, found[1].problem)
    assert untraced.line() == "the router's way to the queue: not traced: no router or no queue"

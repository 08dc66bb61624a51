"""The independent IAM verdict (tlops.checks.policy): policies judged against AWS's Service
Authorization Reference. Each expected verdict comes from AWS's documentation, cited where it
is asserted, not from the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from tlops.checks import access, policy

ACCOUNT = "arn:aws:ec2:eu-west-1:123456789012:"
INSTANCE = ACCOUNT + "instance/i-0123456789abcdef0"
CACHE = "arn:aws:elasticache:eu-west-1:123456789012:"
TAGGED = {"StringEquals": {"aws:ResourceTag/Project": "tinyllama"}}


def document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str | list[str], resource: str | list[str], **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def subjects(verdict: policy.Verdict) -> list[str]:
    return [problem.subject for problem in verdict.problems]


def test_a_tag_condition_on_describe_instances_is_refused():
    """The EC2 page of the reference lists only ec2:Region for DescribeInstances, and no
    resource type: no request of it carries aws:ResourceTag/..."""
    verdict = policy.judge(
        document(allow("ec2:DescribeInstances", "*", Sid="Look", Condition=TAGGED))
    )
    [problem] = verdict.problems
    assert (problem.statement, problem.subject) == ("Look", "aws:ResourceTag/Project")
    assert "reference_policies_condition-keys.html" in problem.reason


def test_the_same_condition_on_start_instances_of_an_instance_passes():
    """StartInstances takes instance (required), whose condition keys include
    aws:ResourceTag/${TagKey} (the EC2 page of the reference)."""
    verdict = policy.judge(document(allow("ec2:StartInstances", INSTANCE, Condition=TAGGED)))
    assert verdict.problems == ()


def test_deleting_a_replication_group_on_a_cache_cluster_arn_is_refused():
    """DeleteReplicationGroup takes replicationgroup (required) and snapshot; a cluster:
    ARN is neither (the ElastiCache page of the reference)."""
    verdict = policy.judge(
        document(allow("elasticache:DeleteReplicationGroup", CACHE + "cluster:tinyllama-queue-1"))
    )
    assert subjects(verdict) == [CACHE + "cluster:tinyllama-queue-1"]
    assert "takes replicationgroup, snapshot" in verdict.problems[0].reason
    group = CACHE + "replicationgroup:tinyllama-queue-1"
    assert policy.judge(document(allow("elasticache:DeleteReplicationGroup", group))).problems == ()


def test_an_unknown_action_is_refused_and_a_wildcard_that_matches_none_too():
    verdict = policy.judge(
        document(allow(["ec2:DescribeInstancez", "ec2:Describ*z", "ec3:StartInstances"], "*"))
    )
    assert subjects(verdict) == ["ec2:DescribeInstancez", "ec2:Describ*z", "ec3:StartInstances"]
    # Action names compare case-insensitively (IAM JSON policy elements: Action).
    assert policy.judge(document(allow(["EC2:describeinstances", "s3:Get*"], "*"))).problems == ()


def test_an_action_without_resource_level_permissions_takes_only_star():
    """DescribeInstances has no resource type in the reference: it is authorized on "*"
    only ("Actions, resources, and condition keys for AWS services", the actions table)."""
    verdict = policy.judge(document(allow("ec2:DescribeInstances", INSTANCE)))
    [problem] = verdict.problems
    assert problem.subject == INSTANCE
    assert 'ec2:DescribeInstances has no resource-level permissions: only "*"' in problem.reason


def test_get_object_on_a_bucket_arn_is_refused_and_on_its_objects_passes():
    """GetObject takes object (arn:${Partition}:s3:::${BucketName}/${ObjectName}); a bucket
    ARN has no key."""
    assert subjects(policy.judge(document(allow("s3:GetObject", "arn:aws:s3:::b")))) == [
        "arn:aws:s3:::b"
    ]
    assert policy.judge(document(allow("s3:GetObject", "arn:aws:s3:::b/held/*"))).problems == ()


def test_list_bucket_and_get_object_on_a_bucket_and_its_keys_pass_together():
    """The S3 user guide's own example grants both actions on both ARNs in one statement:
    each resource is taken by one of them, and AWS applies each where it matches."""
    both = allow(["s3:ListBucket", "s3:GetObject"], ["arn:aws:s3:::b", "arn:aws:s3:::b/*"])
    assert policy.judge(document(both)).problems == ()


def test_a_star_resource_passes_any_known_action():
    verdict = policy.judge(document(allow(["ec2:DescribeInstances", "ec2:StopInstances"], "*")))
    assert verdict.problems == ()


def test_a_required_resource_type_left_out_is_refused():
    """CreateNetworkInterface requires network-interface and subnet (marked * in the EC2
    page): with a Resource element, each required type needs an ARN or pattern."""
    eni = ACCOUNT + "network-interface/*"
    verdict = policy.judge(document(allow("ec2:CreateNetworkInterface", eni, Sid="Make")))
    [problem] = verdict.problems
    assert (problem.statement, problem.subject) == ("Make", "ec2:CreateNetworkInterface")
    assert "resource type subnet required" in problem.reason
    # ... granted by another statement of the same policy, it is there
    subnet = allow("ec2:CreateNetworkInterface", ACCOUNT + "subnet/*")
    assert policy.judge(document(allow("ec2:CreateNetworkInterface", eni), subnet)).problems == ()


def test_global_keys_pass_and_another_actions_key_is_refused():
    """aws:SourceIp and aws:PrincipalTag/... are global condition keys; s3:prefix is one
    of ListBucket's keys, never in a GetObject request (the S3 page of the reference)."""
    condition = {
        "IpAddress": {"aws:SourceIp": "203.0.113.0/24"},
        "StringEquals": {"aws:PrincipalTag/team": "ops", "s3:prefix": "held/"},
    }
    verdict = policy.judge(document(allow("s3:GetObject", "arn:aws:s3:::b/*", Condition=condition)))
    assert subjects(verdict) == ["s3:prefix"]
    listing = allow("s3:ListBucket", "arn:aws:s3:::b", Condition={"StringLike": {"s3:prefix": "x"}})
    assert policy.judge(document(listing)).problems == ()


def test_resource_arns_match_segment_by_segment():
    takes = policy.reference_action("ec2", "CreateNetworkInterface").takes
    assert takes("arn:aws:ec2:*:*:subnet/*")
    assert not takes("arn:aws:ec2:*:*:vpc/*")  # a * in a header segment stays in it
    assert not takes("arn:aws:ec2:eu-west-1:123456789012:Subnet/subnet-1")  # case-sensitive
    get_user = policy.reference_action("iam", "GetUser").takes
    assert get_user("arn:aws:iam::${aws:PrincipalAccount}:user/${aws:username}")  # variables
    invoke = policy.reference_action("lambda", "InvokeFunction").takes
    assert invoke("arn:aws:lambda:eu-west-1:123456789012:function:tinyllama-control:prod")
    assert not invoke("arn:aws:lambda:eu-west-1:123456789012:layer:tinyllama")


def test_not_action_and_not_resource_are_said_to_be_unjudged_not_passed():
    verdict = policy.judge(
        document(
            {"Effect": "Deny", "NotAction": ["iam:*", "s3:GetObjekt"], "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::b/x"},
            allow("*", "*"),
        )
    )
    assert subjects(verdict) == ["s3:GetObjekt"]  # a typo still names nothing
    assert [(p.statement, p.subject) for p in verdict.not_judged] == [
        ("Statement[0]", "NotAction"),
        ("Statement[1]", "NotResource"),
        ("Statement[2]", "*"),
    ]


def test_a_statement_or_document_aws_would_refuse_is_named():
    verdict = policy.judge({"Statement": {"Effect": "Permit", "Action": "s3:GetObject"}})
    assert subjects(verdict) == ["Effect", "Resource"]
    with pytest.raises(policy.PolicyError, match="not JSON"):
        policy.parse('{"Statement": [')
    with pytest.raises(policy.PolicyError, match="needs a Statement"):
        policy.judge({"Version": "2012-10-17"})


# --- the project's own policies ---------------------------------------------------------
@pytest.fixture(scope="module")
def declared():
    return access.load()


def test_every_policy_the_project_renders_passes(declared):
    verdicts = policy.judge_rendered()
    assert set(verdicts) == set(declared)  # every component of access.yml
    for name, verdict in verdicts.items():
        assert verdict.problems == (), (name, [str(p) for p in verdict.problems])
        assert verdict.not_judged == (), name


def without(rendered: dict[str, Any], action: str) -> dict[str, Any]:
    """A copy of a rendered policy whose statements no longer grant `action`."""
    kept = [s for s in rendered["Statement"] if action not in s["Action"]]
    return {**rendered, "Statement": kept}


def test_a_vpc_function_without_its_network_interface_statements_is_refused(declared):
    """Lambda creates, describes and deletes the network interfaces of a function in a VPC
    with the function's role (AWSLambdaVPCAccessExecutionRole; Lambda's "Giving Lambda
    functions access to resources in an Amazon VPC")."""
    name = next(n for n, c in declared.items() if c["runs_in"] == "lambda-vpc")
    rendered = access.render_policy(declared[name], policy.EXAMPLE_CONTEXT)
    for action in ("ec2:CreateNetworkInterface", "ec2:DescribeSubnets"):
        verdict = policy.judge_own(name, declared[name], without(rendered, action))
        assert (name, action) in [(p.statement, p.subject) for p in verdict.problems]
        assert all("AWSLambdaVPCAccessExecutionRole" in p.reason for p in verdict.problems)


def test_every_lambda_needs_its_log_stream_and_traces_and_an_instance_neither(declared):
    name = next(n for n, c in declared.items() if c["runs_in"] == "lambda")
    rendered = access.render_policy(declared[name], policy.EXAMPLE_CONTEXT)
    for action in ("logs:PutLogEvents", "xray:PutTraceSegments"):
        verdict = policy.judge_own(name, declared[name], without(rendered, action))
        assert (name, action) in [(p.statement, p.subject) for p in verdict.problems], action
    assert policy.NEEDS["instance"] == ()


def test_the_projects_statements_pair_every_action_with_every_resource():
    """The reference asks a statement's actions and resources to be compatible: held for
    the project's own policies, where it caught DeleteNetworkInterface, which takes only a
    network-interface, granted on subnets and security groups too."""
    eni, subnet = ACCOUNT + "network-interface/*", ACCOUNT + "subnet/*"
    mixed = allow(["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface"], [eni, subnet])
    assert policy.judge(document(mixed)).problems == ()  # fine for AWS ...
    found = policy.incompatible_pairs(document(mixed))
    assert [p.subject for p in found] == [subnet]  # ... not for a policy of ours
    assert found[0].reason.startswith("ec2:DeleteNetworkInterface never takes it")


# --- tlops check policy -----------------------------------------------------------------
def test_the_command_names_each_problem_and_exits_1(tmp_path, capsys):
    from tlops.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(document(allow("ec2:DescribeInstances", "*", Sid="Look", Condition=TAGGED)))
    )
    assert main(["check", "policy", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{bad}: Look: aws:ResourceTag/Project: ec2:DescribeInstances ")
    assert out[-1] == "1 statement, 1 problem"


def test_the_command_refuses_a_file_that_is_not_json(tmp_path, capsys):
    from tlops.cli import main

    broken = tmp_path / "broken.json"
    broken.write_text('{"Statement": [')
    assert main(["check", "policy", str(broken)]) == 6
    assert capsys.readouterr().err.startswith(f"tlops: {broken}: not JSON: ")


def test_the_command_passes_a_good_file_and_everything_access_yml_renders(tmp_path, capsys):
    from tlops.cli import main

    good = tmp_path / "good.json"
    good.write_text(json.dumps(document(allow("s3:GetObject", "arn:aws:s3:::b/*"))))
    assert main(["check", "policy", str(good), "--rendered"]) == 0
    statements = 1 + sum(v.statements for v in policy.judge_rendered().values())
    assert capsys.readouterr().out == f"{statements} statements, no problems\n"


# --- the policies written by hand -------------------------------------------------------
ROLES = Path(access.DECLARATION).parent / "roles"


def viewer_policy() -> dict[str, Any]:
    """The observability role's viewer policy, rendered with plausible values."""
    templates = jinja2.FileSystemLoader(ROLES / "observability" / "templates")
    env = jinja2.Environment(loader=templates, undefined=jinja2.StrictUndefined)
    text = env.get_template("viewer_policy.json.j2").render(
        aws_account_id="123456789012",
        aws_region="eu-west-1",
        project_tag="tinyllama",
        observability_dashboard_name="TinyLlama-Overview",
        _observability_log_groups={
            "access": "/tinyllama/http-api-access",
            "router": "/aws/lambda/tinyllama-router",
        },
    )
    return json.loads(text)


def scheduler_policy() -> dict[str, Any]:
    """The scheduler's inline policy of the control role (schedule.yml), rendered."""
    tasks = yaml.safe_load((ROLES / "control" / "tasks" / "schedule.yml").read_text())
    [task] = [t for t in tasks if "amazon.aws.iam_policy" in t]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["to_json"] = json.dumps
    function = "arn:aws:lambda:eu-west-1:123456789012:function:"
    text = env.from_string(task["amazon.aws.iam_policy"]["policy_json"]).render(
        _control_alias_arn=function + "tinyllama-control:prod",
        _control_queue_health_arn=function + "tinyllama-queue-health:prod",
    )
    return json.loads(text)


@pytest.mark.parametrize("render", [viewer_policy, scheduler_policy])
def test_the_policies_written_by_hand_pass_as_the_rendered_ones_do(render):
    written = render()
    verdict = policy.judge(written) + policy.incompatible_pairs(written)
    assert verdict.problems == (), [str(p) for p in verdict.problems]
    assert verdict.statements == len(written["Statement"])

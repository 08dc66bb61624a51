"""The access declaration (access.yml), the policies rendered from it, and the evaluator that
judges what the stand-in's IAM cannot: resource ARNs outside S3, and conditions."""

from __future__ import annotations

import json
import warnings

import pytest

from tlops.checks import access

CONTEXT = {
    "region": "eu-west-1",
    "account": "123456789012",
    "project": "tinyllama",
    "reply_bucket": "tinyllama-replies-123456789012",
    "control_bucket": "tinyllama-control-123456789012",
    "function_name": "tinyllama-router",
    "instance_id": "i-0123456789abcdef0",
    "queue_prefix": "tinyllama-queue",
    "budget_name": "tinyllama-monthly",
    "cost_topic": "tinyllama-cost-daily",
    "node_settings_parameter": "tl-fif/node_settings",
    "node_inference_key_parameter": "tl-fif/node_inference_key",
}
NODE_TAGS = {"aws:ResourceTag/Project": "tinyllama", "aws:ResourceTag/Role": "gpu"}
INSTANCE = "arn:aws:ec2:eu-west-1:123456789012:instance/"


@pytest.fixture(scope="module")
def declared():
    return access.load()


@pytest.fixture(scope="module")
def policies(declared):
    return {name: access.render_policy(component, CONTEXT) for name, component in declared.items()}


def test_the_declaration_names_every_compute_component(declared):
    assert {
        "router",
        "queue_health",
        "gpu_node",
        "budget_killer",
        "cost_summary",
        "eip_watch",
        "control",
    } <= set(declared)


def test_every_rendered_policy_allows_every_call_its_component_declares(declared, policies):
    for name, component in declared.items():
        for action, resource, keys in access.declared_requests(component, CONTEXT):
            assert access.allows(policies[name], action, resource, keys), (name, action, resource)


def test_every_rendered_policy_passes_parliament(policies):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports pkg_resources
        from parliament import analyze_policy_string
    for name, policy in policies.items():
        findings = analyze_policy_string(json.dumps(policy)).findings
        assert not findings, (name, [(f.issue, f.detail) for f in findings])


def test_parliament_would_catch_a_typo_and_a_needless_wildcard():
    from parliament import analyze_policy_string

    bad = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObjekt", "Resource": "arn:aws:s3:::b/*"},
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"},
        ],
    }
    issues = {f.issue for f in analyze_policy_string(json.dumps(bad)).findings}
    assert {"UNKNOWN_ACTION", "RESOURCE_STAR"} <= issues


def test_nothing_in_the_vpc_may_call_ec2_or_elasticache(declared, policies):
    for name, component in declared.items():
        if component["runs_in"] != "lambda-vpc":
            continue
        assert "service:ec2" not in [r["target"] for r in component["reaches"]], name
        own = {"ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
               "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
               "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"}  # fmt: skip
        for statement in policies[name]["Statement"]:
            calls = set(statement["Action"]) - own
            assert not {a for a in calls if a.startswith(("ec2:", "elasticache:"))}, name


def test_control_creates_only_tagged_queues_of_its_prefix_and_deletes_only_tagged_ones(policies):
    control = policies["control"]
    create, delete = "elasticache:CreateReplicationGroup", "elasticache:DeleteReplicationGroup"
    tagged = {"aws:RequestTag/Project": "tinyllama", "aws:RequestTag/Role": "queue"}
    group = CACHE + "replicationgroup:tinyllama-queue-3"
    assert access.allows(control, create, group, tagged)
    assert not access.allows(control, create, group, {})  # created without the tags
    assert not access.allows(control, create, CACHE + "replicationgroup:other-1", tagged)
    assert access.allows(control, create, CACHE + "subnetgroup:tinyllama-queue")
    assert not access.allows(control, create, CACHE + "subnetgroup:someone-elses")
    queue = {"aws:ResourceTag/Project": "tinyllama", "aws:ResourceTag/Role": "queue"}
    assert access.allows(control, delete, group, queue)
    assert not access.allows(control, delete, group, {})
    assert not access.allows(control, delete, CACHE + "replicationgroup:other-1", queue)


def test_eip_watch_may_only_look(policies):
    watch = policies["eip_watch"]
    assert access.allows(watch, "ec2:DescribeAddresses", "*")
    for action in ("ec2:ReleaseAddress", "ec2:DisassociateAddress", "ec2:StopInstances"):
        assert not access.allows(watch, action, "*", NODE_TAGS)
    assert not any("ec2:CreateNetworkInterface" in s["Action"] for s in watch["Statement"])


def test_the_node_may_stop_only_itself_and_emit_only_its_namespace(policies):
    node = policies["gpu_node"]
    assert access.allows(node, "ec2:StopInstances", INSTANCE + CONTEXT["instance_id"], NODE_TAGS)
    assert not access.allows(node, "ec2:StopInstances", INSTANCE + "i-someone-else", NODE_TAGS)
    assert not access.allows(
        node, "ec2:StartInstances", INSTANCE + CONTEXT["instance_id"], NODE_TAGS
    )
    metrics = "cloudwatch:PutMetricData"
    assert access.allows(node, metrics, "*", {"cloudwatch:namespace": "TLFIF"})
    assert not access.allows(node, metrics, "*", {"cloudwatch:namespace": "AWS/EC2"})


def test_the_node_may_read_exactly_its_settings_parameter_and_change_nothing_in_ssm(policies):
    node, ssm = policies["gpu_node"], "arn:aws:ssm:eu-west-1:123456789012:parameter/"
    assert access.allows(node, "ssm:GetParameter", ssm + "tl-fif/node_settings")
    for other in ("tl-fif/latest_ami_id", "tl-fif/node_settings2", "other/node_settings"):
        assert not access.allows(node, "ssm:GetParameter", ssm + other)
    other_region = "arn:aws:ssm:us-east-1:123456789012:parameter/tl-fif/node_settings"
    assert not access.allows(node, "ssm:GetParameter", other_region)
    for action in ("ssm:PutParameter", "ssm:GetParameters", "ssm:GetParametersByPath"):
        assert not access.allows(node, action, ssm + "tl-fif/node_settings")


def test_the_node_may_read_its_inference_key_and_nothing_of_kms(policies):
    """The key is a SecureString under aws/ssm, whose key policy grants Decrypt to every
    principal of the account (ps-restrict-decryption.html): GetParameter on it alone."""
    node, ssm = policies["gpu_node"], "arn:aws:ssm:eu-west-1:123456789012:parameter/"
    assert access.allows(node, "ssm:GetParameter", ssm + "tl-fif/node_inference_key")
    assert not access.allows(node, "ssm:PutParameter", ssm + "tl-fif/node_inference_key")
    assert not access.allows(node, "ssm:GetParameter", ssm + "tl-fif/node_inference_key2")
    assert not any(action.startswith("kms:") for s in node["Statement"] for action in s["Action"])


def test_item_10_the_node_writes_a_result_only_where_none_is(policies):
    """PutObject on the reply bucket only with If-None-Match (conditional-writes-enforce.html,
    example 1): a write without it, which would overwrite a stored result, is refused; reading
    a result back needs no header."""
    node, key = policies["gpu_node"], f"arn:aws:s3:::{CONTEXT['reply_bucket']}/alice/job.json"
    assert access.allows(node, "s3:PutObject", key, {"s3:if-none-match": "*"})
    assert not access.allows(node, "s3:PutObject", key)
    assert not access.allows(node, "s3:PutObject", key, {"s3:if-match": '"etag"'})
    assert access.allows(node, "s3:GetObject", key)
    [write] = [s for s in node["Statement"] if "s3:PutObject" in s["Action"]
               and s["Resource"] == [f"arn:aws:s3:::{CONTEXT['reply_bucket']}/*"]]  # fmt: skip
    assert write["Condition"] == {"Null": {"s3:if-none-match": "false"}}


def test_defect_3_the_node_may_read_back_a_result_it_did_not_write(policies):
    # The watcher adopts a stored result when its conditional write is refused: GetObject.
    key = f"arn:aws:s3:::{CONTEXT['reply_bucket']}/alice/job.json"
    assert access.allows(policies["gpu_node"], "s3:GetObject", key)
    assert access.allows(policies["gpu_node"], "s3:PutObject", key, {"s3:if-none-match": "*"})
    assert not access.allows(
        policies["gpu_node"], "s3:GetObject", "arn:aws:s3:::other/alice/job.json"
    )
    assert not access.allows(policies["gpu_node"], "s3:DeleteObject", key)


def test_lambdas_get_their_own_log_stream_and_vpc_lambdas_their_interfaces(policies):
    own = f"arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/{CONTEXT['function_name']}:*"
    assert access.allows(policies["router"], "logs:PutLogEvents", own)
    other = own.replace("tinyllama-router", "someone-else")
    assert not access.allows(policies["router"], "logs:PutLogEvents", other)
    eni = "arn:aws:ec2:eu-west-1:123456789012:network-interface/eni-1"
    assert access.allows(policies["queue_health"], "ec2:CreateNetworkInterface", eni)
    assert not any(
        "ec2:CreateNetworkInterface" in s["Action"] for s in policies["gpu_node"]["Statement"]
    )


def test_an_explicit_deny_wins_and_unknown_operators_judge_nothing():
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"},
        ]
    }
    assert access.allows(policy, "s3:GetObject", "arn:aws:s3:::b/k")
    assert not access.allows(policy, "s3:DeleteObject", "arn:aws:s3:::b/k")
    odd = {
        "Statement": {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        }
    }
    assert not access.allows(odd, "s3:GetObject", "arn:aws:s3:::b/k", {"aws:SourceIp": "10.1.1.1"})


def test_a_bad_placeholder_or_component_is_refused_by_name(tmp_path):
    with pytest.raises(access.AccessError, match=r"no value for the placeholder \{instance_id\}"):
        access.fill("instance/{instance_id}", {"region": "eu-west-1"})
    with pytest.raises(access.AccessError, match=r"unknown placeholder \{bucket\}"):
        access.fill("{bucket}", {})
    broken = tmp_path / "access.yml"
    broken.write_text("access_components:\n  x: {runs_in: ec2}\n")
    with pytest.raises(access.AccessError, match=r"x.runs_in must be one of"):
        access.load(broken)
    broken.write_text("access_components:\n  x: {runs_in: lambda, reaches: [{target: ftp}]}\n")
    with pytest.raises(access.AccessError, match=r"unknown target 'ftp'"):
        access.load(broken)


def test_the_filter_renders_what_the_module_judges():
    import importlib.util
    from pathlib import Path

    filters = Path(access.DECLARATION).parent / "collections/ansible_collections/tlops/stack"
    path = filters / "plugins" / "filter" / "tlops_access.py"
    spec = importlib.util.spec_from_file_location("tlops_access", path)
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    render = plugin.FilterModule().filters()["tlops_policy"]
    assert render("gpu_node", CONTEXT) == access.render_policy(access.load()["gpu_node"], CONTEXT)
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match="no component 'nobody'"):
        render("nobody", CONTEXT)


# --- the guard rails --------------------------------------------------------------------
EC2 = "arn:aws:ec2:eu-west-1:123456789012:"
CACHE = "arn:aws:elasticache:eu-west-1:123456789012:"


def test_the_killer_stops_only_the_projects_gpu_instances(policies):
    killer = policies["budget_killer"]
    stop = "ec2:StopInstances"
    assert access.allows(killer, stop, INSTANCE + "i-1", NODE_TAGS)
    assert not access.allows(killer, stop, INSTANCE + "i-1", {})
    builder = {**NODE_TAGS, "aws:ResourceTag/Role": "builder"}
    assert not access.allows(killer, stop, INSTANCE + "i-1", builder)
    theirs = {**NODE_TAGS, "aws:ResourceTag/Project": "someone-else"}
    assert not access.allows(killer, stop, INSTANCE + "i-1", theirs)
    for never in ("ec2:TerminateInstances", "ec2:StartInstances", "ec2:DeleteVolume"):
        assert not access.allows(killer, never, INSTANCE + "i-1", NODE_TAGS), never


def test_the_killer_releases_only_the_projects_addresses(policies):
    killer, eip = policies["budget_killer"], EC2 + "elastic-ip/eipalloc-1"
    ours = {"aws:ResourceTag/Project": "tinyllama"}
    for action in ("ec2:ReleaseAddress", "ec2:DisassociateAddress"):
        assert access.allows(killer, action, eip, ours)
        assert not access.allows(killer, action, eip, {})
        assert not access.allows(killer, action, eip, {"aws:ResourceTag/Project": "other"})
    assert not access.allows(killer, "ec2:AllocateAddress", eip, ours)


def test_the_killer_deletes_only_the_tagged_queue_and_marks_the_stack_killed(policies):
    killer = policies["budget_killer"]
    queue = {"aws:ResourceTag/Project": "tinyllama", "aws:ResourceTag/Role": "queue"}
    group = CACHE + "replicationgroup:tinyllama-queue-2"
    delete = "elasticache:DeleteReplicationGroup"
    assert access.allows(killer, delete, group, queue)
    assert not access.allows(killer, delete, group, {})  # untagged, same name
    assert not access.allows(killer, delete, CACHE + "replicationgroup:other-queue-1", queue)
    assert not access.allows(killer, "elasticache:DeleteCacheCluster", group, queue)
    assert not access.allows(killer, "elasticache:CreateReplicationGroup", group, queue)
    bucket = "arn:aws:s3:::tinyllama-control-123456789012/"
    assert access.allows(killer, "s3:PutObject", bucket + "killed.json")
    assert not access.allows(killer, "s3:PutObject", bucket + "state.json")
    budget = "arn:aws:budgets::123456789012:budget/"
    assert access.allows(killer, "budgets:ViewBudget", budget + "tinyllama-monthly")
    assert not access.allows(killer, "budgets:ViewBudget", budget + "someone-elses")
    assert not access.allows(killer, "budgets:ModifyBudget", budget + "tinyllama-monthly")


def test_the_router_asks_control_through_its_bucket_and_changes_nothing_of_controls(policies):
    router, bucket = policies["router"], "arn:aws:s3:::tinyllama-control-123456789012"
    assert access.allows(router, "s3:PutObject", bucket + "/requests/wake/minute-1.json")
    assert not access.allows(router, "s3:PutObject", bucket + "/state.json")
    assert not access.allows(router, "s3:PutObject", bucket + "/killed.json")
    assert access.allows(router, "s3:GetObject", bucket + "/state.json")
    assert not access.allows(router, "s3:DeleteObject", bucket + "/held/sub-1/x.json")
    assert not access.allows(router, "s3:ListBucket", "arn:aws:s3:::tinyllama-replies-1")


def test_who_reads_a_key_that_may_be_missing_may_list_its_bucket(policies):
    """GetObject of a missing key is 403 unless the caller has s3:ListBucket on the bucket
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, "Permissions"):
    control reads killed.json on every wake, the router a resize's progress before control
    wrote it, the node survivors.json. A condition on s3:prefix would not count."""
    bucket = "arn:aws:s3:::tinyllama-control-123456789012"
    for name in ("control", "router", "gpu_node"):
        assert access.allows(policies[name], "s3:ListBucket", bucket, {}), name


def test_the_cost_summary_reads_costs_and_publishes_to_its_topic_only(policies):
    summary = policies["cost_summary"]
    assert access.allows(summary, "ce:GetCostAndUsage", "*")
    topic = "arn:aws:sns:eu-west-1:123456789012:"
    assert access.allows(summary, "sns:Publish", topic + "tinyllama-cost-daily")
    assert not access.allows(summary, "sns:Publish", topic + "tinyllama-budget-kill")
    assert not access.allows(summary, "ec2:StopInstances", INSTANCE + "i-1", NODE_TAGS)
    assert not any(
        "ec2:CreateNetworkInterface" in s["Action"] for s in summary["Statement"]
    )  # outside any VPC: no network interfaces

"""The reachability and IAM check over what deploy.yml really builds in the stand-in, and the
defects of the issue "What the stand-in cannot see", put back one at a time: the check names
the component, the target and the missing link for each.

The design checked (docs/decisions.md, "Sleep and wake"): nothing in the VPC calls EC2 or
ElastiCache and the VPC has no interface endpoint; `control`, outside any VPC, makes those
calls; the router and the queue probe reach AWS through the S3 gateway endpoint only; the
queue's group is found by its id prefix and tags, a new one on every wake.

One deploy (queue included, `enable_redis=true`) serves the module; each defect is made by
changing the deployed state and undone afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import boto3
import pytest

from tlops.checks import deployed, on_account
from tlops.cli import playbooks
from tlops.contract.control import Action, Request
from tlops.control.actions import Control
from tlops.control.config import ControlConfig
from tlops.control.queue import QueueSpec
from tlops.control.wake import ensure_queue
from tlops.local.services import MotoProcess
from tlops.local.stack import STAND_IN_CREDENTIALS

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=5)]

REGION = "eu-west-1"
PROJECT = "tinyllama"
DEPLOYMENT = deployed.Deployment(
    region=REGION,
    account="123456789012",
    project=PROJECT,
    # the local inventory's suffix (tlops_new_name_suffix), never the account id
    reply_bucket=f"{PROJECT}-replies-standin",
    functions={
        "router": f"{PROJECT}-router",
        "queue_health": f"{PROJECT}-queue-health",
        "budget_killer": f"{PROJECT}-budget-killer",
        "cost_summary": f"{PROJECT}-cost-summary",
        "eip_watch": f"{PROJECT}-eip-watch",
        "control": f"{PROJECT}-control",
    },
    node_role=f"{PROJECT}-gpu",
    queue_prefix=f"{PROJECT}-queue",  # the groups are <prefix>-<n>, found by their tags
    control_bucket=f"{PROJECT}-control-standin",
    budget_name=f"{PROJECT}-monthly",
    cost_topic=f"{PROJECT}-cost-daily",
    node_settings_parameter="/tl-fif/node_settings",
    node_inference_key_parameter="/tl-fif/node_inference_key",
)  # fmt: skip


class Stack:
    def __init__(self, url: str, state_dir):
        self.url = url
        self.env = {
            "TL_AWS_ENDPOINT_URL": url,
            "TLOPS_STATE_DIR": str(state_dir),
            "TL_REDIS_URL": "redis://127.0.0.1:6390/0",
            **STAND_IN_CREDENTIALS,
        }
        self.session = boto3.Session(
            aws_access_key_id=STAND_IN_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=STAND_IN_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.url)

    def verify(self) -> dict[str, dict[str, deployed.paths.Proof]]:
        verdicts = deployed.verify(self.client, DEPLOYMENT)
        return {v.component: {p.target: p for p in v.proofs} for v in verdicts}

    def playbook(self, name: str, **extra_vars: str):
        return playbooks.run(name, env=self.env, extra_vars=extra_vars, capture=True, timeout=900)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("deployed")
    moto = MotoProcess(state)
    moto.start()
    try:
        stack = Stack(moto.url, state)
        done = stack.playbook("deploy.yml", enable_redis="true", queue_delete_wait="false")
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        yield stack
    finally:
        moto.stop()


def group_id(stack: Stack, name: str) -> str:
    found = stack.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}]
    )
    return found["SecurityGroups"][0]["GroupId"]


CONTROL_BUCKET_ARN = f"arn:aws:s3:::{DEPLOYMENT.control_bucket}"
QUEUE_ARN = f"arn:aws:elasticache:{REGION}:123456789012:replicationgroup:{PROJECT}-queue"


def test_verify_yml_proves_every_path_and_call_and_prints_them(stack):
    """Asked for AWS's own verdicts too, which the stand-in cannot give: it says so and
    judges with the project's checkers alone."""
    done = stack.playbook(
        "verify.yml", enable_redis="true", verify_on_account="yes", verify_reachability="yes"
    )
    assert done.returncode == 0, done.stdout[-4000:]
    said = " ".join((done.stdout + done.stderr).split())
    assert "no IAM policy simulator" in said and "no role's calls were put to it" in said
    assert "no Reachability Analyzer" in said and "no path was traced" in said
    out = " ".join(done.stdout.split())  # Ansible folds long lines
    for line in (
        "router → redis: ok: group",
        "router → service:s3: ok: gateway endpoint",
        f"router may s3:PutObject on {CONTROL_BUCKET_ARN}/requests/example: allowed",
        f"router may s3:GetObject on {CONTROL_BUCKET_ARN}/state.json: allowed",
        f"router may s3:PutObject on {CONTROL_BUCKET_ARN}/held/example: allowed",
        # The stand-in answers no associatePublicIpAddress: the gap is named in the proof.
        "gpu_node → service:ec2: ok: the stand-in does not answer associatePublicIpAddress",
        "gpu_node → service:s3: ok: gateway endpoint",
        "gpu_node → service:ssm: ok: the stand-in does not answer associatePublicIpAddress",
        "gpu_node may ssm:GetParameter on arn:aws:ssm:eu-west-1:123456789012:"
        "parameter/tl-fif/node_settings: allowed",
        "gpu_node may ssm:GetParameter on arn:aws:ssm:eu-west-1:123456789012:"
        "parameter/tl-fif/node_inference_key: allowed",
        f"gpu_node may s3:DeleteObject on {CONTROL_BUCKET_ARN}/held/example: allowed",
        f"gpu_node may s3:PutObject on {CONTROL_BUCKET_ARN}/requests/wake/example: allowed",
        "gpu_node may s3:GetObject",
        "queue_health → redis: ok",
        "queue_health → service:s3: ok: gateway endpoint",
        f"queue_health may s3:PutObject on {CONTROL_BUCKET_ARN}/survivors.json: allowed",
        "control → service:ec2: ok: outside any VPC",
        "control → service:elasticache: ok: outside any VPC",
        # the node deploy.yml launched, by its id: nothing else (issue 20, item 7)
        "control may ec2:StartInstances on arn:aws:ec2:eu-west-1:123456789012:instance/i-",
        "control may ec2:ModifyInstanceAttribute",
        f"control may elasticache:CreateReplicationGroup on {QUEUE_ARN}-example: allowed",
        f"control may elasticache:DeleteReplicationGroup on {QUEUE_ARN}-example: allowed",
        f"control may s3:PutObject on {CONTROL_BUCKET_ARN}/state.json: allowed",
        "budget_killer → service:ec2: ok: outside any VPC",
        "budget_killer may ec2:StopInstances",
        f"budget_killer may elasticache:DeleteReplicationGroup on {QUEUE_ARN}-example: allowed",
        f"budget_killer may s3:PutObject on {CONTROL_BUCKET_ARN}/killed.json: allowed",
        "cost_summary may ce:GetCostAndUsage",
        "eip_watch → service:ec2: ok: outside any VPC",
        "eip_watch may ec2:DescribeAddresses on *: allowed",
        "Every declared path is proven",
    ):
        assert line in out, line
    # Nothing in the VPC calls EC2 or ElastiCache any more.
    for absent in ("router → service:ec2", "router may ec2:", "router may elasticache:",
                   "queue_health may ec2:", "interface endpoint"):  # fmt: skip
        assert absent not in out, absent


def test_every_verdict_is_ok_and_the_policies_are_access_ymls(stack):
    verdicts = deployed.verify(stack.client, DEPLOYMENT)
    assert {v.component for v in verdicts} == {
        "router", "queue_health", "gpu_node", "control", "budget_killer", "cost_summary",
        "eip_watch",
    }  # fmt: skip
    for verdict in verdicts:
        assert verdict.ok, (verdict.component, verdict.proofs, verdict.calls, verdict.drift)
        assert verdict.calls, verdict.component
    by_name = {v.component: v for v in verdicts}
    router = by_name["router"]
    assert {p.target for p in router.proofs} == {
        "redis", "service:s3", "public:cognito-idp.eu-west-1.amazonaws.com"
    }  # fmt: skip
    assert {c.action.split(":")[0] for c in router.calls} == {"s3"}
    assert {c.action.split(":")[0] for c in by_name["queue_health"].calls} == {"s3"}
    assert {c.action.split(":")[0] for c in by_name["control"].calls} == {
        "ec2", "elasticache", "s3"
    }  # fmt: skip


def test_a_call_iams_simulator_denies_fails_the_verdict_and_names_the_decision(stack):
    """On an account the simulator's word counts beside ours: one implicitDeny (what AWS
    answers when no statement allows, API_EvaluationResult) makes the component not ok."""
    asked = []

    def simulator(role, requests):
        asked.append(role)
        return [
            on_account.Simulated(action, resource, "implicitDeny" if i == 0 else "allowed", ())
            for i, (action, resource, _) in enumerate(requests)
        ]

    verdicts = {v.component: v for v in deployed.verify(stack.client, DEPLOYMENT,
                                                         simulator=simulator)}  # fmt: skip
    assert f"{PROJECT}-gpu" in asked and f"{PROJECT}-control" in asked
    assert not verdicts["control"].ok
    assert verdicts["control"].simulated[0].line("control").endswith(": implicitDeny")


# What Lambda itself calls for a function in a VPC (its network interfaces): the only EC2
# actions a role in the VPC may hold (AWSLambdaVPCAccessExecutionRole's, narrowed).
LAMBDA_VPC_ACTIONS = {
    "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
}  # fmt: skip


def test_the_vpc_has_no_interface_endpoint_and_its_functions_call_no_ec2_api(stack):
    """What the design removed (the EC2 endpoint, €7.39 a month idle) stays removed."""
    listed = stack.client("ec2").describe_vpc_endpoints()["VpcEndpoints"]
    found = [e for e in listed if e["State"].lower() != "deleted"]  # the stand-in keeps those
    assert [(e["ServiceName"], e["VpcEndpointType"]) for e in found] == [
        (f"com.amazonaws.{REGION}.s3", "Gateway")
    ]
    iam = stack.client("iam")
    for role in (f"{PROJECT}-router", f"{PROJECT}-queue-health"):
        actions = set()
        for statement in deployed.inline_policy(iam, role)["Statement"]:
            listed = statement["Action"]
            actions |= {listed} if isinstance(listed, str) else set(listed)
        api = {a for a in actions if a.startswith(("ec2:", "elasticache:"))}
        assert api == LAMBDA_VPC_ACTIONS, (role, api - LAMBDA_VPC_ACTIONS)
        assert {a for a in actions if a.startswith("s3:")}, role


def test_an_ec2_endpoint_with_private_dns_captures_the_nodes_ec2_path(stack):
    """The defect the design removed, put back: an interface endpoint of EC2 with private DNS
    answers for EC2's name in the whole VPC, so the node's StopInstances goes to it whatever
    public path the node has, and its group admits only the router."""
    ec2 = stack.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])["Vpcs"][0]
    private = ec2.describe_subnets(
        Filters=[{"Name": "tag:Name", "Values": [f"{PROJECT}-private"]}]
    )["Subnets"][0]["SubnetId"]
    router, node = group_id(stack, f"{PROJECT}-router"), group_id(stack, f"{PROJECT}-node")
    guard = ec2.create_security_group(
        GroupName=f"{PROJECT}-endpoints", Description="the old design's", VpcId=vpc["VpcId"]
    )["GroupId"]
    rule = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
            "UserIdGroupPairs": [{"GroupId": router}]}  # fmt: skip
    ec2.authorize_security_group_ingress(GroupId=guard, IpPermissions=[rule])
    endpoint = ec2.create_vpc_endpoint(
        VpcId=vpc["VpcId"], ServiceName=f"com.amazonaws.{REGION}.ec2",
        VpcEndpointType="Interface", SubnetIds=[private], SecurityGroupIds=[guard],
        PrivateDnsEnabled=True,
    )["VpcEndpoint"]["VpcEndpointId"]  # fmt: skip
    try:
        captured = stack.verify()["gpu_node"]["service:ec2"]
        done = stack.playbook("verify.yml", enable_redis="true")
        node_rule = {**rule, "UserIdGroupPairs": [{"GroupId": node}]}
        ec2.authorize_security_group_ingress(GroupId=guard, IpPermissions=[node_rule])
        admitted = stack.verify()["gpu_node"]["service:ec2"]
    finally:
        ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint])
        ec2.delete_security_group(GroupId=guard)
    assert captured.status == "missing"
    assert f"interface endpoint {endpoint} answers to groups {guard}" in captured.detail
    assert f"admit nothing on 443 from {node}" in captured.detail
    assert f"its private DNS captures com.amazonaws.{REGION}.ec2" in captured.detail
    assert "public address" not in captured.detail  # the public path no longer counts
    assert done.returncode != 0
    assert "Not proven: gpu_node → service:ec2: MISSING" in " ".join(done.stdout.split())
    # The same endpoint admitting the node carries its calls.
    assert admitted.status == "ok"
    assert admitted.detail.startswith(f"interface endpoint {endpoint} (private DNS)")
    # Gone again: the node's path is its public address, as deployed.
    assert stack.verify()["gpu_node"]["service:ec2"].detail.startswith(
        "the stand-in does not answer associatePublicIpAddress"
    )


def test_the_queue_is_found_by_its_tags_through_a_sleep_and_a_wake(stack):
    """control's deep sleep deletes the tagged group (the stand-in leaves it `deleting`); the
    Redis paths are then not proven, nor failed; the wake's group, one id further, is the one
    verified. An untagged group of the prefix is never taken for the queue."""
    elasticache, lam = stack.client("elasticache"), stack.client("lambda")
    assert deployed.current_queue_id(elasticache, DEPLOYMENT) == f"{PROJECT}-queue-1"
    function = lam.get_function_configuration(FunctionName=DEPLOYMENT.functions["control"])
    config = ControlConfig.from_env(function["Environment"]["Variables"])
    assert config.queue_prefix == DEPLOYMENT.queue_prefix
    look_alike = f"{PROJECT}-queue-7"
    elasticache.create_replication_group(
        ReplicationGroupId=look_alike, ReplicationGroupDescription="not tagged",
        Engine="redis", NumCacheClusters=1,
    )  # fmt: skip
    try:
        slept = Control(config, client=stack.client).run(
            Request(Action.SLEEP, "queue_health", int(time.time() * 1000), {"deep": True})
        )
        asleep = {v.component: v for v in deployed.verify(stack.client, DEPLOYMENT)}
        group, created = ensure_queue(
            elasticache, QueueSpec.from_json(function["Environment"]["Variables"]["TL_QUEUE_SPEC"]),
            PROJECT,
        )  # fmt: skip
        awake = {v.component: v for v in deployed.verify(stack.client, DEPLOYMENT)}
        woken_id = deployed.current_queue_id(elasticache, DEPLOYMENT)
    finally:
        elasticache.delete_replication_group(ReplicationGroupId=look_alike)
    assert slept["outcome"] == "asleep" and slept["deleted"] == [f"{PROJECT}-queue-1"]
    for name in ("router", "queue_health", "gpu_node"):
        redis = next(p for p in asleep[name].proofs if p.target == "redis")
        assert redis.status == "skipped", redis
        assert "no ElastiCache queue is deployed here" in redis.detail
        assert asleep[name].ok
    assert created and group["ReplicationGroupId"] == f"{PROJECT}-queue-2" == woken_id
    for name in ("router", "queue_health", "gpu_node"):
        redis = next(p for p in awake[name].proofs if p.target == "redis")
        assert redis.status == "ok", redis
    assert all(v.ok for v in awake.values())


def test_defect_3_a_node_without_public_address_or_endpoint_route_is_caught(stack):
    ec2 = stack.client("ec2")
    subnet = ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": [f"{PROJECT}-public"]}])
    subnet_id = subnet["Subnets"][0]["SubnetId"]
    tables = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]
    )
    public_rtb = tables["RouteTables"][0]["RouteTableId"]
    [s3] = ec2.describe_vpc_endpoints(
        Filters=[{"Name": "service-name", "Values": [f"com.amazonaws.{REGION}.s3"]}]
    )["VpcEndpoints"]
    ec2.modify_subnet_attribute(SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": False})
    ec2.modify_vpc_endpoint(VpcEndpointId=s3["VpcEndpointId"], RemoveRouteTableIds=[public_rtb])
    try:
        node = stack.verify()["gpu_node"]
    finally:
        ec2.modify_subnet_attribute(SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": True})
        ec2.modify_vpc_endpoint(VpcEndpointId=s3["VpcEndpointId"], AddRouteTableIds=[public_rtb])
    for target in ("service:s3", "service:ec2", "service:monitoring"):
        assert node[target].status == "missing", node[target]
        assert "no public address" in node[target].detail
    # On an account the interface's associatePublicIpAddress decides; the stand-in answers
    # none and the launch template names no interface, so the subnet's default is read: said.
    assert "names no interface: judged by subnet" in node["service:ec2"].detail
    assert "is not on the subnet's route table" in node["service:s3"].detail
    assert node["redis"].status == "ok"


def test_defect_1_a_router_without_its_keys_in_its_configuration_is_caught(stack):
    lam = stack.client("lambda")
    name = DEPLOYMENT.functions["router"]
    config = lam.get_function_configuration(FunctionName=name)
    variables = config["Environment"]["Variables"]
    assert variables.get("TL_JWKS"), "deploy.yml wrote no keys into the router's configuration"
    without = {k: v for k, v in variables.items() if k != "TL_JWKS"}
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": without})
    try:
        proof = stack.verify()["router"]["public:cognito-idp.eu-west-1.amazonaws.com"]
    finally:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
    assert proof.status == "missing"
    assert "no default route" in proof.detail


def test_a_policy_that_drifted_from_access_yml_is_reported(stack):
    iam = stack.client("iam")
    role, name = DEPLOYMENT.node_role, "node-self"
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    iam.put_role_policy(
        RoleName=role,
        PolicyName=name,
        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        '"Action": "s3:PutObject", "Resource": "arn:aws:s3:::tinyllama-replies-123456789012/*"}]}',
    )
    try:
        [node] = [v for v in deployed.verify(stack.client, DEPLOYMENT) if v.component == "gpu_node"]
    finally:
        body = document if isinstance(document, str) else json.dumps(document)
        iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=body)
    assert not node.ok
    denied = {call.action for call in node.calls if not call.allowed}
    assert {"s3:GetObject", "s3:DeleteObject", "s3:ListBucket", "ec2:StopInstances",
            "cloudwatch:PutMetricData"} <= denied  # fmt: skip
    assert "run deploy.yml" in node.drift


def test_an_ec2_permission_given_back_to_the_router_is_drift(stack):
    """The router asks control; a role that can start the node itself is not access.yml's."""
    iam = stack.client("iam")
    role, name = f"{PROJECT}-router", "start-the-node"
    extra = {"Version": "2012-10-17", "Statement": [{"Sid": "StartTheNode", "Effect": "Allow",
             "Action": ["ec2:StartInstances"], "Resource": ["*"]}]}  # fmt: skip
    iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(extra))
    try:
        [router] = [v for v in deployed.verify(stack.client, DEPLOYMENT) if v.component == "router"]
    finally:
        iam.delete_role_policy(RoleName=role, PolicyName=name)
    assert not router.ok
    assert all(call.allowed for call in router.calls)  # what it needs, it still has
    assert router.drift == (
        "the role's policy holds 1 statement(s) access.yml does not declare: run deploy.yml"
    )


@pytest.mark.parametrize("component", ["budget_killer", "control"])
def test_a_function_declared_outside_any_vpc_put_in_one_is_caught(stack, component):
    """The killer and control are declared outside any VPC: in one, their way to the EC2
    and ElastiCache APIs is not proven (it would need the endpoint the design removed)."""
    lam, ec2 = stack.client("lambda"), stack.client("ec2")
    name = DEPLOYMENT.functions[component]
    private = ec2.describe_subnets(
        Filters=[{"Name": "tag:Name", "Values": [f"{PROJECT}-private"]}]
    )["Subnets"][0]["SubnetId"]
    router = group_id(stack, f"{PROJECT}-router")
    lam.update_function_configuration(
        FunctionName=name, VpcConfig={"SubnetIds": [private], "SecurityGroupIds": [router]}
    )
    try:
        proofs = stack.verify()[component]
    finally:
        lam.update_function_configuration(
            FunctionName=name, VpcConfig={"SubnetIds": [], "SecurityGroupIds": []}
        )
    assert {p.status for p in proofs.values()} == {"missing"}
    assert "runs in a VPC" in proofs["service:ec2"].detail


def test_an_s3_endpoint_policy_for_another_bucket_is_caught(stack):
    """An endpoint policy that allows another bucket only: the router's and the node's S3
    calls are refused at the endpoint, whose route captures S3 (no public path instead)."""
    ec2 = stack.client("ec2")
    [s3] = ec2.describe_vpc_endpoints(
        Filters=[{"Name": "service-name", "Values": [f"com.amazonaws.{REGION}.s3"]}]
    )["VpcEndpoints"]
    other = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
             "Action": "s3:*", "Resource": "arn:aws:s3:::someone-else/*"}]}  # fmt: skip
    ec2.modify_vpc_endpoint(VpcEndpointId=s3["VpcEndpointId"], PolicyDocument=json.dumps(other))
    try:
        verified = stack.verify()
    finally:
        ec2.modify_vpc_endpoint(
            VpcEndpointId=s3["VpcEndpointId"], PolicyDocument=s3["PolicyDocument"]
        )
    replies = f"arn:aws:s3:::{DEPLOYMENT.reply_bucket}/example"
    for component in ("router", "gpu_node"):
        proof = verified[component]["service:s3"]
        assert proof.status == "missing", proof
        assert f"gateway endpoint {s3['VpcEndpointId']}'s policy does not allow" in proof.detail
    assert f"does not allow s3:GetObject on {replies}" in verified["router"]["service:s3"].detail
    assert stack.verify()["router"]["service:s3"].status == "ok"


def test_a_network_acl_without_rules_for_the_answers_is_caught(stack):
    """A network ACL on the private subnet that lets only HTTPS out and only 6379 in, as if
    ACLs were stateful: the router's S3 answers cannot come back in, nor can the queue's
    answers go out to the node's subnet; the router's own Redis connections stay within its
    subnet, where no ACL is crossed."""
    ec2 = stack.client("ec2")
    private = ec2.describe_subnets(
        Filters=[{"Name": "tag:Name", "Values": [f"{PROJECT}-private"]}]
    )["Subnets"][0]
    [current] = ec2.describe_network_acls(
        Filters=[{"Name": "association.subnet-id", "Values": [private["SubnetId"]]}]
    )["NetworkAcls"]
    [association] = [a for a in current["Associations"] if a["SubnetId"] == private["SubnetId"]]
    custom = ec2.create_network_acl(VpcId=private["VpcId"])["NetworkAcl"]["NetworkAclId"]
    allow = {"NetworkAclId": custom, "RuleNumber": 100, "RuleAction": "allow"}
    ec2.create_network_acl_entry(
        **allow,
        Protocol="6",
        Egress=True,
        CidrBlock="0.0.0.0/0",
        PortRange={"From": 443, "To": 443},
    )
    ec2.create_network_acl_entry(
        **allow, Protocol="6", Egress=False, CidrBlock="10.20.0.0/22",
        PortRange={"From": 6379, "To": 6379},
    )  # fmt: skip
    replaced = ec2.replace_network_acl_association(
        AssociationId=association["NetworkAclAssociationId"], NetworkAclId=custom
    )["NewAssociationId"]
    try:
        verified = stack.verify()
    finally:
        ec2.replace_network_acl_association(
            AssociationId=replaced, NetworkAclId=current["NetworkAclId"]
        )
        ec2.delete_network_acl(NetworkAclId=custom)
    s3 = verified["router"]["service:s3"]
    assert s3.status == "missing", s3
    assert f"network ACL {custom} of {private['SubnetId']} lets no TCP answers in" in s3.detail
    node_redis = verified["gpu_node"]["redis"]
    assert node_redis.status == "missing", node_redis
    assert "lets no TCP answers out to 10.20.0.0/24" in node_redis.detail
    assert verified["router"]["redis"].status == "ok"  # within one subnet: no ACL crossed
    assert stack.verify()["router"]["service:s3"].status == "ok"

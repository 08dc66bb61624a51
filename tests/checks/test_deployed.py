"""The reachability and IAM check over what deploy.yml really builds in the stand-in, and the
defects of the issue "What the stand-in cannot see", put back one at a time: the check names
the component, the target and the missing link for each.

One deploy (queue included, `enable_redis=true`) serves the module; each defect is made by
changing the deployed state and undone afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from tlops.checks import deployed
from tlops.cli import playbooks
from tlops.local.services import MotoProcess
from tlops.local.stack import STAND_IN_CREDENTIALS

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=5)]

REGION = "eu-west-1"
PROJECT = "tinyllama"
DEPLOYMENT = deployed.Deployment(
    region=REGION,
    account="123456789012",
    project=PROJECT,
    reply_bucket=f"{PROJECT}-replies-123456789012",
    functions={
        "router": f"{PROJECT}-router",
        "queue_health": f"{PROJECT}-queue-health",
        "budget_killer": f"{PROJECT}-budget-killer",
        "cost_summary": f"{PROJECT}-cost-summary",
        "eip_watch": f"{PROJECT}-eip-watch",
    },
    node_role=f"{PROJECT}-gpu",
    queue_id=f"{PROJECT}-queue",
    budget_name=f"{PROJECT}-monthly",
    cost_topic=f"{PROJECT}-cost-daily",
    node_settings_parameter="/tl-fif/node_settings",
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


def test_verify_yml_proves_every_path_and_call_and_prints_them(stack):
    done = stack.playbook("verify.yml", enable_redis="true")
    assert done.returncode == 0, done.stdout[-4000:]
    out = " ".join(done.stdout.split())  # Ansible folds long lines
    for line in (
        "router → redis: ok: group",
        "router → service:s3: ok: gateway endpoint",
        "router → service:ec2: ok: interface endpoint",
        "gpu_node → service:ec2: ok: subnet",
        "gpu_node → service:s3: ok: gateway endpoint",
        "gpu_node → service:ssm: ok: subnet",
        "gpu_node may ssm:GetParameter on arn:aws:ssm:eu-west-1:123456789012:"
        "parameter/tl-fif/node_settings: allowed",
        "queue_health → redis: ok",
        "router may ec2:StartInstances",
        "router may ec2:ModifyInstanceAttribute",
        "gpu_node may s3:GetObject",
        "budget_killer → service:ec2: ok: outside any VPC",
        "budget_killer may ec2:StopInstances",
        "cost_summary may ce:GetCostAndUsage",
        "eip_watch → service:ec2: ok: outside any VPC",
        "eip_watch may ec2:DescribeAddresses on *: allowed",
        "Every declared path is proven",
    ):
        assert line in out, line


def test_every_verdict_is_ok_and_the_policies_are_access_ymls(stack):
    verdicts = deployed.verify(stack.client, DEPLOYMENT)
    assert {v.component for v in verdicts} == {
        "router", "queue_health", "gpu_node", "budget_killer", "cost_summary", "eip_watch"
    }  # fmt: skip
    for verdict in verdicts:
        assert verdict.ok, (verdict.component, verdict.proofs, verdict.calls, verdict.drift)
        assert verdict.calls or verdict.component == "queue_health"


def test_defect_2_an_ec2_endpoint_nobody_may_connect_to_is_caught(stack):
    ec2 = stack.client("ec2")
    endpoints, router = (
        group_id(stack, f"{PROJECT}-endpoints"),
        group_id(stack, f"{PROJECT}-router"),
    )
    rule = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
            "UserIdGroupPairs": [{"GroupId": router}]}  # fmt: skip
    ec2.revoke_security_group_ingress(GroupId=endpoints, IpPermissions=[rule])
    try:
        proof = stack.verify()["router"]["service:ec2"]
        done = stack.playbook("verify.yml", enable_redis="true")
    finally:
        ec2.authorize_security_group_ingress(GroupId=endpoints, IpPermissions=[rule])
    assert proof.status == "missing"
    assert "admit nothing on 443 from" in proof.detail and router in proof.detail
    assert done.returncode != 0
    assert "Not proven: router → service:ec2: MISSING" in " ".join(done.stdout.split())


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
        import json

        body = document if isinstance(document, str) else json.dumps(document)
        iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=body)
    assert not node.ok
    denied = {call.action for call in node.calls if not call.allowed}
    assert {"s3:GetObject", "ec2:StopInstances", "cloudwatch:PutMetricData"} <= denied
    assert "run deploy.yml" in node.drift


def test_a_guard_rail_put_in_a_vpc_is_caught(stack):
    """The killer is declared outside any VPC: in one, its way to the APIs is not proven."""
    lam, ec2 = stack.client("lambda"), stack.client("ec2")
    name = DEPLOYMENT.functions["budget_killer"]
    private = ec2.describe_subnets(
        Filters=[{"Name": "tag:Name", "Values": [f"{PROJECT}-private"]}]
    )["Subnets"][0]["SubnetId"]
    router = group_id(stack, f"{PROJECT}-router")
    lam.update_function_configuration(
        FunctionName=name, VpcConfig={"SubnetIds": [private], "SecurityGroupIds": [router]}
    )
    try:
        proofs = stack.verify()["budget_killer"]
    finally:
        lam.update_function_configuration(
            FunctionName=name, VpcConfig={"SubnetIds": [], "SecurityGroupIds": []}
        )
    assert {p.status for p in proofs.values()} == {"missing"}
    assert "runs in a VPC" in proofs["service:ec2"].detail

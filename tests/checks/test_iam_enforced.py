"""Each component's own code, run with its own role's credentials against a stand-in that
enforces IAM: a permission its policy lacks fails here as it would on AWS.

moto checks, once INITIAL_NO_AUTH_ACTION_COUNT requests have passed, every request's
signature and its action against the caller's policies; for S3 it also matches the bucket
and key against the statement's resources. For every other service it judges the action
only (it hands "*" as the resource) and it ignores conditions such as aws:ResourceTag:
`moto_view` therefore widens non-S3 resources to "*" for this run, and test_access.py judges
those resources and conditions with the evaluator instead (docs/local-stack.md).

Each component's code is run twice over: with the policy access.yml renders (it works), and
with each of its declared statements left out in turn (it fails), so every statement is both
sufficient and needed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.doubles.inference import InferenceDouble
from tlops.checks import access
from tlops.common.telemetry import Telemetry
from tlops.contract import JobStatus
from tlops.edge import eip_watch, gpu_node, jobs, resize, status
from tlops.guard import killer, notification, summary
from tlops.local import costs as canned
from tlops.local.imds import ImdsDouble
from tlops.local.services import MotoProcess
from tlops.node import deployment
from tlops.node.activity import Activity, now_ms
from tlops.node.runner import Job, OpenAIRunner, Transient
from tlops.node.settings import Settings
from tlops.node.watchdog import Doubt, Watchdog, WatchdogSettings

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
ACCOUNT = "123456789012"
PROJECT = "tinyllama"
BUCKET = f"{PROJECT}-replies-{ACCOUNT}"
NODE_SETTINGS = "/tl-fif/node_settings"
# The free requests moto allows before it enforces: the three that make the admin below.
FREE_REQUESTS = 3


def session(key_id: str, secret: str, token: str | None = None) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        region_name=REGION,
    )


class Enforcing:
    """A moto server with IAM on, an admin to arrange things with, and roles to assume."""

    def __init__(self, url: str, admin: boto3.Session):
        self.url = url
        self.admin = admin
        self.admin_arn = admin.client("sts", endpoint_url=url).get_caller_identity()["Arn"]

    def client(self, service: str, on: boto3.Session | None = None):
        return (on or self.admin).client(service, endpoint_url=self.url)

    def assume(self, policy: dict) -> boto3.Session:
        """A session holding a fresh role with `policy` (as moto can judge it)."""
        iam, name = self.client("iam"), f"component-{uuid.uuid4().hex[:8]}"
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": self.admin_arn},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
            "Arn"
        ]
        iam.put_role_policy(
            RoleName=name,
            PolicyName="least-privilege",
            PolicyDocument=json.dumps(moto_view(policy)),
        )
        creds = self.client("sts").assume_role(RoleArn=arn, RoleSessionName="test")["Credentials"]
        return session(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])


# moto names an action after the service's endpoint, not its IAM prefix, and after the API
# operation, not the IAM action where the two differ.
MOTO_PREFIXES = {"cloudwatch": "monitoring"}
MOTO_ACTIONS = {"budgets:ViewBudget": "budgets:DescribeBudget"}


def moto_view(policy: dict) -> dict:
    """The policy as moto can judge it: non-S3 resources widened (moto matches them against
    "*"), IAM prefixes moto spells otherwise renamed; S3 resources and the actions as
    rendered."""
    statements = []
    for statement in policy["Statement"]:
        actions = []
        for action in statement["Action"]:
            prefix, _, name = MOTO_ACTIONS.get(action, action).partition(":")
            actions.append(f"{MOTO_PREFIXES.get(prefix, prefix)}:{name}")
        s3_only = all(r.startswith("arn:aws:s3:::") for r in statement["Resource"])
        resources = statement["Resource"] if s3_only else ["*"]
        statements.append({**statement, "Action": actions, "Resource": resources})
    return {**policy, "Statement": statements}


@pytest.fixture(scope="module")
def enforcing(tmp_path_factory) -> Iterator[Enforcing]:
    server = MotoProcess(
        tmp_path_factory.mktemp("moto-iam"),
        settings={"INITIAL_NO_AUTH_ACTION_COUNT": str(FREE_REQUESTS)},
    )
    server.start()
    try:
        iam = session("bootstrap", "bootstrap").client("iam", endpoint_url=server.url)
        iam.create_user(UserName="admin")
        everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        iam.put_user_policy(
            UserName="admin",
            PolicyName="everything",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [everything]}),
        )
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        yield Enforcing(server.url, session(key["AccessKeyId"], key["SecretAccessKey"]))
    finally:
        server.stop()


def test_the_stand_in_really_enforces(enforcing):
    nobody = enforcing.assume({"Version": "2012-10-17", "Statement": [
        {"Sid": "Nothing", "Effect": "Allow", "Action": ["sqs:ListQueues"], "Resource": ["*"]}
    ]})  # fmt: skip
    with pytest.raises(ClientError, match=r"AccessDenied|not authorized"):
        enforcing.client("ec2", nobody).describe_instances()


# --- arranging, as the admin ---------------------------------------------------------
@pytest.fixture(scope="module")
def node_id(enforcing) -> str:
    amis = json.loads(resources.files("tlops.local").joinpath("ubuntu_amis.json").read_text())
    ec2 = enforcing.client("ec2")
    tags = [{"Key": "Project", "Value": PROJECT}, {"Key": "Role", "Value": "gpu"}]
    instance = ec2.run_instances(
        ImageId=amis[0]["ami_id"],
        InstanceType="g4dn.xlarge",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[instance])
    return instance


@pytest.fixture(scope="module")
def node_settings(enforcing, redis_server) -> str:
    """What deploy.yml writes for the node to read at boot."""
    value = json.dumps({"project": PROJECT, "redis_url": redis_server.url})
    enforcing.client("ssm").put_parameter(Name=NODE_SETTINGS, Value=value, Type="String")
    return NODE_SETTINGS


@pytest.fixture(scope="module")
def bucket(enforcing) -> str:
    s3 = enforcing.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=BUCKET, Key="alice/stored.json", Body=b'{"id": "x", "status": "done"}')
    return BUCKET


def context(**extra: str) -> dict[str, str]:
    return {
        "region": REGION,
        "account": ACCOUNT,
        "project": PROJECT,
        "reply_bucket": BUCKET,
        "node_settings_parameter": NODE_SETTINGS.lstrip("/"),
        **extra,
    }


def policy_of(component: str, ctx: dict[str, str], without: str | None = None) -> dict:
    declared = access.load()[component]
    kept = [c for c in declared.get("calls") or [] if c["sid"] != without]
    return access.render_policy({**declared, "calls": kept}, ctx)


# --- each component's code, under its role ---------------------------------------------
@dataclasses.dataclass
class NodeHost:
    """What the node's code finds on its machine: Redis, IMDS answering its id, a state dir."""

    redis_url: str
    imds_url: str
    state_dir: Path


@pytest.fixture
def host(redis_url, node_id, tmp_path) -> Iterator[NodeHost]:
    with ImdsDouble(node_id) as imds:
        yield NodeHost(redis_url, imds.url, tmp_path / "node-state")


def run_router(enforcing: Enforcing, role: boto3.Session, node: str, host: NodeHost) -> None:
    """What the router does with AWS: find and start the node, stop it, read a result,
    and GET /status's look at the node."""
    ec2, s3 = enforcing.client("ec2", role), enforcing.client("s3", role)
    looked = status.node_part(lambda: ec2, PROJECT)
    if "error" in looked:  # the part answers in fixed words; its detail names the denial
        raise gpu_node.NodeUnavailable(looked["detail"])
    assert looked["instance"] == node
    decision = gpu_node.ensure_running(ec2, PROJECT)
    assert decision.node.instance_id == node
    stopped = gpu_node.stop(ec2, PROJECT)
    assert stopped is not None and stopped.instance_id == node
    # POST /resize: the type of the stopped node changes, and back
    for instance_type in ("t3.small", "g4dn.xlarge"):
        resize.modify_type(ec2, gpu_node.find(ec2, PROJECT), instance_type)
    assert jobs.read_small_result(s3, BUCKET, "alice/stored.json")["status"] == "done"


def run_node(enforcing: Enforcing, role: boto3.Session, node: str, host: NodeHost) -> None:
    """What the node does with AWS: at boot it reads its deployment's settings; the watcher
    writes a result, then adopts the stored one on a second delivery (its conditional write
    refused); the idle watchdog, its node idle for an hour, stops it and counts the stop in
    CloudWatch."""
    text = deployment.read_parameter(
        NODE_SETTINGS,
        REGION,
        timeout_s=1,
        client=lambda service, _: enforcing.client(service, role),
    )
    assert deployment.parse(text)[0]["TL_PROJECT"] == PROJECT
    s3 = enforcing.client("s3", role)
    with InferenceDouble() as inference:
        runner = OpenAIRunner(
            Settings(redis_url="redis://unused", inference_url=inference.url), s3=s3
        )
        job_id = str(uuid.uuid4())
        record = {"reply_s3": f"s3://{BUCKET}/alice/{job_id}.json", "prompt": "hi", "ts": "1"}
        first = runner.run(Job("1-0", job_id, "alice", record, 1, 1))
        again = runner.run(Job("1-0", job_id, "alice", record, 2, 2))
    assert first.status is JobStatus.DONE and again == first

    idle_since = Activity(host.state_dir)
    idle_since.mark(now_ms() - 3_600_000)
    idle_since.flush(force=True)
    settings = WatchdogSettings(
        redis_url=host.redis_url, state_dir=host.state_dir, imds_url=host.imds_url
    )
    outcome = Watchdog(
        settings,
        telemetry=Telemetry("idle_watchdog", stream=io.StringIO()),
        ec2=enforcing.client("ec2", role),
        cloudwatch=enforcing.client("cloudwatch", role),
        boot=lambda: 0,
    ).tick()
    if not outcome.stopped:
        raise Doubt(outcome.reason)
    if "metric_error" in outcome.fields:
        raise Doubt(outcome.fields["metric_error"])


BUDGET = f"{PROJECT}-monthly"
COST_TOPIC = f"{PROJECT}-cost-daily"


def run_killer(enforcing: Enforcing, role: boto3.Session, node: str, _host: NodeHost) -> None:
    """What the budget killer does with AWS after a believed breach: re-read the budget's
    limit, stop the tagged node, release the project's address, delete the router's EC2
    endpoint and the tagged queue (each arranged fresh by the admin)."""
    ec2, cache = enforcing.client("ec2"), enforcing.client("elasticache")
    budgets = enforcing.client("budgets")
    if not budgets.describe_budgets(AccountId=ACCOUNT).get("Budgets"):
        budgets.create_budget(AccountId=ACCOUNT, Budget={
            "BudgetName": BUDGET, "BudgetLimit": {"Amount": "20", "Unit": "USD"},
            "TimeUnit": "MONTHLY", "BudgetType": "COST"})  # fmt: skip
    ec2.start_instances(InstanceIds=[node])
    tags = [{"Key": "Project", "Value": PROJECT}]
    address = ec2.allocate_address(
        Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": tags}]
    )["AllocationId"]
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/22")["Vpc"]["VpcId"]
    router_tags = [*tags, {"Key": "Role", "Value": "router"}]
    ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.ec2", VpcEndpointType="Interface",
        TagSpecifications=[{"ResourceType": "vpc-endpoint", "Tags": router_tags}],
    )  # fmt: skip
    queue_id = f"{PROJECT}-queue-{uuid.uuid4().hex[:6]}"  # a deleted one stays `deleting`
    cache.create_replication_group(
        ReplicationGroupId=queue_id, ReplicationGroupDescription="q", Engine="redis",
        CacheNodeType="cache.t4g.micro", NumCacheClusters=1,
        Tags=[*tags, {"Key": "Role", "Value": "queue"}],
    )  # fmt: skip
    config = killer.KillerConfig(PROJECT, BUDGET, ACCOUNT, REGION, queue_id=queue_id)
    now = datetime.now(UTC)
    text = notification.budget_message(budget_name=BUDGET, account=ACCOUNT, limit=20.0,
        unit="USD", threshold_percent=105, spend=21.5, when=now)  # fmt: skip
    event = notification.sns_event(topic_arn="arn:aws:sns:x", message_id="m", message=text,
                                   when=now)  # fmt: skip
    report = killer.handle(event, config, lambda service: enforcing.client(service, role))
    unread = [r for r in report.reasons if "could not be re-read" in r]
    if report.failed or unread:
        raise killer.KillIncomplete(f"{report.failed} {unread}")
    # A set: eip_watch's run may have left another tagged address, released as well.
    kinds = sorted({a.kind for a in report.actions})
    assert kinds == ["delete-endpoint", "delete-queue", "release-address", "stop-instance"]
    assert address not in {a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]}


def run_cost_summary(enforcing: Enforcing, role: boto3.Session, node: str, _host: NodeHost) -> None:
    """What the daily cost summary does with AWS: read a day's costs, publish the mail."""
    topic = enforcing.client("sns").create_topic(Name=COST_TOPIC)["TopicArn"]
    today = datetime.now(UTC).date()
    canned.ensure(enforcing.client("ce"), enforcing.url, today)
    config = summary.SummaryConfig(PROJECT, topic, 20.0, "USD")
    mail, message_id = summary.send(
        config, enforcing.client("ce", role), enforcing.client("sns", role), today
    )
    if mail.problem:
        raise killer.KillIncomplete(mail.problem)
    assert mail.summary is not None and message_id


def run_eip_watch(enforcing: Enforcing, role: boto3.Session, node: str, _host: NodeHost) -> None:
    """What eip_watch does with AWS: count the project's detached addresses."""
    ec2 = enforcing.client("ec2")
    if not ec2.describe_addresses(Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])[
        "Addresses"
    ]:
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        ec2.create_tags(Resources=[allocation], Tags=[{"Key": "Project", "Value": PROJECT}])
    found = eip_watch.watch(enforcing.client("ec2", role), PROJECT)
    assert len(found["detached"]) == 1


RUNS: dict[str, tuple[Callable[..., None], Callable[[str], dict[str, str]]]] = {
    "router": (run_router, lambda node: context(function_name=f"{PROJECT}-router")),
    "eip_watch": (run_eip_watch, lambda node: context(function_name=f"{PROJECT}-eip-watch")),
    "gpu_node": (run_node, lambda node: context(instance_id=node)),
    "budget_killer": (
        run_killer,
        lambda node: context(
            function_name=f"{PROJECT}-budget-killer",
            queue_id=f"{PROJECT}-queue",
            budget_name=BUDGET,
        ),
    ),
    "cost_summary": (
        run_cost_summary,
        lambda node: context(function_name=f"{PROJECT}-cost-summary", cost_topic=COST_TOPIC),
    ),
}
STATEMENTS = [
    (component, call["sid"])
    for component in RUNS
    for call in access.load()[component].get("calls") or []
]


@pytest.mark.parametrize("component", list(RUNS))
def test_each_component_works_with_the_policy_access_yml_renders(
    enforcing, node_id, bucket, node_settings, host, component
):
    run, ctx = RUNS[component]
    run(enforcing, enforcing.assume(policy_of(component, ctx(node_id))), node_id, host)


@pytest.mark.parametrize(("component", "sid"), STATEMENTS, ids=[f"{c}-{s}" for c, s in STATEMENTS])
def test_each_declared_statement_is_needed(
    enforcing, node_id, bucket, node_settings, host, component, sid
):
    run, ctx = RUNS[component]
    role = enforcing.assume(policy_of(component, ctx(node_id), without=sid))
    with pytest.raises(
        (ClientError, gpu_node.NodeUnavailable, jobs.ResultUnavailable, Transient, Doubt,
         killer.KillIncomplete, resize.StepRefused, deployment.SettingsUnavailable)
    ) as refused:  # fmt: skip
        run(enforcing, role, node_id, host)
    assert "AccessDenied" in str(refused.value) or "not authorized" in str(refused.value)


def test_defect_3_with_put_object_alone_the_node_cannot_adopt_a_stored_result(
    enforcing, node_id, bucket, node_settings, host
):
    """The node's policy before the fix allowed s3:PutObject only: the second delivery's
    conditional write is refused and reading the stored result back is denied."""
    policy = policy_of("gpu_node", context(instance_id=node_id))
    for statement in policy["Statement"]:
        if statement["Sid"] == "WriteAndReadBackReplies":
            statement["Action"] = ["s3:PutObject"]
    with pytest.raises(Transient, match="AccessDenied"):
        run_node(enforcing, enforcing.assume(policy), node_id, host)

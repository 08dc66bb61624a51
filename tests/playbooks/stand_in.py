"""The stand-in account as the playbook tests drive and read it: ansible-playbook and tlops
run as an operator runs them, boto3 views of what they made, and the assertions that the
life cycles (test_deploy_plan.py, test_deploy_teardown.py) and the role tests share.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3

from tlops.edge.routes import ROUTES

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")
REGION = "eu-west-1"
UBUNTU_AMI = "ami-0a7d2e4f1c3b5a001"  # one of the stand-in's Ubuntu 22.04 images
NODE_SETTINGS = "/tl-fif/node_settings"  # what the node reads at every boot
NODE_KEY = "/tl-fif/node_inference_key"  # the key vLLM asks for, read with it
PROJECT = {"Key": "Project", "Value": "tinyllama"}
# describe_<kind> call → the key its answer lists the resources under.
KINDS = {
    "vpcs": "Vpcs",
    "subnets": "Subnets",
    "security_groups": "SecurityGroups",
    "addresses": "Addresses",
    "launch_templates": "LaunchTemplates",
    "route_tables": "RouteTables",
    "internet_gateways": "InternetGateways",
    "vpc_endpoints": "VpcEndpoints",
}


# Where deploy writes its outputs, unless a test gives its own (the life cycles do: each is
# a deployment of its own, and two may run one after the other in one process).
STATE_DIR = Path(tempfile.mkdtemp(prefix="tlops-playbooks-"))


def run_playbook(
    name: str, endpoint: str, *args: str, state_dir: Path = STATE_DIR
) -> dict[str, Any]:
    """Run a playbook with the JSON callback; returns the parsed report plus rc and stderr."""
    env = {
        **os.environ,
        "TLOPS_STATE_DIR": str(state_dir),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        # ansible.cfg's profile_tasks would print between the JSON; the timer prints after it.
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.timer",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
    }
    command = [
        str(PLAYBOOK_BIN),
        f"playbooks/{name}",
        "-e", f"aws_endpoint_url={endpoint}",
        "-e", "gpu_node_wait_timeout=60",
        *args,
    ]  # fmt: skip
    done = subprocess.run(
        command, check=False, cwd=REPO, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    start = done.stdout.find("{")
    report = json.JSONDecoder().raw_decode(done.stdout, start)[0] if start >= 0 else {}
    report.update(rc=done.returncode, stdout=done.stdout, stderr=done.stderr)
    return report


def changed(report: dict[str, Any]) -> int:
    assert report["rc"] == 0, report["stdout"][-3000:] + report["stderr"][-2000:]
    return report["stats"]["localhost"]["changed"]


def changed_tasks(report: dict[str, Any]) -> list[str]:
    return [
        task["task"]["name"]
        for play in report["plays"]
        for task in play["tasks"]
        if task["hosts"].get("localhost", {}).get("changed")
    ]


IDLE_COST_KEYS = ("project", "rows", "total_eur_month", "recorded", "state", "bills_while_idle")


def idle_cost(report: dict[str, Any]) -> dict[str, Any]:
    """The idle cost report that teardown.yml and status.yml print (tl_idle_cost's result,
    the keys of tlops.cost.idle.report)."""
    for play in report["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get("localhost", {})
            if result.get("action", "").endswith("tl_idle_cost") and "rows" in result:
                return {key: result[key] for key in IDLE_COST_KEYS}
    raise AssertionError("no idle cost report in the run")


def assert_report_lists(report: dict[str, Any], account: Account) -> None:
    """The report names every tagged resource that bills or may (instances by id and state,
    EIPs, endpoints, buckets, VPCs), nothing else but the node's volumes, and the queue and
    images where the account has them."""
    items = [row["item"] for row in report["rows"]]

    def named(kind: str) -> list[str]:
        return sorted(item.split()[1] for item in items if item.split()[0] == kind)

    instances = account.instances({"Name": "tag:Project", "Values": ["tinyllama"]})
    for instance in instances:
        state = instance["State"]["Name"]
        assert f"instance {instance['InstanceId']} ({instance['InstanceType']}, {state})" in items
    assert named("instance") == sorted(i["InstanceId"] for i in instances)
    assert named("EIP") == sorted(a["PublicIp"] for a in account.tagged("addresses"))
    endpoints = sorted(item.split()[2] for item in items if item.split()[1:2] == ["endpoint"])
    assert endpoints == sorted(e["VpcEndpointId"] for e in account.tagged("vpc_endpoints"))
    buckets = [name for name, tags in account.bucket_tags().items() if tags.get("Project")]
    assert named("bucket") == sorted(buckets)
    assert named("VPC") == sorted(v["VpcId"] for v in account.tagged("vpcs"))
    known = {"instance", "root", "volume", "EIP", "interface", "gateway", "queue", "image",
             "snapshot", "bucket", "VPC"}  # fmt: skip
    assert {item.split()[0] for item in items} <= known, items


class Account:
    """boto3 clients on the stand-in, and the views the assertions need."""

    def __init__(self, endpoint: str):
        session = boto3.Session(
            aws_access_key_id="standin-key-id",
            aws_secret_access_key="standin-secret",
            region_name=REGION,
        )
        self.ec2 = session.client("ec2", endpoint_url=endpoint)
        self.s3 = session.client("s3", endpoint_url=endpoint)
        self.iam = session.client("iam", endpoint_url=endpoint)
        self.ssm = session.client("ssm", endpoint_url=endpoint)
        self.idp = session.client("cognito-idp", endpoint_url=endpoint)
        self.lam = session.client("lambda", endpoint_url=endpoint)
        self.apigw = session.client("apigatewayv2", endpoint_url=endpoint)
        self.logs = session.client("logs", endpoint_url=endpoint)
        self.sns = session.client("sns", endpoint_url=endpoint)
        self.events = session.client("events", endpoint_url=endpoint)
        self.budgets = session.client("budgets", endpoint_url=endpoint)

    def tagged(self, kind: str, **extra: Any) -> list[dict[str, Any]]:
        filters = [{"Name": "tag:Project", "Values": ["tinyllama"]}, *extra.pop("Filters", [])]
        method = getattr(self.ec2, f"describe_{kind}")
        key = KINDS[kind]
        found = method(Filters=filters, **extra)[key]
        # a deleted endpoint stays listed for a while, as on AWS
        return [item for item in found if str(item.get("State", "")).lower() != "deleted"]

    def instances(self, *tag_filters: dict[str, Any]) -> list[dict[str, Any]]:
        live = {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}
        pages = self.ec2.describe_instances(Filters=[live, *tag_filters])["Reservations"]
        return [instance for page in pages for instance in page["Instances"]]

    def bucket_tags(self) -> dict[str, dict[str, str]]:
        found = {}
        for bucket in self.s3.list_buckets()["Buckets"]:
            try:
                tag_set = self.s3.get_bucket_tagging(Bucket=bucket["Name"])["TagSet"]
            except self.s3.exceptions.ClientError:
                tag_set = []
            found[bucket["Name"]] = {tag["Key"]: tag["Value"] for tag in tag_set}
        return found

    def dump(self) -> dict[str, Any]:
        """Everything deploy.yml manages, for comparing before and after a plan."""
        volatile = ("LaunchTime", "UsageOperationUpdateTime", "AttachTime", "ResponseMetadata")

        def scrub(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: scrub(v) for k, v in value.items() if k not in volatile}
            if isinstance(value, list):
                return [scrub(v) for v in value]
            return value

        roles = [r for r in self.iam.list_roles()["Roles"] if r["RoleName"].startswith("tiny")]
        return scrub({
            "vpcs": self.ec2.describe_vpcs()["Vpcs"],
            "subnets": self.ec2.describe_subnets()["Subnets"],
            "security_groups": self.ec2.describe_security_groups()["SecurityGroups"],
            "route_tables": self.ec2.describe_route_tables()["RouteTables"],
            "instances": self.instances(),
            "addresses": self.ec2.describe_addresses()["Addresses"],
            "templates": self.ec2.describe_launch_template_versions(
                LaunchTemplateName="tinyllama-gpu"
            )["LaunchTemplateVersions"],
            "buckets": self.bucket_tags(),
            "roles": [(r, self.iam.list_role_policies(RoleName=r["RoleName"])["PolicyNames"])
                      for r in roles],
            "parameters": self.ssm.describe_parameters()["Parameters"],
        })  # fmt: skip


def seed_look_alikes(account: Account) -> dict[str, str]:
    """Untagged resources that resemble the project's: teardown must leave every one."""
    ec2 = account.ec2
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/22")["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": "tinyllama-vpc-old"}])
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName="tinyllama-node", Description="look-alike", VpcId=vpc
    )["GroupId"]
    instance = ec2.run_instances(
        ImageId=UBUNTU_AMI, InstanceType="t3.small", MinCount=1, MaxCount=1, SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "Role", "Value": "gpu"}, {"Key": "Project", "Value": "someone-else"}]}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    address = ec2.allocate_address(Domain="vpc")["AllocationId"]
    account.s3.create_bucket(
        Bucket="tinyllama-replies-lookalike",
        CreateBucketConfiguration={"LocationConstraint": REGION},
    )
    account.iam.create_role(RoleName="tinyllama-gpu-old", AssumeRolePolicyDocument="{}")
    # names are not unique for these two: same names, someone else's
    api = account.apigw.create_api(
        Name="tinyllama-api", ProtocolType="HTTP", Tags={"Project": "someone-else"}
    )["ApiId"]
    pool = account.idp.create_user_pool(PoolName="tinyllama-users")["UserPool"]["Id"]
    account.logs.create_log_group(logGroupName="/aws/lambda/tinyllama-router-old")
    return {"vpc": vpc, "subnet": subnet, "group": group, "instance": instance,
            "address": address, "api": api, "pool": pool}  # fmt: skip


def assert_deployed(account: Account, state_dir: Path) -> None:
    outputs = json.loads((state_dir / "outputs.json").read_text())
    # The public names end with the deployment's suffix, which the outputs keep; never with
    # the account id (anyone may probe a bucket's or a hosted-UI domain's name).
    suffix = outputs["name_suffix"]
    public_names = {
        "reply": f"tinyllama-replies-{suffix}",
        "control": f"tinyllama-control-{suffix}",
        "domain": f"https://tinyllama-{suffix}.auth.{REGION}.amazoncognito.com",
    }
    assert [outputs["reply_bucket"], outputs["control_bucket"], outputs["hosted_ui_url"]] == list(
        public_names.values()
    )
    assert not [n for n in public_names.values() if re.search(r"\d{12}", n)]  # an account id
    (vpc,) = account.tagged("vpcs")
    assert vpc["CidrBlock"] == "10.20.0.0/22"
    assert {"Key": "Role", "Value": "network"} in vpc["Tags"]
    subnets = {s["CidrBlock"] for s in account.tagged("subnets")}
    assert subnets == {"10.20.0.0/24", "10.20.1.0/24"}

    groups = {g["GroupName"]: g for g in account.tagged("security_groups")}
    assert set(groups) == {"tinyllama-router", "tinyllama-node", "tinyllama-redis"}
    redis_rules = groups["tinyllama-redis"]["IpPermissions"]
    assert {(r["FromPort"], r["ToPort"]) for r in redis_rules} == {(6379, 6379)}
    assert all(not r["IpRanges"] for r in redis_rules)
    sources = {p["GroupId"] for r in redis_rules for p in r["UserIdGroupPairs"]}
    assert sources == {groups["tinyllama-router"]["GroupId"], groups["tinyllama-node"]["GroupId"]}
    (node_rule,) = groups["tinyllama-node"]["IpPermissions"]
    assert (node_rule["FromPort"], node_rule["ToPort"]) == (443, 443)
    assert [r["CidrIp"] for r in node_rule["IpRanges"]] == ["127.0.0.1/32"]
    assert not groups["tinyllama-router"]["IpPermissions"]
    for group in groups.values():  # no SSH anywhere
        assert all(r.get("FromPort") != 22 for r in group["IpPermissions"])

    # No interface endpoint: the control function reaches EC2 and ElastiCache from outside
    # the VPC; the one endpoint is S3's gateway, free, for both subnets.
    endpoints = {e["ServiceName"]: e for e in account.tagged("vpc_endpoints")}
    assert set(endpoints) == {f"com.amazonaws.{REGION}.s3"}
    s3 = endpoints[f"com.amazonaws.{REGION}.s3"]
    assert s3["VpcEndpointType"] == "Gateway" and len(s3["RouteTableIds"]) == 2
    public = {s["CidrBlock"]: s["MapPublicIpOnLaunch"] for s in account.tagged("subnets")}
    assert public == {"10.20.0.0/24": True, "10.20.1.0/24": False}

    bucket = public_names["reply"]
    assert account.bucket_tags()[bucket] == {"Project": "tinyllama", "Role": "storage"}
    sse = account.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert sse["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = account.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    (rule,) = account.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["Expiration"]["Days"] == 7 and rule["Status"] == "Enabled"

    parameter = account.ssm.get_parameter(Name="/tl-fif/latest_ami_id")["Parameter"]
    assert parameter["Value"].startswith("ami-")
    # What the node reads at every boot: the queue's URL and the project, tagged, not secret.
    settings = account.ssm.get_parameter(Name=NODE_SETTINGS)["Parameter"]
    assert settings["Type"] == "String"
    assert json.loads(settings["Value"]) == {
        "project": "tinyllama",
        "redis_url": "redis://127.0.0.1:6390/0",  # the local queue agent's address
        "control_bucket": public_names["control"],
    }
    tags = account.ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=NODE_SETTINGS)
    assert {t["Key"]: t["Value"] for t in tags["TagList"]} == {
        "Project": "tinyllama",
        "Role": "gpu",
    }
    # The inference key: a SecureString made once, tagged like the settings.
    key = account.ssm.get_parameter(Name=NODE_KEY, WithDecryption=True)["Parameter"]
    assert key["Type"] == "SecureString" and len(key["Value"]) >= 32
    tags = account.ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=NODE_KEY)
    assert {t["Key"]: t["Value"] for t in tags["TagList"]} == {
        "Project": "tinyllama",
        "Role": "gpu",
    }
    (template,) = account.ec2.describe_launch_template_versions(LaunchTemplateName="tinyllama-gpu")[
        "LaunchTemplateVersions"
    ]
    data = template["LaunchTemplateData"]
    assert data["ImageId"] == parameter["Value"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    (root,) = data["BlockDeviceMappings"]
    assert root["Ebs"] == {
        "VolumeSize": 30, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True,
        "KmsKeyId": "alias/aws/ebs",  # the AWS managed key, never the account's default
    }  # fmt: skip
    (instance,) = account.instances({"Name": "tag:Project", "Values": ["tinyllama"]})
    assert instance["State"]["Name"] == "stopped"
    assert {"Key": "Role", "Value": "gpu"} in instance["Tags"]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["VpcId"] == vpc["VpcId"]  # ec2_instance once put it in the default VPC
    assert instance["SubnetId"] == next(
        s["SubnetId"] for s in account.tagged("subnets") if s["CidrBlock"] == "10.20.0.0/24"
    )
    assert not account.tagged("addresses")  # no EIP: a public address on every start

    policy = account.iam.get_role_policy(RoleName="tinyllama-gpu", PolicyName="node-self")
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert statements["StopOnlyItself"]["Action"] == ["ec2:StopInstances"]
    assert statements["StopOnlyItself"]["Resource"] == [
        f"arn:aws:ec2:{REGION}:123456789012:instance/{instance['InstanceId']}"
    ]
    assert statements["WriteRepliesOnce"]["Action"] == ["s3:PutObject"]
    assert statements["WriteRepliesOnce"]["Condition"] == {"Null": {"s3:if-none-match": "false"}}
    assert statements["ReadBackReplies"]["Action"] == ["s3:GetObject"]
    role_tags = account.iam.list_role_tags(RoleName="tinyllama-gpu")["Tags"]
    assert {"Key": "Role", "Value": "gpu"} in role_tags and PROJECT in role_tags

    # the edge: user pool, functions, HTTP API, logs, and what deploy wrote for the CLI
    pool = account.idp.describe_user_pool(UserPoolId=outputs["user_pool_id"])["UserPool"]
    assert pool["Name"] == "tinyllama-users"
    assert pool["UserPoolTags"]["Project"] == "tinyllama"
    callbacks = account.idp.describe_user_pool_client(
        UserPoolId=pool["Id"], ClientId=outputs["client_id"]
    )["UserPoolClient"]["CallbackURLs"]
    assert "http://127.0.0.1:53682/callback" in callbacks
    private = next(
        s["SubnetId"] for s in account.tagged("subnets") if s["CidrBlock"] == "10.20.1.0/24"
    )
    for name, key in (("tinyllama-router", "router"), ("tinyllama-queue-health", "queue_health")):
        config = account.lam.get_function_configuration(FunctionName=name, Qualifier="prod")
        assert config["Runtime"] == "python3.12" and config["MemorySize"] == 512
        assert config["TracingConfig"]["Mode"] == "Active"
        assert config["VpcConfig"]["SubnetIds"] == [private]
        tags = account.lam.list_tags(Resource=config["FunctionArn"].rsplit(":", 1)[0])["Tags"]
        assert (tags["Project"], tags["Function"]) == ("tinyllama", key)
        policy = account.iam.get_role_policy(RoleName=name, PolicyName="least-privilege")
        actions = {a for s in policy["PolicyDocument"]["Statement"] for a in s["Action"]}
        # nothing in the VPC calls EC2 or ElastiCache (that needs an interface endpoint); the
        # network-interface actions are Lambda's own, made for the function's VPC access
        # (AWSLambdaVPCAccessExecutionRole), not calls of its code
        called = {a for a in actions if a.startswith(("ec2:", "elasticache:"))}
        assert called <= LAMBDA_VPC_ACCESS, called - LAMBDA_VPC_ACCESS
    router_env = account.lam.get_function_configuration(
        FunctionName="tinyllama-router", Qualifier="prod"
    )["Environment"]["Variables"]
    assert router_env["TL_JWT_AUDIENCE"] == outputs["client_id"]
    assert router_env["TL_REPLY_BUCKET"] == bucket
    assert json.loads(router_env["TL_JWKS"])[
        "keys"
    ]  # the pool's keys, for a router with no way out
    assert "TL_JWKS_URL" not in router_env
    assert router_env["TL_CONTROL_BUCKET"] == outputs["control_bucket"]
    # control: outside the VPC, the only one that starts the node, invoked by the bucket
    control_config = account.lam.get_function_configuration(
        FunctionName="tinyllama-control", Qualifier="prod"
    )
    assert not (control_config.get("VpcConfig") or {}).get("SubnetIds")
    start = next(
        s
        for s in account.iam.get_role_policy(
            RoleName="tinyllama-control", PolicyName="least-privilege"
        )["PolicyDocument"]["Statement"]
        if s["Sid"] == "StartOnlyTheNodeInItsShapes"
    )
    assert start["Condition"]["StringEquals"] == {
        "aws:ResourceTag/Project": "tinyllama", "aws:ResourceTag/Role": "gpu",
        "ec2:InstanceType": ["t3.small", "g4dn.xlarge"],
    }  # fmt: skip
    # the node deploy.yml launched, by id: in control's policy and in its configuration
    node_id = instance["InstanceId"]
    assert start["Resource"] == [f"arn:aws:ec2:{REGION}:123456789012:instance/{node_id}"]
    assert control_config["Environment"]["Variables"]["TL_NODE_INSTANCE_ID"] == node_id
    notified = account.s3.get_bucket_notification_configuration(Bucket=outputs["control_bucket"])
    [to_control] = notified["LambdaFunctionConfigurations"]
    assert to_control["LambdaFunctionArn"] == ALIAS + "tinyllama-control:prod"
    assert to_control["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "requests/"}]
    (api,) = [
        a for a in account.apigw.get_apis()["Items"]
        if a["Name"] == "tinyllama-api" and a["Tags"].get("Project") == "tinyllama"
    ]  # fmt: skip
    routes = {r["RouteKey"]: r for r in account.apigw.get_routes(ApiId=api["ApiId"])["Items"]}
    # every route of openapi.yaml (the generated table), each behind the authorizer it names
    assert set(routes) == {route.key for route in ROUTES}
    for route in ROUTES:
        assert routes[route.key]["AuthorizationType"] == ("JWT" if route.authorized else "NONE")
    assert {"POST /infer", "GET /status", "POST /resize", "GET /ping"} <= set(routes)
    assert "capacitor://localhost" in api["CorsConfiguration"]["AllowOrigins"]
    stage = account.apigw.get_stage(ApiId=api["ApiId"], StageName="$default")
    anonymous = {key for key, route in routes.items() if route["AuthorizationType"] == "NONE"}
    assert set(stage["RouteSettings"]) == anonymous  # throttled tighter than the stage
    assert all(s["ThrottlingRateLimit"] == 2 for s in stage["RouteSettings"].values())
    assert (
        json.loads(stage["AccessLogSettings"]["Format"])["jwtSub"]
        == "$context.authorizer.claims.sub"
    )
    groups = account.logs.describe_log_groups(logGroupNamePrefix="/")["logGroups"]
    retention = {g["logGroupName"]: g.get("retentionInDays") for g in groups}
    assert retention["/aws/lambda/tinyllama-router"] == 30
    assert retention["/tinyllama/http-api-access"] == 30
    assert_guard_rails(account)


# AWS's managed policy AWSLambdaVPCAccessExecutionRole (AWS Managed Policy Reference)
LAMBDA_VPC_ACCESS = {"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                     "ec2:DescribeSubnets", "ec2:DeleteNetworkInterface",
                     "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}  # fmt: skip
ACCOUNT_ID = "123456789012"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:"
ALIAS = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:"


def assert_guard_rails(account: Account) -> None:
    """The budget, its topics, the two functions outside the VPC, their roles and schedule."""
    budget = account.budgets.describe_budget(AccountId=ACCOUNT_ID, BudgetName="tinyllama-monthly")
    assert budget["Budget"]["BudgetLimit"] == {"Amount": "20", "Unit": "USD"}
    assert budget["Budget"]["TimeUnit"] == "MONTHLY"
    notes = account.budgets.describe_notifications_for_budget(
        AccountId=ACCOUNT_ID, BudgetName="tinyllama-monthly"
    )["Notifications"]
    assert {(n["NotificationType"], n["Threshold"], n["ThresholdType"]) for n in notes} == {
        ("FORECASTED", 75.0, "PERCENTAGE"), ("ACTUAL", 105.0, "PERCENTAGE")
    }  # fmt: skip
    subscriptions = account.sns.list_subscriptions()["Subscriptions"]
    by_topic: dict[str, set[tuple[str, str]]] = {}
    for sub in subscriptions:
        by_topic.setdefault(sub["TopicArn"], set()).add((sub["Protocol"], sub["Endpoint"]))
    mail = ("email", "ops@example.com")
    assert by_topic[TOPIC + "tinyllama-budget-warn"] == {mail}
    assert by_topic[TOPIC + "tinyllama-budget-kill"] == {
        ("lambda", ALIAS + "tinyllama-budget-killer:prod"), mail
    }  # fmt: skip
    assert by_topic[TOPIC + "tinyllama-cost-daily"] == {mail}
    for topic in ("budget-warn", "budget-kill", "cost-daily"):
        tags = account.sns.list_tags_for_resource(ResourceArn=f"{TOPIC}tinyllama-{topic}")["Tags"]
        assert {"Key": "Project", "Value": "tinyllama"} in tags
    policy = json.loads(account.sns.get_topic_attributes(TopicArn=TOPIC + "tinyllama-budget-kill")[
        "Attributes"]["Policy"])  # fmt: skip
    assert {"Service": "budgets.amazonaws.com"} in [s["Principal"] for s in policy["Statement"]]
    for name, memory in (("tinyllama-budget-killer", 128), ("tinyllama-cost-summary", 256)):
        config = account.lam.get_function_configuration(FunctionName=name, Qualifier="prod")
        assert config["MemorySize"] == memory and config["Runtime"] == "python3.12"
        assert not (config.get("VpcConfig") or {}).get("SubnetIds")  # outside any VPC
        invokers = json.loads(account.lam.get_policy(FunctionName=name, Qualifier="prod")["Policy"])
        principals = {s["Principal"]["Service"] for s in invokers["Statement"]}
        assert principals == {"sns.amazonaws.com" if "killer" in name else "events.amazonaws.com"}
    killer_env = account.lam.get_function_configuration(
        FunctionName="tinyllama-budget-killer", Qualifier="prod"
    )["Environment"]["Variables"]
    assert (killer_env["TL_BUDGET_NAME"], killer_env["TL_KILL_PERCENT"]) == (
        "tinyllama-monthly", "105"
    )  # fmt: skip
    statements = {
        s["Sid"]: s
        for s in account.iam.get_role_policy(
            RoleName="tinyllama-budget-killer", PolicyName="least-privilege"
        )["PolicyDocument"]["Statement"]
    }
    assert statements["StopOnlyTheTaggedNode"]["Condition"]["StringEquals"] == {
        "aws:ResourceTag/Project": "tinyllama", "aws:ResourceTag/Role": "gpu"
    }  # fmt: skip
    (rule,) = account.events.list_rules(NamePrefix="tinyllama-cost-mail")["Rules"]
    assert rule["ScheduleExpression"] == "cron(0 5 * * ? *)"
    (target,) = account.events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"] == ALIAS + "tinyllama-cost-summary:prod"


def tlops(endpoint: str, *argv: str, state_dir: Path = STATE_DIR) -> subprocess.CompletedProcess:
    """The `tlops` command against the stand-in, as an operator runs it."""
    env = {**os.environ, "TL_AWS_ENDPOINT_URL": endpoint, "TL_AWS_REGION": REGION,
           "AWS_ACCESS_KEY_ID": "standin-key-id", "AWS_SECRET_ACCESS_KEY": "standin-secret",
           "TLOPS_STATE_DIR": str(state_dir)}  # fmt: skip
    return subprocess.run(
        [str(Path(sys.executable).with_name("tlops")), *argv], env=env, capture_output=True,
        text=True, check=False, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def assert_look_alikes_intact(account: Account, seeded: dict[str, str]) -> None:
    ec2 = account.ec2
    assert ec2.describe_vpcs(VpcIds=[seeded["vpc"]])["Vpcs"]
    assert ec2.describe_subnets(SubnetIds=[seeded["subnet"]])["Subnets"]
    assert ec2.describe_security_groups(GroupIds=[seeded["group"]])["SecurityGroups"]
    (reservation,) = ec2.describe_instances(InstanceIds=[seeded["instance"]])["Reservations"]
    assert reservation["Instances"][0]["State"]["Name"] == "running"
    assert ec2.describe_addresses(AllocationIds=[seeded["address"]])["Addresses"]
    assert "tinyllama-replies-lookalike" in account.bucket_tags()
    assert account.iam.get_role(RoleName="tinyllama-gpu-old")
    assert [a["ApiId"] for a in account.apigw.get_apis()["Items"]] == [seeded["api"]]
    assert [p["Id"] for p in account.idp.list_user_pools(MaxResults=60)["UserPools"]] == [
        seeded["pool"]
    ]
    groups = account.logs.describe_log_groups()["logGroups"]
    assert [g["logGroupName"] for g in groups] == ["/aws/lambda/tinyllama-router-old"]

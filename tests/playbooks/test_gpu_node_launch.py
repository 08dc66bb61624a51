"""The gpu_node role's launch against a real moto server: the root volume's key, the retries
while IAM propagates a new instance profile, and a rebake reaching a stopped node.

The role runs as deploy.yml runs it (its main entry point), in a play of its own on a stand-in
seeded with what the roles before it make: the public subnet, the node's group, the AMI
parameter. What the stand-in cannot do, refuse a profile IAM made moments ago, a small proxy in
front of it does: it answers RunInstances with EC2's error until told otherwise.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.playbooks.role_play import Run, include, play
from tests.playbooks.stand_in import Account
from tlops.local.services import MotoProcess

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=1.5)]

PARAMETER = "/tl-fif/latest_ami_id"
NOT_READY = (
    "Value (tinyllama-gpu) for parameter iamInstanceProfile.name is invalid. "
    "Invalid IAM Instance Profile name"
)
NODE_VARS = {
    "gpu_node_redis_url": "redis://10.20.1.10:6379/0",
    "gpu_node_wait_timeout": 60,
    "gpu_node_launch_retry_delay_s": 0,
}


class RefusingEc2:
    """A proxy to the stand-in that answers the next `refusals` RunInstances as EC2 does
    while a new instance profile has not reached it (or with `error` instead)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.refusals = 0
        self.error = ("InvalidParameterValue", NOT_READY)
        self.launches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if b"Action=RunInstances" in body:
                    owner.launches += 1
                    if owner.refusals > 0:
                        owner.refusals -= 1
                        code, message = owner.error
                        self.reply(400, (
                            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}"
                            "</Message></Error></Errors><RequestID>r-1</RequestID></Response>"
                        ).encode())  # fmt: skip
                        return
                self.forward("POST", body)

            def do_GET(self) -> None:
                self.forward("GET", None)

            def forward(self, method: str, body: bytes | None) -> None:
                request = urllib.request.Request(
                    owner.upstream + self.path, data=body, method=method,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                )  # fmt: skip
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        self.reply(answer.status, answer.read(), answer.headers.get_content_type())
                except urllib.error.HTTPError as refused:
                    self.reply(refused.code, refused.read(), refused.headers.get_content_type())

            def reply(self, status: int, body: bytes, kind: str = "text/xml") -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def account(moto_server: str) -> Account:
    """A reset stand-in with the network the node needs and the AMI parameter set."""
    MotoProcess.reset_url(moto_server)
    account = Account(moto_server)
    ec2 = account.ec2
    project = {"Key": "Project", "Value": "tinyllama"}
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/22")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.0.0/24")["Subnet"]["SubnetId"]
    public = {"Key": "Name", "Value": "tinyllama-public"}
    ec2.create_tags(Resources=[subnet], Tags=[project, public])
    group = ec2.create_security_group(
        GroupName="tinyllama-node", Description="node", VpcId=vpc
    )["GroupId"]  # fmt: skip
    ec2.create_tags(Resources=[group], Tags=[project])
    publish(account, images(account)[0])
    return account


@pytest.fixture
def refusing(moto_server: str) -> Iterator[RefusingEc2]:
    proxy = RefusingEc2(moto_server)
    yield proxy
    proxy.stop()


def images(account: Account) -> list[str]:
    found = account.ec2.describe_images(Owners=["099720109477"])["Images"]
    return sorted(image["ImageId"] for image in found)


def publish(account: Account, image: str) -> None:
    """What a bake does last: the AMI parameter names the new image."""
    account.ssm.put_parameter(Name=PARAMETER, Value=image, Type="String", Overwrite=True)


def deploy_node(tmp_path: Path, endpoint: str, **variables: Any) -> Run:
    return play(tmp_path, [include("gpu_node", "main")], endpoint=endpoint,
                variables={**NODE_VARS, **variables})  # fmt: skip


def nodes(account: Account) -> list[dict[str, Any]]:
    return account.instances({"Name": "tag:Project", "Values": ["tinyllama"]})


def launch_attempts(run: Run) -> int:
    (launch,) = run.results("Create the node (the router starts it on demand)")
    return launch.get("attempts", 1)


def test_the_root_volume_is_encrypted_with_the_aws_managed_key(
    account: Account, moto_server: str, tmp_path: Path
) -> None:
    run = deploy_node(tmp_path, moto_server)
    assert run.rc == 0, run.failure() or run.stdout[-3000:]
    (template,) = account.ec2.describe_launch_template_versions(
        LaunchTemplateName="tinyllama-gpu"
    )["LaunchTemplateVersions"]  # fmt: skip
    (root,) = template["LaunchTemplateData"]["BlockDeviceMappings"]
    assert root["Ebs"]["Encrypted"] is True
    assert root["Ebs"]["KmsKeyId"] == "alias/aws/ebs"  # not the account's default key


def test_the_launch_is_tried_again_while_iam_propagates_the_new_profile(
    account: Account, refusing: RefusingEc2, tmp_path: Path
) -> None:
    refusing.refusals = 2
    run = deploy_node(tmp_path, refusing.url)
    assert run.rc == 0, run.failure() or run.stdout[-3000:]
    assert refusing.launches == 3 and launch_attempts(run) == 3
    (node,) = nodes(account)
    assert node["State"]["Name"] == "stopped"


def test_a_profile_that_never_arrives_fails_saying_so(
    account: Account, refusing: RefusingEc2, tmp_path: Path
) -> None:
    refusing.refusals = 100
    run = deploy_node(tmp_path, refusing.url, gpu_node_launch_retries=2)
    assert run.rc != 0
    assert refusing.launches == 3  # the first try and two more, no further
    failure = run.failure()
    assert "EC2 still refused the new instance profile tinyllama-gpu after 3 tries" in failure
    assert "aws iam get-instance-profile --instance-profile-name tinyllama-gpu" in failure
    assert "Invalid IAM Instance Profile name" in failure  # what EC2 said, too
    assert not nodes(account)


def test_any_other_launch_error_fails_at_once(
    account: Account, refusing: RefusingEc2, tmp_path: Path
) -> None:
    refusing.refusals = 100
    # what EC2 answers for an instance type its subnet's zone does not offer
    refusing.error = ("Unsupported", "The requested configuration is currently not supported.")
    run = deploy_node(tmp_path, refusing.url)
    assert run.rc != 0
    assert refusing.launches == 1
    assert "Launching the node failed: " in run.failure()
    assert "currently not supported" in run.failure()


def test_a_rebake_is_named_then_reaches_a_stopped_node_when_asked(
    account: Account, moto_server: str, tmp_path: Path
) -> None:
    first, second = images(account)[:2]
    assert deploy_node(tmp_path, moto_server).rc == 0
    (old,) = nodes(account)
    assert old["ImageId"] == first
    publish(account, second)  # a bake since

    # Without the switch: said, with both images and the way to replace it; nothing changes.
    told = deploy_node(tmp_path, moto_server)
    assert told.rc == 0, told.failure()
    (said,) = told.results("Say the node runs an older image, and how to replace it")
    text = " ".join(said["msg"])
    assert f"runs {first}, but {PARAMETER} names {second}" in text
    assert "-e gpu_node_replace_stale=yes while it is stopped" in text
    assert [n["InstanceId"] for n in nodes(account)] == [old["InstanceId"]]

    # A running node is never replaced, even when asked.
    account.ec2.start_instances(InstanceIds=[old["InstanceId"]])
    running = deploy_node(tmp_path, moto_server, gpu_node_replace_stale=True)
    assert running.rc == 0, running.failure()
    (said,) = running.results("Say the node runs an older image, and how to replace it")
    assert "Not replaced: the node is running" in " ".join(said["msg"])
    assert [n["InstanceId"] for n in nodes(account)] == [old["InstanceId"]]

    # Stopped and asked: terminated, and a node launched from the new image, stopped, tagged,
    # in the same subnet, its policy scoped to the new instance.
    account.ec2.stop_instances(InstanceIds=[old["InstanceId"]])
    replaced = deploy_node(tmp_path, moto_server, gpu_node_replace_stale=True)
    assert replaced.rc == 0, replaced.failure()
    (new,) = nodes(account)
    assert new["InstanceId"] != old["InstanceId"] and new["ImageId"] == second
    assert new["State"]["Name"] == "stopped" and new["SubnetId"] == old["SubnetId"]
    tags = {t["Key"]: t["Value"] for t in new["Tags"] if not t["Key"].startswith("aws:")}
    assert tags == {"Project": "tinyllama", "Role": "gpu", "Name": "tinyllama-gpu"}
    (gone,) = account.ec2.describe_instances(InstanceIds=[old["InstanceId"]])["Reservations"]
    assert gone["Instances"][0]["State"]["Name"] == "terminated"
    policy = account.iam.get_role_policy(RoleName="tinyllama-gpu", PolicyName="node-self")
    resources = {r for s in policy["PolicyDocument"]["Statement"] for r in s.get("Resource", [])}
    assert any(r.endswith(f"instance/{new['InstanceId']}") for r in resources)

    # Up to date now: a second run changes nothing.
    again = deploy_node(tmp_path, moto_server, gpu_node_replace_stale=True)
    assert again.rc == 0 and again.changed() == [], again.changed()

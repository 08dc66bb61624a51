"""The idle bill (tlops.cost.idle) against the stand-in's EC2, ElastiCache and S3.

Each expected figure is worked out here from the prices playbooks/vars/prices.yml documents
(30 GiB x 0.081 EUR, one cache.t4g.micro at 11.8 EUR, ...), not taken from the code under
test; `test_the_table_holds_the_figures_these_tests_use` says so when the table changes.
Where the stand-in cannot answer as AWS does (FullSnapshotSizeInBytes, SnapshotId on volume
records, a `creating` queue), a botocore after-call hook edits its answer.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from tlops.common import aws
from tlops.cost import idle

pytestmark = pytest.mark.integration

PROJECT = "tinyllama"
# playbooks/vars/prices.yml, EUR: the figures its `what` lines document.
GP3_GIB_MONTH = 0.081  # $0.088 per GiB-month
SNAPSHOT_GB_MONTH = 0.046  # $0.05 per GB-month
IPV4_MONTH = 3.36  # $0.005 per hour x 730 h
T4G_MICRO_MONTH = 11.8  # about $0.0175 per hour x 730 h
INTERFACE_AZ_MONTH = 7.39  # $0.011 per AZ-hour x 730 h
G4DN_XLARGE_HOUR, HOURS = 0.54, 730


def tags(**pairs: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def ubuntu_image() -> str:
    amis = json.loads(resources.files("tlops.local").joinpath("ubuntu_amis.json").read_text())
    return next(a["ami_id"] for a in amis if a["architecture"] == "x86_64")


def node(*, running: bool = False, kind: str = "g4dn.xlarge", **pairs: str) -> str:
    """An instance tagged as the gpu_node role tags the node (stopped, unless `running`), and
    the role's launch template once (a 30 GiB gp3 root: the fallback's size)."""
    ec2 = aws.client("ec2")
    ours = [{"Name": "tag:Project", "Values": [PROJECT]}]
    if not ec2.describe_launch_templates(Filters=ours)["LaunchTemplates"]:
        root = {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 30, "VolumeType": "gp3"}}
        ec2.create_launch_template(
            LaunchTemplateName="tinyllama-gpu",
            LaunchTemplateData={"BlockDeviceMappings": [root]},
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags(Project=PROJECT)}],
        )
    labels = tags(**(pairs or {"Project": PROJECT, "Role": "gpu"}))
    instance = ec2.run_instances(
        ImageId=ubuntu_image(), InstanceType=kind, MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": labels}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    if not running:
        ec2.stop_instances(InstanceIds=[instance])
    return instance


def queue(group_id: str = "tinyllama-queue", node_type: str = "cache.t4g.micro", **extra) -> str:
    """A one-member replication group (the stand-in makes one member, whatever is asked)."""
    extra.setdefault("Tags", tags(Project=PROJECT, Role="queue"))
    aws.client("elasticache").create_replication_group(
        ReplicationGroupId=group_id, ReplicationGroupDescription="the queue", Engine="redis",
        CacheNodeType=node_type, NumCacheClusters=1, **extra,
    )  # fmt: skip
    return group_id


def report() -> dict[str, Any]:
    return idle.report(aws.client, PROJECT)


def by_item(found: dict[str, Any]) -> dict[str, tuple[float, str]]:
    return {row["item"]: (row["eur_month"], row["note"]) for row in found["rows"]}


@pytest.fixture
def hooks(aws_stand_in):
    """`hooks(service, operation, edit)`: `edit(parsed)` runs on each answer of `operation` to
    the factory's (cached) client, as AWS would answer where the stand-in cannot; removed
    after the test."""
    registered = []

    def add(service: str, operation: str, edit) -> None:
        def hook(parsed: dict[str, Any], **_: Any) -> None:
            edit(parsed)

        event = f"after-call.{service}.{operation}"
        aws.client(service).meta.events.register(event, hook)
        registered.append((service, event, hook))

    yield add
    for service, event, hook in registered:
        aws.client(service).meta.events.unregister(event, hook)


def test_the_table_holds_the_figures_these_tests_use():
    table = idle.prices()
    p = table["resources"]
    assert (p["ebs_gp3_gib_month"]["eur"], p["ebs_snapshot_gb_month"]["eur"]) == (
        GP3_GIB_MONTH, SNAPSHOT_GB_MONTH)  # fmt: skip
    assert round(0.05 * table["usd_to_eur"], 3) == SNAPSHOT_GB_MONTH
    assert p["ebs_snapshot_gb_month"]["source"] == "https://aws.amazon.com/ebs/pricing/"
    assert p["public_ipv4_month"]["eur"] == IPV4_MONTH
    assert p["elasticache_t4g_micro_month"]["eur"] == T4G_MICRO_MONTH
    assert p["vpc_interface_endpoint_month"]["eur"] == INTERFACE_AZ_MONTH
    assert (table["instance_hour_eur"]["g4dn.xlarge"], table["hours_per_month"]) == (
        G4DN_XLARGE_HOUR, HOURS)  # fmt: skip


def test_nothing_deployed_prints_the_empty_report(aws_stand_in):
    found = report()
    assert (found["rows"], found["total_eur_month"], found["state"]) == ([], 0.0, "not deployed")
    recorded = idle.prices()["recorded"]
    assert idle.lines(found) == [
        f"Idle cost report for Project=tinyllama (EUR/month; prices recorded {recorded}, "
        "vars/prices.yml)",
        "state: not deployed (no node is deployed; whatever the rows list still bills)",
        "      0.00  nothing tagged remains",
        "      0.00  total",
    ]


def test_napping_bills_the_queue_from_its_group_and_the_disk(aws_stand_in):
    instance = node()
    queue()
    queue("theirs-queue", Tags=tags(Project="someone-else"))  # same shape, not ours
    found = report()
    assert found["state"] == "napping"
    rows = by_item(found)
    assert rows[f"instance {instance} (g4dn.xlarge, stopped)"][0] == 0.0
    disk, note = rows[f"root volume of {instance} (30 GiB gp3)"]
    assert disk == round(30 * GP3_GIB_MONTH, 2) == 2.43
    assert "launch template" in note and "incomplete volume records" in note
    assert rows["queue tinyllama-queue (cache.t4g.micro x 1, available)"][0] == T4G_MICRO_MONTH
    assert not [item for item in rows if "theirs" in item]
    assert found["total_eur_month"] == round(2.43 + T4G_MICRO_MONTH, 2)
    lines = idle.lines(found)
    assert lines[1] == (
        "state: napping (the queue bills by the hour, besides the node's disk and the image "
        "snapshots; the instance is stopped)"
    )
    assert lines[-1] == "     14.23  total"
    assert "     11.80  queue tinyllama-queue (cache.t4g.micro x 1, available)  (https://" in (
        "\n".join(lines))  # fmt: skip


def test_a_group_being_deleted_is_not_listed_and_the_stack_is_asleep(aws_stand_in):
    instance = node()
    aws.client("elasticache").delete_replication_group(ReplicationGroupId=queue())
    found = report()
    assert found["state"] == "asleep"
    assert not [row for row in found["rows"] if row["item"].startswith("queue")]
    assert [row["item"] for row in found["rows"]] == [
        f"instance {instance} (g4dn.xlarge, stopped)",
        f"root volume of {instance} (30 GiB gp3)",
    ]
    assert idle.lines(found)[1] == (
        "state: asleep (only the node's disk and the image snapshots bill)"
    )


def test_a_group_is_priced_per_member_and_an_unknown_type_says_so(hooks):
    node()
    queue()
    queue("tinyllama-queue-old", node_type="cache.t3.micro")

    def with_a_replica(parsed: dict[str, Any]) -> None:  # the stand-in makes one member only
        for group in parsed.get("ReplicationGroups", []):
            if group["ReplicationGroupId"] == "tinyllama-queue":
                group["MemberClusters"] = ["tinyllama-queue-001", "tinyllama-queue-002"]

    hooks("elasticache", "DescribeReplicationGroups", with_a_replica)
    rows = by_item(report())
    assert rows["queue tinyllama-queue (cache.t4g.micro x 2, available)"][0] == 2 * T4G_MICRO_MONTH
    assert rows["queue tinyllama-queue-old (cache.t3.micro x 1, available)"] == (
        0.0, "no price for cache.t3.micro in vars/prices.yml")  # fmt: skip


def test_the_newest_group_is_the_current_one(hooks):
    node()
    queue("tinyllama-queue-a")
    queue("tinyllama-queue-b")

    def second_is_creating(parsed: dict[str, Any]) -> None:
        for group in parsed.get("ReplicationGroups", []):
            if group["ReplicationGroupId"].endswith("-b"):
                group["Status"] = "creating"

    hooks("elasticache", "DescribeReplicationGroups", second_is_creating)
    found = report()
    assert found["state"] == "waking"
    assert found["bills_while_idle"].startswith("the queue bills from its creation on")


def test_a_running_node_costs_a_month_of_its_hours(aws_stand_in):
    instance = node(running=True)
    stray = node(running=True, kind="t3.medium", Project=PROJECT, Role="bake")
    found = report()
    assert found["state"] == "awake"
    rows = by_item(found)
    assert rows[f"instance {instance} (g4dn.xlarge, running)"] == (
        round(G4DN_XLARGE_HOUR * HOURS, 2), "costs this much a month if left running")  # fmt: skip
    assert rows[f"instance {stray} (t3.medium, running)"] == (
        0.0, "no price for t3.medium in vars/prices.yml")  # fmt: skip


def test_addresses_endpoints_buckets_and_vpcs(aws_stand_in):
    ec2, s3 = aws.client("ec2"), aws.client("s3")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/22", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": tags(Project=PROJECT)}])["Vpc"]["VpcId"]  # fmt: skip
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for cidr, zone in (("10.20.0.0/24", "eu-west-1a"), ("10.20.1.0/24", "eu-west-1b"))
    ]
    ours = [{"ResourceType": "vpc-endpoint", "Tags": tags(Project=PROJECT)}]
    interface = ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName="com.amazonaws.eu-west-1.ec2", VpcEndpointType="Interface",
        SubnetIds=subnets, TagSpecifications=ours,
    )["VpcEndpoint"]["VpcEndpointId"]  # fmt: skip
    gateway = ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName="com.amazonaws.eu-west-1.s3", VpcEndpointType="Gateway",
        TagSpecifications=ours,
    )["VpcEndpoint"]["VpcEndpointId"]  # fmt: skip
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.create_tags(Resources=[allocation], Tags=tags(Project=PROJECT))
    ec2.allocate_address(Domain="vpc")  # untagged: someone else's
    ip = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0]["PublicIp"]
    for name, pairs in (("tinyllama-replies", {"Project": PROJECT}), ("plain", {})):
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        if pairs:
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags(**pairs)})
    found = report()
    assert [row["item"] for row in found["rows"]] == [
        f"EIP {ip}",
        f"interface endpoint {interface} (com.amazonaws.eu-west-1.ec2, 2 AZ)",
        f"gateway endpoint {gateway} (com.amazonaws.eu-west-1.s3)",
        "bucket tinyllama-replies",
        f"VPC {vpc} with its subnets and groups",
    ]
    assert [row["eur_month"] for row in found["rows"]] == [
        IPV4_MONTH, round(2 * INTERFACE_AZ_MONTH, 2), 0.0, 0.0, 0.0]  # fmt: skip
    assert found["total_eur_month"] == round(IPV4_MONTH + 2 * INTERFACE_AZ_MONTH, 2)
    assert "per GB" in found["rows"][3]["note"]


def test_an_image_is_listed_with_its_snapshot_at_the_volume_size_as_an_upper_bound(aws_stand_in):
    ec2 = aws.client("ec2")
    instance = node()
    ours = [{"ResourceType": "image", "Tags": tags(Project=PROJECT, Role="gpu")}]
    image = ec2.create_image(
        InstanceId=instance, Name="tinyllama-gpu-20261207", TagSpecifications=ours
    )["ImageId"]
    ec2.create_image(InstanceId=instance, Name="not-ours")  # untagged
    (mapping,) = ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"]
    snapshot, gib = mapping["Ebs"]["SnapshotId"], mapping["Ebs"]["VolumeSize"]
    found = report()
    images = [row for row in found["rows"] if row["item"].startswith(("image", "snapshot"))]
    assert [row["item"] for row in images] == [
        f"image {image} (tinyllama-gpu-20261207, available)",
        f"snapshot {snapshot} of {image} ({gib} GiB)",
    ]
    assert images[0]["eur_month"] == 0.0
    assert images[1]["eur_month"] == round(gib * SNAPSHOT_GB_MONTH, 2)
    assert images[1]["note"].startswith("upper bound (volume size)")
    assert found["state"] == "asleep"


def test_a_snapshot_is_sized_by_what_was_written_when_aws_says(hooks):
    ec2 = aws.client("ec2")
    image = ec2.create_image(InstanceId=node(), Name="tinyllama-gpu-1", TagSpecifications=[
        {"ResourceType": "image", "Tags": tags(Project=PROJECT)}])["ImageId"]  # fmt: skip
    volume = ec2.create_volume(AvailabilityZone="eu-west-1a", Size=8)["VolumeId"]
    orphan = ec2.create_snapshot(VolumeId=volume, TagSpecifications=[
        {"ResourceType": "snapshot", "Tags": tags(Project=PROJECT)}])["SnapshotId"]  # fmt: skip

    def full_sizes(parsed: dict[str, Any]) -> None:  # 6 GiB written; the orphan's unknown
        for snap in parsed.get("Snapshots", []):
            if snap["SnapshotId"] != orphan:
                snap["FullSnapshotSizeInBytes"] = 6 * 2**30

    hooks("ec2", "DescribeSnapshots", full_sizes)
    rows = [r for r in report()["rows"] if r["item"].startswith(("image", "snapshot"))]
    (mapping,) = ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"]
    snapshot = mapping["Ebs"]["SnapshotId"]
    assert [row["item"] for row in rows] == [
        f"image {image} (tinyllama-gpu-1, available)",
        f"snapshot {snapshot} of {image} (6.00 GiB)",
        f"snapshot {orphan} of no listed image (8 GiB)",
    ]
    assert rows[1]["eur_month"] == round(6 * SNAPSHOT_GB_MONTH, 2) == 0.28
    assert rows[1]["note"].startswith("full snapshot size")
    assert rows[2]["eur_month"] == round(8 * SNAPSHOT_GB_MONTH, 2)
    assert rows[2]["note"].startswith("upper bound (volume size)")


def test_complete_volume_records_are_priced_one_by_one(hooks):
    instance = node()

    def as_aws_answers(parsed: dict[str, Any]) -> None:  # a blank volume: SnapshotId ""
        for volume in parsed.get("Volumes", []):
            volume.setdefault("SnapshotId", "")

    hooks("ec2", "DescribeVolumes", as_aws_answers)
    (volume,) = aws.client("ec2").describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance]}]
    )["Volumes"]
    rows = by_item(report())
    item = f"volume {volume['VolumeId']} ({volume['Size']} GiB {volume['VolumeType']})"
    price = round(volume["Size"] * GP3_GIB_MONTH, 2)
    assert rows[item] == (price, "https://aws.amazon.com/ebs/pricing/")

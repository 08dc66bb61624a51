"""What the deployment costs a month while idle, priced with teardown's own table
(playbooks/vars/prices.yml), read with boto3: the same rows as the idle cost report of
teardown.yml and status.yml (playbooks/templates/idle_cost.json.j2), for `tlops cost`.

The slow tier holds the two totals equal over a real deployment of the stand-in
(tests/playbooks/test_deploy_teardown.py), so neither can drift from the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PRICES = Path(__file__).resolve().parents[3] / "playbooks" / "vars" / "prices.yml"
LIVE = ["pending", "running", "stopping", "stopped"]


def prices(path: Path = PRICES) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text())["prices"]


def _tagged(project: str) -> list[dict[str, Any]]:
    return [{"Name": "tag:Project", "Values": [project]}]


def _instances(ec2: Any, project: str) -> list[dict[str, Any]]:
    state = {"Name": "instance-state-name", "Values": LIVE}
    found = ec2.describe_instances(Filters=[*_tagged(project), state])["Reservations"]
    return [i for r in found for i in r["Instances"]]


def _volumes(ec2: Any, project: str, instance_ids: list[str]) -> list[dict[str, Any]]:
    volumes = {v["VolumeId"]: v for v in ec2.describe_volumes(Filters=_tagged(project))["Volumes"]}
    if instance_ids:
        attached = [{"Name": "attachment.instance-id", "Values": instance_ids}]
        volumes |= {v["VolumeId"]: v for v in ec2.describe_volumes(Filters=attached)["Volumes"]}
    return list(volumes.values())


def _template_root_size(ec2: Any, project: str) -> int:
    templates = ec2.describe_launch_templates(Filters=_tagged(project))["LaunchTemplates"]
    if not templates:
        return 0
    versions = ec2.describe_launch_template_versions(
        LaunchTemplateId=templates[0]["LaunchTemplateId"]
    )["LaunchTemplateVersions"]
    latest = max(versions, key=lambda v: v["VersionNumber"])
    mappings = latest["LaunchTemplateData"].get("BlockDeviceMappings") or [{}]
    return int(mappings[0].get("Ebs", {}).get("VolumeSize", 0))


def _caches(elasticache: Any, project: str) -> list[dict[str, Any]]:
    ours = []
    for cluster in elasticache.describe_cache_clusters().get("CacheClusters", []):
        tags = elasticache.list_tags_for_resource(ResourceName=cluster["ARN"]).get("TagList", [])
        if {"Key": "Project", "Value": project} in tags:
            ours.append(cluster)
    return ours


Row = dict[str, Any]


def _row(item: str, eur: float, note: str) -> Row:
    return {"item": item, "eur_month": round(eur, 2), "note": note}


def _instance_rows(instances: list[dict[str, Any]], table: dict[str, Any]) -> list[Row]:
    rows = []
    for i in instances:
        kind, state = i["InstanceType"], i["State"]["Name"]
        if state in ("pending", "running"):
            hourly = table["instance_hour_eur"].get(kind)
            note = "costs this much a month if left running"
            if hourly is None:
                note = f"no price for {kind} in vars/prices.yml"
            monthly = (hourly or 0) * table["hours_per_month"]
            rows.append(_row(f"instance {i['InstanceId']} ({kind}, running)", monthly, note))
        else:
            note = "no charge while stopped; its volume is listed below"
            rows.append(_row(f"instance {i['InstanceId']} ({kind}, {state})", 0.0, note))
    return rows


def _volume_rows(ec2: Any, project: str, instances: list[dict[str, Any]], p: dict) -> list[Row]:
    gib = p["ebs_gp3_gib_month"]
    volumes = _volumes(ec2, project, [i["InstanceId"] for i in instances])
    if any("SnapshotId" not in v for v in volumes):  # the records the playbooks cannot read
        size = _template_root_size(ec2, project)
        note = "size from the launch template: this endpoint returned incomplete volume records"
        return [
            _row(f"root volume of {i['InstanceId']} ({size} GiB gp3)", size * gib["eur"], note)
            for i in instances
        ]
    return [
        _row(
            f"volume {v['VolumeId']} ({v['Size']} GiB {v['VolumeType']})",
            v["Size"] * gib["eur"],
            gib["source"],
        )
        for v in volumes
    ]


def _network_rows(ec2: Any, project: str, p: dict) -> list[Row]:
    ip, endpoint = p["public_ipv4_month"], p["vpc_interface_endpoint_month"]
    rows = [
        _row(f"EIP {a['PublicIp']}", ip["eur"], ip["source"])
        for a in ec2.describe_addresses(Filters=_tagged(project))["Addresses"]
    ]
    state = {"Name": "vpc-endpoint-state", "Values": ["pending", "available"]}
    for e in ec2.describe_vpc_endpoints(Filters=[*_tagged(project), state])["VpcEndpoints"]:
        name = f"{e['VpcEndpointId']} ({e['ServiceName']})"
        if e["VpcEndpointType"].lower() == "interface":
            azs = len(e.get("SubnetIds") or [1])
            rows.append(
                _row(f"interface endpoint {name}", endpoint["eur"] * azs, endpoint["source"])
            )
        else:
            rows.append(_row(f"gateway endpoint {name}", 0.0, "gateway endpoints are free"))
    return rows


def _storage_rows(client: Any, project: str, p: dict) -> list[Row]:
    rows = []
    for c in _caches(client("elasticache"), project):
        kind = c["CacheNodeType"]
        price = p.get(f"elasticache_{kind.removeprefix('cache.').replace('.', '_')}_month")
        note = price["source"] if price else f"no price for {kind} in vars/prices.yml"
        rows.append(
            _row(f"cache node {c['CacheClusterId']} ({kind})", price["eur"] if price else 0.0, note)
        )
    s3 = client("s3")
    for bucket in s3.list_buckets().get("Buckets", []):
        try:
            tags = s3.get_bucket_tagging(Bucket=bucket["Name"])["TagSet"]
        except s3.exceptions.ClientError:
            continue
        if {"Key": "Project", "Value": project} in tags:
            note = f"storage billed per GB ({p['s3_standard_gb_month']['eur']} EUR/GB-month)"
            rows.append(_row(f"bucket {bucket['Name']}", 0.0, note))
    return rows


def report(client: Any, project: str, table: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"rows": [{"item", "eur_month", "note"}], "total_eur_month", "recorded"}, in the
    order of the playbooks' report; `client(service)` makes a boto3 client."""
    table = prices() if table is None else table
    p = table["resources"]
    ec2 = client("ec2")
    instances = _instances(ec2, project)
    rows = _instance_rows(instances, table) + _volume_rows(ec2, project, instances, p)
    rows += _network_rows(ec2, project, p) + _storage_rows(client, project, p)
    rows += [
        _row(f"VPC {vpc['VpcId']} with its subnets and groups", 0.0, p["free_when_idle"]["source"])
        for vpc in ec2.describe_vpcs(Filters=_tagged(project))["Vpcs"]
    ]
    total = round(sum(r["eur_month"] for r in rows), 2)
    return {"rows": rows, "total_eur_month": total, "recorded": table["recorded"]}

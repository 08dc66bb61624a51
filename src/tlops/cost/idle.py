"""The idle bill: what each resource of the deployment costs a month if it stays as it is.

The one computation behind `tlops cost` and the `tl_idle_cost` module (status.yml and
teardown.yml print its `lines()`). It reads AWS with boto3, through `client(service)`, finds
what carries the tag Project=<project>, and prices it with playbooks/vars/prices.yml.
Rows, in this order:

    instances   running or pending: a month of it, as if left running; stopped: 0
    volumes     the node's (tagged, or attached to a tagged instance), per GiB-month; where
                the endpoint's volume records are incomplete (the stand-in's root volumes),
                the launch template's root size, and the row says so
    EIPs        per address
    endpoints   interface: per AZ-month (one subnet per AZ); gateway: free
    queue       each tagged ElastiCache replication group not being deleted: its node
                type's price times its member clusters
    images      the project's own AMIs (0 themselves), each followed by its EBS snapshots
                per GB-month, then tagged snapshots that belong to none of them
    buckets     0: S3 bills per GB stored, which the report does not measure
    VPCs        free, with their subnets, route tables and groups

Beside the rows: the stack's state (tlops.contract.states), read off the node's EC2 state and
the current queue group's status, and a sentence saying what bills in that state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tlops import checkout
from tlops.contract import names
from tlops.contract.states import (
    BILLS,
    NODE_LIVE_STATES,
    NODE_UP_STATES,
    NOT_DEPLOYED,
    stack_state,
)
from tlops.control.node import NODE_ROLE

PRICES = checkout.ROOT / "playbooks" / "vars" / "prices.yml"
GIB = 2**30
Row = dict[str, Any]


def prices(path: Path = PRICES) -> dict[str, Any]:
    """The price table (the `prices` mapping of playbooks/vars/prices.yml)."""
    import yaml

    return yaml.safe_load(path.read_text())["prices"]


def _row(item: str, eur: float, note: str) -> Row:
    return {"item": item, "eur_month": round(eur, 2), "note": note}


def _listed(client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item under `key` of a describe/list call, through its paginator where it has one."""
    if client.can_paginate(operation):
        pages = client.get_paginator(operation).paginate(**kwargs)
        return [item for page in pages for item in page.get(key) or []]
    return getattr(client, operation)(**kwargs).get(key) or []


def _tagged(project: str) -> list[dict[str, Any]]:
    return names.tag_filters(project)


def _carries(tags: list[dict[str, str]] | None, key: str, value: str) -> bool:
    return {"Key": key, "Value": value} in (tags or [])


def _unpriced(kind: str) -> str:
    return f"no price for {kind} in vars/prices.yml"


# --- the node ------------------------------------------------------------------------------
def _instances(ec2: Any, project: str) -> list[dict[str, Any]]:
    live = {"Name": "instance-state-name", "Values": list(NODE_LIVE_STATES)}
    reservations = _listed(
        ec2, "describe_instances", "Reservations", Filters=[*_tagged(project), live]
    )
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def _node_state(instances: list[dict[str, Any]]) -> str | None:
    """The GPU node's EC2 state; of several tagged nodes the first by id, as the router picks."""
    nodes = [i for i in instances if _carries(i.get("Tags"), "Role", NODE_ROLE)]
    return min(nodes, key=lambda i: i["InstanceId"])["State"]["Name"] if nodes else None


def _instance_rows(instances: list[dict[str, Any]], table: dict[str, Any]) -> list[Row]:
    rows = []
    for instance in instances:
        kind, state = instance["InstanceType"], instance["State"]["Name"]
        name = f"instance {instance['InstanceId']} ({kind}, {state})"
        if state in NODE_UP_STATES:
            hourly = table["instance_hour_eur"].get(kind)
            note = (
                "costs this much a month if left running" if hourly is not None else _unpriced(kind)
            )
            rows.append(_row(name, (hourly or 0) * table["hours_per_month"], note))
        else:
            rows.append(_row(name, 0.0, "no charge while stopped; its volume is listed below"))
    return rows


def _template_root_size(ec2: Any, project: str) -> int:
    templates = _listed(
        ec2, "describe_launch_templates", "LaunchTemplates", Filters=_tagged(project)
    )
    if not templates:
        return 0
    versions = _listed(
        ec2,
        "describe_launch_template_versions",
        "LaunchTemplateVersions",
        LaunchTemplateId=templates[0]["LaunchTemplateId"],
    )
    latest = max(versions, key=lambda v: v["VersionNumber"])
    mappings = latest["LaunchTemplateData"].get("BlockDeviceMappings") or [{}]
    return int(mappings[0].get("Ebs", {}).get("VolumeSize", 0))


def _volume_rows(ec2: Any, project: str, instances: list[dict[str, Any]], p: dict) -> list[Row]:
    gib = p["ebs_gp3_gib_month"]
    ids = [i["InstanceId"] for i in instances]
    found = _listed(ec2, "describe_volumes", "Volumes", Filters=_tagged(project))
    if ids:
        attached = [{"Name": "attachment.instance-id", "Values": ids}]
        found += _listed(ec2, "describe_volumes", "Volumes", Filters=attached)
    volumes = list({v["VolumeId"]: v for v in found}.values())
    # AWS always answers SnapshotId (empty for a blank volume); the stand-in's root volumes
    # lack it, and with it the fields a size can be trusted from.
    if any("SnapshotId" not in v for v in volumes):
        size = _template_root_size(ec2, project)
        note = "size from the launch template: this endpoint returned incomplete volume records"
        return [_row(f"root volume of {i} ({size} GiB gp3)", size * gib["eur"], note) for i in ids]
    return [
        _row(
            f"volume {v['VolumeId']} ({v['Size']} GiB {v['VolumeType']})",
            v["Size"] * gib["eur"],
            gib["source"],
        )
        for v in volumes
    ]


# --- the network ---------------------------------------------------------------------------
def _address_rows(ec2: Any, project: str, p: dict) -> list[Row]:
    ip = p["public_ipv4_month"]
    return [
        _row(f"EIP {a['PublicIp']}", ip["eur"], ip["source"])
        for a in _listed(ec2, "describe_addresses", "Addresses", Filters=_tagged(project))
    ]


def _endpoint_rows(ec2: Any, project: str, p: dict) -> list[Row]:
    price = p["vpc_interface_endpoint_month"]
    live = {"Name": "vpc-endpoint-state", "Values": ["pending", "available"]}
    rows = []
    for e in _listed(
        ec2, "describe_vpc_endpoints", "VpcEndpoints", Filters=[*_tagged(project), live]
    ):
        name = f"{e['VpcEndpointId']} ({e['ServiceName']}"
        if e["VpcEndpointType"].lower() == "interface":
            zones = len(e.get("SubnetIds") or []) or 1  # one subnet per AZ; none listed: one
            eur = price["eur"] * zones
            rows.append(_row(f"interface endpoint {name}, {zones} AZ)", eur, price["source"]))
        else:
            rows.append(_row(f"gateway endpoint {name})", 0.0, "gateway endpoints are free"))
    return rows


def _vpc_rows(ec2: Any, project: str, p: dict) -> list[Row]:
    free = p["free_when_idle"]["source"]
    return [
        _row(f"VPC {vpc['VpcId']} with its subnets and groups", 0.0, free)
        for vpc in _listed(ec2, "describe_vpcs", "Vpcs", Filters=_tagged(project))
    ]


# --- the queue -----------------------------------------------------------------------------
def _queue_groups(elasticache: Any, project: str) -> list[dict[str, Any]]:
    """The replication groups tagged Project=<project>, but not those being deleted.

    A group in `deleting` serves nothing and is gone within minutes on AWS (the stand-in
    keeps it `deleting` for good), so it is left out: after teardown idle or a sleep the
    report shows no queue row, rather than pricing a month of a queue on its way out, and
    the state is read as if it were gone. Its last minutes of billing are not worth a row.
    """
    ours = []
    for group in _listed(elasticache, "describe_replication_groups", "ReplicationGroups"):
        if group.get("Status") == "deleting":
            continue
        tags = elasticache.list_tags_for_resource(ResourceName=group["ARN"]).get("TagList")
        if _carries(tags, "Project", project):
            ours.append(group)
    return ours


def _queue_status(groups: list[dict[str, Any]]) -> str | None:
    """The status of the current group: the newest (another one is a leftover, and a row)."""
    if not groups:
        return None

    def created(group: dict[str, Any]) -> float:
        when = group.get("ReplicationGroupCreateTime")
        return when.timestamp() if when else 0.0

    return max(groups, key=lambda g: (created(g), g["ReplicationGroupId"]))["Status"]


def _queue_rows(groups: list[dict[str, Any]], p: dict) -> list[Row]:
    """Priced from the group itself: every member cluster is a node of the group's type
    (the stand-in cannot describe the members, but lists them)."""
    rows = []
    for group in groups:
        kind, members = group["CacheNodeType"], len(group.get("MemberClusters") or [])
        price = p.get(f"elasticache_{kind.removeprefix('cache.').replace('.', '_')}_month")
        name = f"queue {group['ReplicationGroupId']} ({kind} x {members}, {group['Status']})"
        eur = price["eur"] * members if price else 0.0
        rows.append(_row(name, eur, price["source"] if price else _unpriced(kind)))
    return rows


# --- images and their snapshots ------------------------------------------------------------
def _snapshot_row(item: str, snapshot: dict[str, Any] | None, volume_gib: int, p: dict) -> Row:
    """Sized by what DescribeSnapshots says was written, else by the volume it was taken of."""
    price = p["ebs_snapshot_gb_month"]
    full = (snapshot or {}).get("FullSnapshotSizeInBytes")
    if full is not None:
        gib = full / GIB
        note = f"full snapshot size, the blocks written; {price['source']}"
        return _row(f"{item} ({gib:.2f} GiB)", gib * price["eur"], note)
    note = "upper bound (volume size): DescribeSnapshots gave no FullSnapshotSizeInBytes"
    return _row(f"{item} ({volume_gib} GiB)", volume_gib * price["eur"], note)


def _image_rows(ec2: Any, project: str, p: dict) -> list[Row]:
    images = _listed(ec2, "describe_images", "Images", Owners=["self"], Filters=_tagged(project))
    images.sort(key=lambda image: (image.get("CreationDate", ""), image["ImageId"]))
    mapped = {
        m["Ebs"]["SnapshotId"]: (image["ImageId"], int(m["Ebs"].get("VolumeSize") or 0))
        for image in images
        for m in image.get("BlockDeviceMappings") or []
        if m.get("Ebs", {}).get("SnapshotId")
    }
    snapshots = {}
    if mapped:
        by_id = [{"Name": "snapshot-id", "Values": sorted(mapped)}]
        found = _listed(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=by_id)
        snapshots = {s["SnapshotId"]: s for s in found}
    rows = []
    kept = "bills through its snapshots; teardown_level=all with teardown_images=yes removes it"
    for image in images:
        name = f"image {image['ImageId']} ({image.get('Name', '')}, {image.get('State', '')})"
        rows.append(_row(name, 0.0, kept))
        for snapshot_id, (owner, gib) in mapped.items():
            if owner == image["ImageId"]:
                item = f"snapshot {snapshot_id} of {owner}"
                rows.append(_snapshot_row(item, snapshots.get(snapshot_id), gib, p))
    tagged = _listed(
        ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=_tagged(project)
    )
    for snapshot in sorted(tagged, key=lambda s: s["SnapshotId"]):
        if snapshot["SnapshotId"] not in mapped:
            item = f"snapshot {snapshot['SnapshotId']} of no listed image"
            rows.append(_snapshot_row(item, snapshot, int(snapshot.get("VolumeSize") or 0), p))
    return rows


# --- buckets -------------------------------------------------------------------------------
def _bucket_rows(s3: Any, project: str, p: dict) -> list[Row]:
    rows = []
    for bucket in _listed(s3, "list_buckets", "Buckets"):
        try:
            tags = s3.get_bucket_tagging(Bucket=bucket["Name"])["TagSet"]
        except s3.exceptions.ClientError:  # NoSuchTagSet: untagged, not ours
            continue
        if _carries(tags, "Project", project):
            note = f"storage billed per GB ({p['s3_standard_gb_month']['eur']} EUR/GB-month)"
            rows.append(_row(f"bucket {bucket['Name']}", 0.0, note))
    return rows


# --- the report ----------------------------------------------------------------------------
def report(client: Any, project: str, table: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"project", "rows": [{"item", "eur_month", "note"}], "total_eur_month", "recorded",
    "state", "bills_while_idle"}; `client(service)` makes a boto3 client, `table` is the
    price table (default: playbooks/vars/prices.yml's)."""
    table = prices() if table is None else table
    p = table["resources"]
    ec2 = client("ec2")
    instances = _instances(ec2, project)
    groups = _queue_groups(client("elasticache"), project)
    rows = [
        *_instance_rows(instances, table),
        *_volume_rows(ec2, project, instances, p),
        *_address_rows(ec2, project, p),
        *_endpoint_rows(ec2, project, p),
        *_queue_rows(groups, p),
        *_image_rows(ec2, project, p),
        *_bucket_rows(client("s3"), project, p),
        *_vpc_rows(ec2, project, p),
    ]
    state = stack_state(_node_state(instances), _queue_status(groups))
    name = state.value if state else NOT_DEPLOYED
    return {
        "project": project,
        "rows": rows,
        "total_eur_month": round(sum(row["eur_month"] for row in rows), 2),
        "recorded": table["recorded"],
        "state": name,
        "bills_while_idle": BILLS[name],
    }


def lines(idle: dict[str, Any]) -> list[str]:
    """The report as printed: the header, the state, one line a row, the total."""
    out = [
        f"Idle cost report for Project={idle['project']} (EUR/month; prices recorded "
        f"{idle['recorded']}, vars/prices.yml)",
        f"state: {idle['state']} ({idle['bills_while_idle']})",
    ]
    rows = [f"  {row['eur_month']:8.2f}  {row['item']}  ({row['note']})" for row in idle["rows"]]
    out += rows or ["      0.00  nothing tagged remains"]
    out.append(f"  {idle['total_eur_month']:8.2f}  total")
    return out

# Part of tl_elasticache (plugins/modules/tl_elasticache.py). Apache-2.0.
"""What ElastiCache holds of the queue, and the views of it (snake_case, what the diff shows)."""

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    boto3_tag_list_to_ansible_dict,
)
from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import is_boto3_error_code, pages


def find_group(client, group_id):
    try:
        found = client.describe_replication_groups(ReplicationGroupId=group_id, aws_retry=True)
    except is_boto3_error_code("ReplicationGroupNotFoundFault"):
        return None
    groups = found.get("ReplicationGroups") or [None]
    return groups[0]


def find_member(client, group):
    """The group's (first) member cache cluster, which carries engine version, security
    groups, subnet group and parameter group; None when the endpoint has none."""
    members = group.get("MemberClusters") or []
    if not members:
        return None
    found = gaps.optional(
        client.describe_cache_clusters,
        "elasticache-no-member-clusters",
        CacheClusterId=members[0],
        aws_retry=True,
    )
    if found is gaps.LACKING:
        return None
    clusters = found.get("CacheClusters") or [None]
    return clusters[0]


def resource_tags(client, arn):
    if not arn:
        return {}
    listed = client.list_tags_for_resource(ResourceName=arn, aws_retry=True)
    return boto3_tag_list_to_ansible_dict(listed.get("TagList", []))


def find_subnet_group(client, name):
    try:
        found = client.describe_cache_subnet_groups(CacheSubnetGroupName=name, aws_retry=True)
    except is_boto3_error_code("CacheSubnetGroupNotFoundFault"):
        return None
    return (found.get("CacheSubnetGroups") or [None])[0]


def find_parameter_group(client, name):
    """The parameter group, None when missing, gaps.LACKING when the endpoint has no such API."""
    try:
        found = gaps.optional(
            client.describe_cache_parameter_groups,
            "elasticache-no-parameter-groups",
            CacheParameterGroupName=name,
            aws_retry=True,
        )
    except is_boto3_error_code("CacheParameterGroupNotFound"):
        return None
    if found is gaps.LACKING:
        return found
    return (found.get("CacheParameterGroups") or [None])[0]


def parameter_values(client, name):
    """All of a parameter group's parameters, name → value (None when unset)."""
    listed = pages(
        client.describe_cache_parameters,
        "Parameters",
        marker="Marker",
        CacheParameterGroupName=name,
    )
    return {parameter["ParameterName"]: parameter.get("ParameterValue") for parameter in listed}


# --- views ---------------------------------------------------------------------------------
def parameter_text(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def primary_endpoint(group):
    for node_group in (group or {}).get("NodeGroups") or []:
        endpoint = node_group.get("PrimaryEndpoint")
        if endpoint and endpoint.get("Address"):
            return {"address": endpoint["Address"], "port": endpoint.get("Port")}
    return None


def group_settings(group, member, tags):
    """The replication group's managed settings, snake_case; what the member cluster carries
    is left out when the endpoint reports no member cluster."""
    endpoint = primary_endpoint(group)
    settings = {
        "replication_group_id": group["ReplicationGroupId"],
        "description": group.get("Description"),
        "node_type": group.get("CacheNodeType"),
        "port": endpoint["port"] if endpoint else None,
        "at_rest_encryption": bool(group.get("AtRestEncryptionEnabled")),
        "transit_encryption": bool(group.get("TransitEncryptionEnabled")),
        "snapshot_retention_limit": group.get("SnapshotRetentionLimit"),
        "tags": tags,
    }
    if member is not None:
        settings["engine_version"] = member.get("EngineVersion")
        settings["security_group_ids"] = sorted(
            sg["SecurityGroupId"] for sg in member.get("SecurityGroups") or []
        )
        settings["subnet_group_name"] = member.get("CacheSubnetGroupName")
        settings["parameter_group_name"] = (member.get("CacheParameterGroup") or {}).get(
            "CacheParameterGroupName"
        )
    return settings


def outcome_view(group_id, group, params, parameter_group_name):
    """The module's return values (without `changed` and `diff`)."""
    group = group or {}
    endpoint = primary_endpoint(group)
    transit = bool(group.get("TransitEncryptionEnabled", params.get("transit_encryption")))
    url = None
    if endpoint:
        url = f"{'rediss' if transit else 'redis'}://{endpoint['address']}:{endpoint['port']}/0"
    return {
        "replication_group_id": group_id,
        "arn": group.get("ARN"),
        "status": group.get("Status"),
        "primary_endpoint": endpoint,
        "redis_url": url,
        "subnet_group": (params.get("subnet_group") or {}).get("name"),
        "parameter_group": parameter_group_name,
        "at_rest_encryption": bool(
            group.get("AtRestEncryptionEnabled", params["at_rest_encryption"])
        ),
        "transit_encryption": transit,
    }


def subnet_group_view(found):
    if not found:
        return None
    return {
        "name": found["CacheSubnetGroupName"],
        "description": found.get("CacheSubnetGroupDescription"),
        "subnet_ids": sorted(s["SubnetIdentifier"] for s in found.get("Subnets") or []),
    }


def parameter_group_view(spec, family, values):
    return {"name": spec["name"], "family": family, "parameters": values}

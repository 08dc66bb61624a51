#!/usr/bin/python
# Copyright: tinyllama-ops contributors. Apache-2.0.
# The job queue of the stack: a single-node ElastiCache (Redis OSS) replication group.

DOCUMENTATION = r"""
---
module: tl_elasticache
short_description: The queue's ElastiCache Redis, as a single-node replication group
description:
  - Manages one ElastiCache for Redis OSS replication group with a single node
    (C(NumCacheClusters=1), automatic failover off), together with the cache subnet group
    and cache parameter group it uses.
  - Why this module exists - C(community.aws.elasticache) manages single cache clusters only
    (C(CreateCacheCluster)), while ElastiCache encryption at rest exists only for replication
    groups; its wait loop is also open-ended. Here every wait is bounded by O(wait_timeout).
  - Settings that cannot change after creation (O(at_rest_encryption), O(transit_encryption),
    O(port), the subnet group) make the module fail with a clear message when an existing
    group differs, rather than silently keeping or replacing it.
  - Other differences (node type, engine version, security groups, parameter group, snapshot
    retention, description) are applied with C(ModifyReplicationGroup) and C(ApplyImmediately).
author: tinyllama-ops
options:
  replication_group_id:
    description:
      - The replication group's id - 1 to 40 letters, digits or hyphens, starting with a letter,
        with no two consecutive hyphens and no trailing hyphen.
      - AWS stores ids in lower case; the module lower-cases it too.
    type: str
    required: true
  description:
    description:
      - The replication group's description.
      - When omitted, a new group gets C(Managed by tl_elasticache) and an existing group's
        description is left as it is.
    type: str
  state:
    description:
      - V(present) creates or updates the group, its subnet group and its parameter group.
      - V(absent) deletes the group if it carries every tag in O(tags); once it is gone (only
        known with O(wait=true), or when it was already gone) its subnet group and parameter
        group are deleted too, each only if it carries those tags.
    type: str
    choices: [present, absent]
    default: present
  engine_version:
    description:
      - Redis OSS engine version. V(7.1) matches a group that runs V(7.1.0).
      - AWS upgrades but never downgrades an engine.
    type: str
    default: "7.1"
  node_type:
    description: The cache node type.
    type: str
    default: cache.t4g.micro
  port:
    description: The port Redis listens on. Cannot be changed after creation.
    type: int
    default: 6379
  at_rest_encryption:
    description:
      - Encrypt the data at rest (replication groups only).
      - Cannot be changed after creation; the module fails if an existing group differs.
    type: bool
    default: true
  transit_encryption:
    description:
      - TLS between clients and Redis; the returned RV(redis_url) then uses C(rediss://).
      - Cannot be changed after creation by this module; it fails if an existing group differs.
    type: bool
    default: false
  subnet_group:
    description:
      - The cache subnet group the replication group lives in; created, or updated when its
        description or subnets differ. Required with O(state=present).
      - With O(state=absent) only O(subnet_group.name) is used.
      - Tags (O(tags)) are set on it when it is created, and are required on it for deletion.
    type: dict
    suboptions:
      name:
        description: The subnet group's name.
        type: str
        required: true
      description:
        description: Its description.
        type: str
        default: Managed by tl_elasticache
      subnet_ids:
        description: The VPC subnets (at least one) it spans.
        type: list
        elements: str
  parameter_group:
    description:
      - A cache parameter group for the replication group; created, and its parameters set
        where they differ. Omit it to use the engine's default parameter group.
      - With O(state=absent) only O(parameter_group.name) is used.
    type: dict
    suboptions:
      name:
        description: The parameter group's name.
        type: str
        required: true
      family:
        description: Its family. Cannot be changed after creation.
        type: str
        default: redis7
      description:
        description: Its description, at creation.
        type: str
        default: Managed by tl_elasticache
      parameters:
        description:
          - Parameter names and values, for example C(maxmemory-policy=noeviction).
          - Only the parameters named are managed; others keep their values.
          - Values are compared as text; V(true)/V(false) become C(yes)/C(no).
        type: dict
        default: {}
  security_group_ids:
    description:
      - VPC security groups of the replication group.
      - Omitted or empty leaves them as they are (a new group gets the VPC's default group).
    type: list
    elements: str
  snapshot_retention_limit:
    description: Days of automatic snapshots to keep (0 turns them off; at most 35).
    type: int
    default: 0
  wait:
    description:
      - Wait until the group is C(available) after creating or modifying it, or gone after
        deleting it. Every wait is bounded by O(wait_timeout).
      - With O(state=absent) and O(wait=false) the subnet group and parameter group are left
        (AWS refuses to delete a subnet group still in use) and a warning says so.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait at most. A group that is still C(deleting) (or not yet C(available))
        afterwards makes the module fail with a message saying so.
    type: int
    default: 900
  tags:
    description:
      - Tags of the replication group (and of the subnet and parameter groups it creates).
      - With O(state=absent) a group (or subnet or parameter group) is deleted only if it carries
        every tag given here; O(tags) is then required.
    type: dict
    aliases: [resource_tags]
  purge_tags:
    description: Remove the replication group's tags that are not in O(tags).
    type: bool
    default: true
notes:
  - Check mode reports what would change and writes nothing; diff mode shows the managed
    settings (snake_case) before and after.
  - "Tested against the local stand-in moto 5.2.5 (server mode), probing each call. What it
    lacks: C(CreateCacheParameterGroup), C(DescribeCacheParameterGroups),
    C(DescribeCacheParameters), C(ModifyCacheParameterGroup), C(DeleteCacheParameterGroup),
    C(ModifyCacheSubnetGroup), C(DeleteCacheSubnetGroup) (and C(DescribeCacheEngineVersions),
    not used) all answer HTTP 500 with an HTML page (botocore raises C(ResponseParserError),
    not a C(ClientError) with C(NotImplementedError)). The module recognises both forms, warns
    naming the call and what it skipped, and carries on - on the stand-in the replication
    group is created without the parameter group."
  - "Also on moto 5.2.5 - a replication group's member clusters do not exist
    (C(DescribeCacheClusters) answers C(CacheClusterNotFound)), so an existing group's engine
    version, security groups, subnet group and parameter group cannot be read; the module warns
    and neither compares nor changes them there. C(ModifyReplicationGroup) does apply node type,
    snapshot retention and description. Groups are C(available) at once; deletes stay
    C(deleting) forever (a bounded wait for deletion therefore fails - use O(wait=false) on the
    stand-in) and the same id cannot be created again until the stand-in is reset. Endpoints
    are hard-coded to us-east-1 host names. Tags on groups and subnet groups work."
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: The job queue
  tl_elasticache:
    replication_group_id: tinyllama-queue
    description: tinyllama job queue
    node_type: cache.t4g.micro
    subnet_group:
      name: tinyllama-queue
      subnet_ids: "{{ private_subnet_ids }}"
    parameter_group:
      name: tinyllama-queue
      parameters:
        maxmemory-policy: noeviction
    security_group_ids: ["{{ queue_sg_id }}"]
    tags:
      Project: tinyllama
      Role: queue
  register: queue

- name: Tear it down, with its subnet and parameter groups
  tl_elasticache:
    replication_group_id: tinyllama-queue
    state: absent
    subnet_group: {name: tinyllama-queue}
    parameter_group: {name: tinyllama-queue}
    wait_timeout: 1200
    tags:
      Project: tinyllama
"""

RETURN = r"""
replication_group_id:
  description: The replication group's id.
  returned: always
  type: str
  sample: tinyllama-queue
arn:
  description: The replication group's ARN (null in check mode before creation).
  returned: always
  type: str
  sample: arn:aws:elasticache:eu-west-1:123456789012:replicationgroup:tinyllama-queue
status:
  description: The group's status (null when it does not exist).
  returned: always
  type: str
  sample: available
primary_endpoint:
  description: Where the primary node answers (null until AWS assigns it).
  returned: always
  type: dict
  contains:
    address:
      description: Host name.
      type: str
      sample: master.tinyllama-queue.abc123.euw1.cache.amazonaws.com
    port:
      description: Port.
      type: int
      sample: 6379
redis_url:
  description: C(redis://host:port/0), or C(rediss://...) with transit encryption (null without
    an endpoint).
  returned: always
  type: str
  sample: redis://master.tinyllama-queue.abc123.euw1.cache.amazonaws.com:6379/0
subnet_group:
  description: The subnet group's name.
  returned: always
  type: str
  sample: tinyllama-queue
parameter_group:
  description: The managed parameter group's name; null when none is managed or the endpoint
    lacks parameter groups.
  returned: always
  type: str
  sample: tinyllama-queue
at_rest_encryption:
  description: Whether data at rest is encrypted.
  returned: always
  type: bool
transit_encryption:
  description: Whether client connections use TLS.
  returned: always
  type: bool
diff:
  description: The managed settings before and after (diff mode).
  returned: when diff mode is on
  type: dict
"""

import re
import time

from ansible.module_utils.tl_aws import (
    AnsibleAWSModule,
    ClientError,
    Failure,
    ResponseParserError,
    carries,
    is_boto3_error_code,
    result,
    retrying_client,
    run,
    tag_changes,
    unsupported,
    wait_until,
)
from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    ansible_dict_to_boto3_tag_list,
    boto3_tag_list_to_ansible_dict,
)

# The bounded polls read the clock and sleep through these (tests replace them).
_SLEEP = time.sleep
_CLOCK = time.monotonic

_ID = re.compile(r"^[a-z](?:[a-z0-9]|-(?!-)){0,39}$")
_DEFAULT_DESCRIPTION = "Managed by tl_elasticache"
_STAND_IN = "as on the local stand-in moto 5.2.5, which lacks it"
LACKING = object()  # what optional_call returns when the endpoint does not implement the call


# --- the endpoint ---------------------------------------------------------------------------
def optional_call(method, **kwargs):
    """`method(**kwargs)` with retries, or LACKING where the endpoint does not implement it."""
    try:
        return method(aws_retry=True, **kwargs)
    except (ClientError, ResponseParserError) as exc:
        if unsupported(exc):
            return LACKING
        raise


def _tag_kwargs(tags):
    return {"Tags": ansible_dict_to_boto3_tag_list(tags)} if tags else {}


def _delay(timeout):
    return max(1.0, min(15.0, timeout / 10))


# --- reading ------------------------------------------------------------------------------
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
    try:
        found = client.describe_cache_clusters(CacheClusterId=members[0], aws_retry=True)
    except is_boto3_error_code("CacheClusterNotFound"):
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
    """The parameter group, None when missing, LACKING when the endpoint has no such API."""
    try:
        found = optional_call(client.describe_cache_parameter_groups, CacheParameterGroupName=name)
    except is_boto3_error_code("CacheParameterGroupNotFound"):
        return None
    if found is LACKING:
        return LACKING
    return (found.get("CacheParameterGroups") or [None])[0]


def parameter_values(client, name):
    """All of a parameter group's parameters, name → value (None when unset)."""
    values, marker = {}, None
    while True:
        kwargs = {"Marker": marker} if marker else {}
        page = client.describe_cache_parameters(
            CacheParameterGroupName=name, aws_retry=True, **kwargs
        )
        for parameter in page.get("Parameters", []):
            values[parameter["ParameterName"]] = parameter.get("ParameterValue")
        marker = page.get("Marker")
        if not marker:
            return values


# --- views ---------------------------------------------------------------------------------
def _text(value):
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


def desired_settings(params, group_id, parameter_group_name):
    settings = {
        "replication_group_id": group_id,
        "description": params["description"] or _DEFAULT_DESCRIPTION,
        "node_type": params["node_type"],
        "port": params["port"],
        "at_rest_encryption": params["at_rest_encryption"],
        "transit_encryption": params["transit_encryption"],
        "snapshot_retention_limit": params["snapshot_retention_limit"],
        "tags": params["tags"] or {},
        "engine_version": params["engine_version"],
        "subnet_group_name": params["subnet_group"]["name"],
    }
    if params["security_group_ids"]:
        settings["security_group_ids"] = sorted(params["security_group_ids"])
    if parameter_group_name:
        settings["parameter_group_name"] = parameter_group_name
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


def same_version(actual, desired):
    if actual is None or actual == desired:
        return True
    prefix = desired[:-2] if desired.endswith(".x") else desired
    return actual.startswith(prefix + ".")


# --- validation -----------------------------------------------------------------------------
def validate(params):
    """Raise Failure for input AWS would refuse (or the stand-in would wrongly accept)."""
    group_id = params["replication_group_id"]
    if not _ID.fullmatch(group_id.lower()) or group_id.endswith("-"):
        raise Failure(
            f"replication_group_id {group_id!r} is not valid: use 1 to 40 letters, digits or "
            "hyphens, starting with a letter, without two hyphens in a row or a trailing hyphen"
        )
    if params["wait_timeout"] <= 0:
        raise Failure("wait_timeout must be a positive number of seconds")
    if params["state"] == "absent":
        if not params["tags"]:
            raise Failure(
                "state=absent needs tags (at least Project: tinyllama): only a replication group "
                "carrying every tag given is deleted"
            )
        return
    subnet_group = params["subnet_group"]
    if not subnet_group:
        raise Failure("subnet_group (name and subnet_ids) is required with state=present")
    if not subnet_group.get("subnet_ids"):
        raise Failure(
            "subnet_group.subnet_ids must list at least one VPC subnet (two in different "
            "availability zones are usual)"
        )
    if not 0 <= params["snapshot_retention_limit"] <= 35:
        raise Failure("snapshot_retention_limit must be between 0 and 35 days")
    if not 1 <= params["port"] <= 65535:
        raise Failure("port must be between 1 and 65535")


def check_immutable(before, params):
    """Fail when an existing group differs in what cannot be changed after creation."""
    fixed = (
        ("at_rest_encryption", "at_rest_encryption", params["at_rest_encryption"]),
        ("transit_encryption", "transit_encryption", params["transit_encryption"]),
        ("port", "port", params["port"]),
        ("subnet_group_name", "subnet_group.name", params["subnet_group"]["name"]),
    )
    wrong = [
        (option, before[key], wanted)
        for key, option, wanted in fixed
        if before.get(key) is not None and before[key] != wanted
    ]
    if wrong:
        found = "; ".join(f"{option} is {was!r}, not {wanted!r}" for option, was, wanted in wrong)
        raise Failure(
            f"replication group {before['replication_group_id']} exists and its {found}: "
            "these cannot be changed after creation. Set "
            f"{', '.join(option for option, _, _ in wrong)} to match the existing group, or "
            "delete it (state: absent) and create it again"
        )


# --- subnet group ---------------------------------------------------------------------------
def subnet_group_view(found):
    if not found:
        return None
    return {
        "name": found["CacheSubnetGroupName"],
        "description": found.get("CacheSubnetGroupDescription"),
        "subnet_ids": sorted(s["SubnetIdentifier"] for s in found.get("Subnets") or []),
    }


def ensure_subnet_group(client, spec, tags, check_mode, warn):
    """Create the subnet group or update it; returns (changed, before, after)."""
    before = subnet_group_view(find_subnet_group(client, spec["name"]))
    wanted = {
        "name": spec["name"],
        "description": spec["description"],
        "subnet_ids": sorted(set(spec["subnet_ids"])),
    }
    if before == wanted:
        return False, before, before
    if before is None:
        if not check_mode:
            client.create_cache_subnet_group(
                CacheSubnetGroupName=spec["name"],
                CacheSubnetGroupDescription=spec["description"],
                SubnetIds=wanted["subnet_ids"],
                aws_retry=True,
                **_tag_kwargs(tags),
            )
        return True, None, wanted
    if check_mode:
        return True, before, wanted
    done = optional_call(
        client.modify_cache_subnet_group,
        CacheSubnetGroupName=spec["name"],
        CacheSubnetGroupDescription=spec["description"],
        SubnetIds=wanted["subnet_ids"],
    )
    if done is LACKING:
        warn(
            f"the endpoint does not implement ModifyCacheSubnetGroup ({_STAND_IN}): subnet group "
            f"{spec['name']} was not changed and keeps description {before['description']!r} and "
            f"subnets {before['subnet_ids']} (wanted {wanted['description']!r}, "
            f"{wanted['subnet_ids']})"
        )
        return False, before, before
    return True, before, wanted


# --- parameter group ------------------------------------------------------------------------
def _lacking_parameter_groups(spec, call, what):
    settings = ", ".join(f"{k}={_text(v)}" for k, v in sorted(spec["parameters"].items()))
    return (
        f"the endpoint does not implement ElastiCache cache parameter groups ({call} failed, "
        f"{_STAND_IN}): parameter group {spec['name']} was not created or changed"
        f"{f' and its parameters ({settings}) were not set' if settings else ''}; {what}"
    )


def ensure_parameter_group(client, spec, tags, check_mode, warn, group_exists):
    """Create the parameter group and set the parameters that differ.

    Returns (changed, before, after, name in effect — None where the endpoint lacks them).
    """
    found = find_parameter_group(client, spec["name"])
    if found is LACKING:
        what = (
            "the replication group's parameter group was neither compared nor changed"
            if group_exists
            else "the replication group is created with the engine's default parameter group"
        )
        warn(_lacking_parameter_groups(spec, "DescribeCacheParameterGroups", what))
        return False, None, None, None
    wanted = {k: _text(v) for k, v in spec["parameters"].items()}
    after = _pg_view(spec, spec["family"], wanted)
    if found is None:
        if check_mode:
            return True, None, after, spec["name"]
        created = optional_call(
            client.create_cache_parameter_group,
            CacheParameterGroupName=spec["name"],
            CacheParameterGroupFamily=spec["family"],
            Description=spec["description"],
            **_tag_kwargs(tags),
        )
        if created is LACKING:
            what = "the replication group uses the engine's default parameter group"
            warn(_lacking_parameter_groups(spec, "CreateCacheParameterGroup", what))
            return False, None, None, None
    elif found.get("CacheParameterGroupFamily") != spec["family"]:
        raise Failure(
            f"parameter group {spec['name']} exists with family "
            f"{found.get('CacheParameterGroupFamily')}, not {spec['family']}: a family cannot be "
            "changed; set parameter_group.family to match or use another parameter_group.name"
        )
    current = parameter_values(client, spec["name"]) if wanted else {}
    unknown = sorted(set(wanted) - set(current))
    if unknown:
        raise Failure(
            f"parameter group {spec['name']} (family {spec['family']}) has no parameter "
            f"{', '.join(unknown)}: check parameter_group.parameters"
        )
    before = None
    if found is not None:
        before = _pg_view(spec, spec["family"], {k: current.get(k) for k in wanted})
    differing = [
        {"ParameterName": k, "ParameterValue": v}
        for k, v in sorted(wanted.items())
        if current.get(k) != v
    ]
    if differing and not check_mode:
        for start in range(0, len(differing), 20):  # AWS takes 20 at a time
            client.modify_cache_parameter_group(
                CacheParameterGroupName=spec["name"],
                ParameterNameValues=differing[start : start + 20],
                aws_retry=True,
            )
    return found is None or bool(differing), before, after, spec["name"]


def _pg_view(spec, family, values):
    return {"name": spec["name"], "family": family, "parameters": values}


# --- the replication group ------------------------------------------------------------------
def _ready(value):
    status = (value or {}).get("Status")
    if status in ("create-failed", "deleting"):
        raise Failure(
            f"replication group {value['ReplicationGroupId']} is {status}: look at its events in "
            "the console, delete it (state: absent) and run again"
        )
    return status == "available"


def wait_available(client, group_id, timeout):
    return wait_until(
        lambda: find_group(client, group_id),
        _ready,
        what=f"replication group {group_id} to be available",
        timeout=timeout,
        delay=_delay(timeout),
        sleep=_SLEEP,
        clock=_CLOCK,
    )


def wait_gone(client, group_id, timeout):
    """Wait until the group is gone; one still there after `timeout` is a Failure."""
    seen = {}

    def fetch():
        seen["group"] = find_group(client, group_id)
        return seen["group"]

    try:
        wait_until(
            fetch,
            lambda value: value is None,
            what=f"replication group {group_id} to be deleted",
            timeout=timeout,
            delay=_delay(timeout),
            sleep=_SLEEP,
            clock=_CLOCK,
        )
    except Failure as exc:
        status = (seen.get("group") or {}).get("Status")
        raise Failure(
            f"replication group {group_id} is still {status} after wait_timeout={timeout} s "
            "(AWS usually needs 5 to 15 minutes; the local stand-in moto 5.2.5 never finishes a "
            "delete - use wait: false there). Its subnet group and parameter group were not "
            "deleted: run again with a larger wait_timeout to remove them"
        ) from exc


def create_group(client, params, group_id, parameter_group_name):
    kwargs = {
        "ReplicationGroupId": group_id,
        "ReplicationGroupDescription": params["description"] or _DEFAULT_DESCRIPTION,
        "Engine": "redis",
        "EngineVersion": params["engine_version"],
        "CacheNodeType": params["node_type"],
        "NumCacheClusters": 1,
        "AutomaticFailoverEnabled": False,
        "AtRestEncryptionEnabled": params["at_rest_encryption"],
        "TransitEncryptionEnabled": params["transit_encryption"],
        "CacheSubnetGroupName": params["subnet_group"]["name"],
        "Port": params["port"],
        "SnapshotRetentionLimit": params["snapshot_retention_limit"],
    }
    if params["security_group_ids"]:
        kwargs["SecurityGroupIds"] = params["security_group_ids"]
    if parameter_group_name:
        kwargs["CacheParameterGroupName"] = parameter_group_name
    kwargs.update(_tag_kwargs(params["tags"]))
    return client.create_replication_group(aws_retry=True, **kwargs)["ReplicationGroup"]


def modifications(before, params, parameter_group_name):
    """ModifyReplicationGroup arguments for what differs (settings the endpoint reported)."""
    changes = {}
    if params["description"] is not None and before["description"] != params["description"]:
        changes["ReplicationGroupDescription"] = params["description"]
    if before["node_type"] != params["node_type"]:
        changes["CacheNodeType"] = params["node_type"]
    if before["snapshot_retention_limit"] != params["snapshot_retention_limit"]:
        changes["SnapshotRetentionLimit"] = params["snapshot_retention_limit"]
    if "engine_version" in before and not same_version(
        before["engine_version"], params["engine_version"]
    ):
        changes["EngineVersion"] = params["engine_version"]
    wanted_sgs = sorted(params["security_group_ids"] or [])
    if wanted_sgs and "security_group_ids" in before and before["security_group_ids"] != wanted_sgs:
        changes["SecurityGroupIds"] = wanted_sgs
    if (
        parameter_group_name
        and "parameter_group_name" in before
        and before["parameter_group_name"] != parameter_group_name
    ):
        changes["CacheParameterGroupName"] = parameter_group_name
    return changes


_SETTING_OF = {
    "ReplicationGroupDescription": "description",
    "CacheNodeType": "node_type",
    "SnapshotRetentionLimit": "snapshot_retention_limit",
    "EngineVersion": "engine_version",
    "SecurityGroupIds": "security_group_ids",
    "CacheParameterGroupName": "parameter_group_name",
}


def read_existing(client, group_id, params, warn):
    """The existing group and its settings (None, {} when there is none)."""
    group = find_group(client, group_id)
    if group is None:
        return None, {}
    if group.get("Status") == "deleting":
        raise Failure(
            f"replication group {group_id} is being deleted: run again once it is gone (on "
            "the local stand-in moto 5.2.5 a delete never finishes: reset the stand-in)"
        )
    member = find_member(client, group)
    if member is None:
        warn(
            f"the endpoint reports no member cluster for replication group {group_id} "
            "(DescribeCacheClusters: CacheClusterNotFound, as on the local stand-in moto "
            "5.2.5, which creates none): its engine version, security groups, subnet group and "
            "parameter group could not be read, so they were neither compared nor changed"
        )
    before = group_settings(group, member, resource_tags(client, group.get("ARN")))
    check_immutable(before, params)
    return group, before


def update_group(client, group, before, params, pg_name, check_mode):
    """Modify what differs and set the tags; returns (changed, after, group)."""
    group_id, wait, timeout = before["replication_group_id"], params["wait"], params["wait_timeout"]
    changes = modifications(before, params, pg_name)
    to_set, to_remove = tag_changes(before["tags"], params["tags"], params["purge_tags"])
    after = dict(before)
    after.update({_SETTING_OF[key]: value for key, value in changes.items()})
    after["tags"] = {
        **{k: v for k, v in before["tags"].items() if k not in to_remove},
        **to_set,
    }
    if check_mode:
        return bool(changes or to_set or to_remove), after, group
    if changes:
        if group.get("Status") != "available":
            if not wait:
                raise Failure(
                    f"replication group {group_id} is {group.get('Status')}, and AWS modifies "
                    "only available groups: run again later, or with wait: true"
                )
            group = wait_available(client, group_id, timeout)
        group = client.modify_replication_group(
            ReplicationGroupId=group_id, ApplyImmediately=True, aws_retry=True, **changes
        )["ReplicationGroup"]
    if to_remove:
        client.remove_tags_from_resource(
            ResourceName=group["ARN"], TagKeys=to_remove, aws_retry=True
        )
    if to_set:
        client.add_tags_to_resource(
            ResourceName=group["ARN"], Tags=ansible_dict_to_boto3_tag_list(to_set), aws_retry=True
        )
    if wait and (changes or group.get("Status") != "available"):
        group = wait_available(client, group_id, timeout)
    return bool(changes or to_set or to_remove), after, group


def ensure_present(client, params, check_mode, warn):
    group_id = params["replication_group_id"].lower()
    group, before = read_existing(client, group_id, params, warn)
    sng_changed, sng_before, sng_after = ensure_subnet_group(
        client, params["subnet_group"], params["tags"], check_mode, warn
    )
    pg_changed, pg_before, pg_after, pg_name = False, None, None, None
    if params["parameter_group"]:
        pg_changed, pg_before, pg_after, pg_name = ensure_parameter_group(
            client, params["parameter_group"], params["tags"], check_mode, warn, group is not None
        )
    if group is None:
        changed, after = True, desired_settings(params, group_id, pg_name)
        if not check_mode:
            group = create_group(client, params, group_id, pg_name)
            if params["wait"]:
                group = wait_available(client, group_id, params["wait_timeout"])
    else:
        changed, after, group = update_group(client, group, before, params, pg_name, check_mode)
    before = _with_parts(before, sng_before, pg_before)
    after = _with_parts(after, sng_after, pg_after)
    changed = changed or sng_changed or pg_changed
    return changed, before, after, outcome_view(group_id, group, params, pg_name)


def _with_parts(settings, subnet_group, parameter_group):
    out = dict(settings)
    if subnet_group is not None:
        out["subnet_group"] = subnet_group
    if parameter_group is not None:
        out["parameter_group"] = parameter_group
    return out


# --- absent ---------------------------------------------------------------------------------
def delete_subnet_group(client, name, wanted_tags, check_mode, warn):
    found = find_subnet_group(client, name)
    if found is None:
        return False, None
    view = subnet_group_view(found)
    if not carries(resource_tags(client, found.get("ARN")), wanted_tags):
        warn(f"subnet group {name} was not deleted: it is not tagged {wanted_tags}")
        return False, view
    if check_mode:
        return True, view
    try:
        done = optional_call(client.delete_cache_subnet_group, CacheSubnetGroupName=name)
    except is_boto3_error_code("CacheSubnetGroupNotFoundFault"):
        return False, view
    if done is LACKING:
        warn(
            f"the endpoint does not implement DeleteCacheSubnetGroup ({_STAND_IN}): subnet group "
            f"{name} was left in place"
        )
        return False, view
    return True, view


def delete_parameter_group(client, name, wanted_tags, check_mode, warn):
    found = find_parameter_group(client, name)
    if found is LACKING:
        warn(
            "the endpoint does not implement ElastiCache cache parameter groups "
            f"(DescribeCacheParameterGroups failed, {_STAND_IN}): parameter group {name} was "
            "neither looked for nor deleted"
        )
        return False, None
    if found is None:
        return False, None
    view = {"name": name, "family": found.get("CacheParameterGroupFamily")}
    if not carries(resource_tags(client, found.get("ARN")), wanted_tags):
        warn(f"parameter group {name} was not deleted: it is not tagged {wanted_tags}")
        return False, view
    if check_mode:
        return True, view
    try:
        done = optional_call(client.delete_cache_parameter_group, CacheParameterGroupName=name)
    except is_boto3_error_code("CacheParameterGroupNotFound"):
        return False, view
    if done is LACKING:
        warn(
            f"the endpoint does not implement DeleteCacheParameterGroup ({_STAND_IN}): "
            f"parameter group {name} was left in place"
        )
        return False, view
    return True, view


def delete_parts(client, params, check_mode, warn, before, after):
    """Delete the subnet group and parameter group (once the replication group is gone)."""
    changed = False
    for key, delete in (
        ("subnet_group", delete_subnet_group),
        ("parameter_group", delete_parameter_group),
    ):
        if not params[key]:
            continue
        deleted, view = delete(client, params[key]["name"], params["tags"], check_mode, warn)
        changed = changed or deleted
        if view is not None:
            before[key] = view
            if not deleted:
                after[key] = view
    return changed


def warn_parts_left(params, group_id, warn):
    kinds = (("subnet group", "subnet_group"), ("parameter group", "parameter_group"))
    left = [f"{kind} {params[key]['name']}" for kind, key in kinds if params[key]]
    if left:
        warn(
            f"replication group {group_id} is deleting and wait is false, so "
            f"{' and '.join(left)} were left (AWS refuses to delete a subnet group still in use): "
            "run again with wait: true to remove them once the group is gone"
        )


def ensure_absent(client, params, check_mode, warn):
    group_id = params["replication_group_id"].lower()
    wanted = params["tags"]
    group = find_group(client, group_id)
    changed, before, after = False, {}, {}
    if group is not None and group.get("Status") != "deleting":
        tags = resource_tags(client, group.get("ARN"))
        before = group_settings(group, None, tags)
        if not carries(tags, wanted):
            warn(
                f"replication group {group_id} was not deleted: it is not tagged {wanted} "
                f"(its tags: {tags}); its subnet group and parameter group were left too"
            )
            return False, before, before, outcome_view(group_id, group, params, None)
        changed = True
        if not check_mode:
            group = client.delete_replication_group(ReplicationGroupId=group_id, aws_retry=True)
            group = group["ReplicationGroup"]
    # A group already deleting counts as absent; its subnet and parameter groups go once it is gone.
    if group is not None and not params["wait"]:
        warn_parts_left(params, group_id, warn)
    else:
        if group is not None and not check_mode:
            wait_gone(client, group_id, params["wait_timeout"])
            group = None
        # in check mode a group that would be deleted and waited for takes the rest with it
        changed = delete_parts(client, params, check_mode, warn, before, after) or changed
    view = outcome_view(group_id, group, params, None)
    if check_mode and changed and group is not None:
        view["status"] = "deleting"
    return changed, before, after, view


# --- the module -----------------------------------------------------------------------------
def ensure(module):
    params = module.params
    validate(params)
    client = retrying_client(module, "elasticache")
    act = ensure_present if params["state"] == "present" else ensure_absent
    changed, before, after, view = act(client, params, module.check_mode, module.warn)
    return result(module, changed, before, after, **view)


def main():
    argument_spec = dict(
        replication_group_id=dict(type="str", required=True),
        description=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        engine_version=dict(type="str", default="7.1"),
        node_type=dict(type="str", default="cache.t4g.micro"),
        port=dict(type="int", default=6379),
        at_rest_encryption=dict(type="bool", default=True),
        transit_encryption=dict(type="bool", default=False),
        subnet_group=dict(
            type="dict",
            options=dict(
                name=dict(type="str", required=True),
                description=dict(type="str", default=_DEFAULT_DESCRIPTION),
                subnet_ids=dict(type="list", elements="str"),
            ),
        ),
        parameter_group=dict(
            type="dict",
            options=dict(
                name=dict(type="str", required=True),
                family=dict(type="str", default="redis7"),
                description=dict(type="str", default=_DEFAULT_DESCRIPTION),
                parameters=dict(type="dict", default={}),
            ),
        ),
        security_group_ids=dict(type="list", elements="str"),
        snapshot_retention_limit=dict(type="int", default=0),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=900),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

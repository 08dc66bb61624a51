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
      - Give this or O(id_prefix).
    type: str
  id_prefix:
    description:
      - Manage the group by its tags instead of a fixed id - the one group whose id is
        C(<id_prefix>-<n>), that carries every tag in O(tags) and is available or being created.
        With none, O(state=present) creates C(<id_prefix>-<n+1>), one past every such id still
        listed - a deleted group's id stays taken until ElastiCache has finished deleting it,
        so a queue that comes and goes (the stack's sleep) needs a fresh id each time.
      - With O(state=absent) every group of the prefix carrying O(tags) is deleted.
      - At most 37 characters, so that C(-<n>) fits the 40 of an id. Needs the C(tlops)
        package (the project's Python), which holds the id arithmetic the control function
        shares.
    type: str
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
  - With O(state=absent), O(tags) must hold at least C(Project); only a resource that
    carries every given tag is deleted, never one found by its name alone.
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
  tlops.stack.tl_elasticache:
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
  tlops.stack.tl_elasticache:
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
queue_spec:
  description:
    - What a new group of O(id_prefix) is created from - the settings applied here, for the
      control function, which creates the queue again after the stack slept.
  returned: with O(id_prefix) and O(state=present)
  type: dict
diff:
  description: The managed settings before and after (diff mode).
  returned: when diff mode is on
  type: dict
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    ensure_state,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_elasticache.states import (
    ensure_absent,
    ensure_present,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_elasticache.validate import (
    DEFAULT_DESCRIPTION,
    validate,
)


def ensure(module):
    return ensure_state(module, "elasticache", validate, ensure_present, ensure_absent)


def main():
    argument_spec = dict(
        replication_group_id=dict(type="str"),
        id_prefix=dict(type="str"),
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
                description=dict(type="str", default=DEFAULT_DESCRIPTION),
                subnet_ids=dict(type="list", elements="str"),
            ),
        ),
        parameter_group=dict(
            type="dict",
            options=dict(
                name=dict(type="str", required=True),
                family=dict(type="str", default="redis7"),
                description=dict(type="str", default=DEFAULT_DESCRIPTION),
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
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_one_of=[("replication_group_id", "id_prefix")],
        mutually_exclusive=[("replication_group_id", "id_prefix")],
    )
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright: tinyllama-ops. Apache-2.0.
"""tl_vpc_delete: delete tagged security groups, subnets and VPCs, retrying DependencyViolation."""

DOCUMENTATION = r"""
---
module: tl_vpc_delete
short_description: Delete tagged security groups, subnets and VPCs, retrying while they are in use
description:
  - Deletes the security groups, then the subnets, then the VPCs given, each only if it carries
    every tag in O(tags); one that is gone already is no change.
  - While AWS refuses a delete with C(DependencyViolation) (a network interface is still in it,
    Lambda's, ElastiCache's or a terminated instance's on its way out), it tries again, O(delay)
    seconds apart, for at most O(retry_timeout) seconds; then it fails naming the network
    interfaces that still depend on it (id, type, status, description or instance).
  - It exists because M(amazon.aws.ec2_security_group), M(amazon.aws.ec2_vpc_subnet) and
    M(amazon.aws.ec2_vpc_net) fail at the first C(DependencyViolation), and their message does
    not say what depends.
author: tinyllama-ops
options:
  security_group_ids:
    description:
      - Security groups to delete (first). Empty their rules first where groups refer to
        each other.
    type: list
    elements: str
    default: []
  subnet_ids:
    description: Subnets to delete (after the groups).
    type: list
    elements: str
    default: []
  vpc_ids:
    description: VPCs to delete (last).
    type: list
    elements: str
    default: []
  tags:
    description:
      - The tags each resource must carry to be deleted; at least C(Project). One without them
        is left alone, with a warning.
    type: dict
    required: true
  retry_timeout:
    description:
      - Seconds to keep retrying a delete AWS refuses with C(DependencyViolation), 0 to 3600.
    type: int
    default: 300
  delay:
    description: Seconds between tries, 1 to 300.
    type: int
    default: 10
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - The stand-in (moto) refuses only a VPC that still has subnets; it deletes a security group
    or subnet that still holds network interfaces, which AWS refuses.
"""

EXAMPLES = r"""
- name: Delete the project's security groups, retrying while interfaces leave them
  tlops.stack.tl_vpc_delete:
    security_group_ids: ["sg-0123456789abcdef0"]
    tags:
      Project: tinyllama

- name: Delete the subnets, then the VPC
  tlops.stack.tl_vpc_delete:
    subnet_ids: ["subnet-0123456789abcdef0"]
    vpc_ids: ["vpc-0123456789abcdef0"]
    tags:
      Project: tinyllama
"""

RETURN = r"""
deleted:
  description: The ids deleted (in check mode, that would be), in order.
  returned: always
  type: list
  elements: str
kept:
  description: The ids left alone because they do not carry O(tags).
  returned: always
  type: list
  elements: str
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    Failure,
    refuse_untagged_delete,
    retrying_client,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_network import delete_in_turn


def ensure(module):
    params = module.params
    refuse_untagged_delete({**params, "state": "absent"})
    if not 0 <= params["retry_timeout"] <= 3600:
        raise Failure(f"retry_timeout {params['retry_timeout']} is outside 0..3600 seconds")
    if not 1 <= params["delay"] <= 300:
        raise Failure(f"delay {params['delay']} is outside 1..300 seconds")
    return delete_in_turn(retrying_client(module, "ec2"), params, module.check_mode, module.warn)


def main():
    argument_spec = dict(
        security_group_ids=dict(type="list", elements="str", default=[]),
        subnet_ids=dict(type="list", elements="str", default=[]),
        vpc_ids=dict(type="list", elements="str", default=[]),
        tags=dict(type="dict", required=True),
        retry_timeout=dict(type="int", default=300),
        delay=dict(type="int", default=10),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

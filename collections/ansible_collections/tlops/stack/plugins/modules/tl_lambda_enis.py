#!/usr/bin/python
# Copyright: tinyllama-ops. Apache-2.0.
"""tl_lambda_enis: wait until Lambda has deleted the network interfaces of its VPC functions."""

DOCUMENTATION = r"""
---
module: tl_lambda_enis
short_description: Wait until Lambda has deleted the network interfaces it made in security groups
description:
  - Looks for Lambda's network interfaces in the given security groups (type C(lambda), or the
    description Lambda gives them, C(AWS Lambda VPC ENI-<function>...)) and waits, bounded,
    until none is left.
  - It exists because Lambda deletes those interfaces itself, up to 20 minutes (sometimes more)
    after the last function using them was deleted, with the permissions of the functions'
    execution roles; a teardown that deletes the roles at once leaves them, and with them the
    security groups, subnets and VPC, behind (DependencyViolation). No amazon.aws or
    community.aws module waits for them, and M(amazon.aws.ec2_eni_info) with C(until) gives no
    message saying which interfaces are left and why.
  - It changes nothing. In check mode it only looks (the functions it waits on are not deleted).
  - Run it with C(wait_timeout) of a minute or so under C(until) and C(retries), so that each
    retry prints a line and a long wait shows it is still going.
author: tinyllama-ops
options:
  security_group_ids:
    description: The security groups of the functions' VPC configuration.
    type: list
    elements: str
    required: true
  wait_timeout:
    description:
      - Seconds to wait for them to go; past it the module fails, naming the interfaces left.
        0 only looks.
    type: int
    default: 1200
  delay:
    description: Seconds between looks, 1 to 300.
    type: int
    default: 15
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Wait for Lambda to delete the functions' network interfaces (a line a minute)
  tlops.stack.tl_lambda_enis:
    security_group_ids: ["sg-0123456789abcdef0"]
    wait_timeout: 60
  register: lambda_enis
  until: lambda_enis is succeeded
  retries: 45
  delay: 1
"""

RETURN = r"""
interfaces:
  description: Lambda's network interfaces still in the groups (none once the wait succeeded).
  returned: always
  type: list
  elements: dict
  contains:
    id: {description: The interface's id., type: str, returned: always}
    status: {description: Its status (C(in-use), C(available)...)., type: str, returned: always}
    interface_type: {description: Its type (C(lambda) on AWS)., type: str, returned: always}
    description: {description: Its description, naming the function., type: str, returned: always}
    subnet_id: {description: Its subnet., type: str, returned: always}
    security_group_ids: {description: Its security groups., type: list, returned: always}
    attached_to: {description: The instance it is attached to, if any., type: str, returned: always}
looks:
  description: How many times it looked again after the first look.
  returned: always
  type: int
waited_s:
  description: Seconds it waited between looks.
  returned: always
  type: int
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    Failure,
    retrying_client,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_network import wait_lambdas_gone


def ensure(module):
    params = module.params
    if params["wait_timeout"] < 0:
        raise Failure("wait_timeout must be 0 (only look) or more seconds")
    if not 1 <= params["delay"] <= 300:
        raise Failure(f"delay {params['delay']} is outside 1..300 seconds")
    found = wait_lambdas_gone(retrying_client(module, "ec2"), params, module.check_mode)
    return {"changed": False, **found}


def main():
    argument_spec = dict(
        security_group_ids=dict(type="list", elements="str", required=True),
        wait_timeout=dict(type="int", default=1200),
        delay=dict(type="int", default=15),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

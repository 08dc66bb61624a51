#!/usr/bin/python
# tinyllama-ops, the network role's own module. Apache-2.0.
# Neither amazon.aws nor community.aws reads EC2's instance type offerings: a subnet made
# without a zone lands wherever EC2 puts it, and g4dn is not offered in every zone (us-east-1e
# has none), where every launch of the node would then fail.

from __future__ import annotations

from typing import Any

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # AnsibleAWSModule reports the missing SDK itself
    BotoCoreError = ClientError = Exception

DOCUMENTATION = r"""
---
module: network_offering_zones
short_description: The availability zones of the region that offer an instance type
description:
  - Lists the region's availability zones (DescribeAvailabilityZones, zone type
    C(availability-zone), state C(available): no Local or Wavelength Zones) where the instance
    type is offered (DescribeInstanceTypeOfferings with C(LocationType=availability-zone),
    U(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstanceTypeOfferings.html)).
  - Changes nothing.
author: tinyllama-ops
options:
  instance_type:
    description: The instance type, such as C(g4dn.xlarge).
    type: str
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Find the zones that offer the node's instance type
  network_offering_zones:
    instance_type: g4dn.xlarge
  register: _network_zones
"""

RETURN = r"""
zones:
  description: The zones that offer the type, sorted by name; empty when none does.
  type: list
  elements: str
  returned: always
"""


def offering_zones(offered: list[str], available: list[str]) -> list[str]:
    """The available zones among those offering the type, sorted (the first is the choice)."""
    return sorted(set(offered) & set(available))


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={"instance_type": {"type": "str", "required": True}},
        supports_check_mode=True,
    )
    client = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff())
    instance_type: str = module.params["instance_type"]
    try:
        zones: list[dict[str, Any]] = client.describe_availability_zones(
            Filters=[
                {"Name": "zone-type", "Values": ["availability-zone"]},
                {"Name": "state", "Values": ["available"]},
            ],
            aws_retry=True,
        )["AvailabilityZones"]
        pages = client.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [instance_type]}],
        )
        offered = [o["Location"] for page in pages for o in page["InstanceTypeOfferings"]]
    except (BotoCoreError, ClientError) as e:
        # UnauthorizedOperation included: the operator needs ec2:DescribeAvailabilityZones and
        # ec2:DescribeInstanceTypeOfferings.
        module.fail_json_aws(e, msg=f"Could not read the zones that offer {instance_type}")
    module.exit_json(changed=False, zones=offering_zones(offered, [z["ZoneName"] for z in zones]))


if __name__ == "__main__":
    main()

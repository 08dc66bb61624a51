#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# Neither amazon.aws nor community.aws reads EC2's instance type offerings: a subnet made
# without a zone lands wherever EC2 puts it, and g4dn is not offered in every zone (us-east-1e
# has none), where every launch of the node would then fail.

DOCUMENTATION = r"""
---
module: tl_offering_zones
short_description: The availability zones of the region that offer an instance type
description:
  - Lists the region's availability zones (DescribeAvailabilityZones, zone type
    C(availability-zone), state C(available), so no Local or Wavelength Zones) where the instance
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
  tlops.stack.tl_offering_zones:
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


from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    pages,
    retrying_client,
    run,
)


def offering_zones(offered, available):
    """The available zones among those offering the type, sorted (the first is the choice)."""
    return sorted(set(offered) & set(available))


def find(module):
    """The zones; a refusal (UnauthorizedOperation included: the operator needs
    ec2:DescribeAvailabilityZones and ec2:DescribeInstanceTypeOfferings) fails through run()."""
    ec2 = retrying_client(module, "ec2")
    zones = ec2.describe_availability_zones(
        Filters=[
            {"Name": "zone-type", "Values": ["availability-zone"]},
            {"Name": "state", "Values": ["available"]},
        ],
        aws_retry=True,
    )["AvailabilityZones"]
    offered = pages(
        ec2.describe_instance_type_offerings,
        "InstanceTypeOfferings",
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": [module.params["instance_type"]]}],
    )
    available = [zone["ZoneName"] for zone in zones]
    return {"changed": False, "zones": offering_zones([o["Location"] for o in offered], available)}


def main():
    module = AnsibleAWSModule(
        argument_spec={"instance_type": {"type": "str", "required": True}},
        supports_check_mode=True,
    )
    run(module, lambda: find(module))


if __name__ == "__main__":
    main()

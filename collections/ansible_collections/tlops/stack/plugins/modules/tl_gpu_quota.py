#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# No maintained module reads a Service Quotas value (neither amazon.aws nor community.aws
# has one), and the answer needs EC2's vCPU arithmetic beside it: a small module says, before
# anything is launched, whether the account may run the GPU instances at all.

DOCUMENTATION = r"""
---
module: tl_gpu_quota
short_description: Check the account's vCPU quota for G instances before launching one
description:
  - Reads the region's quota "Running On-Demand G and VT instances" (Service Quotas, service
    C(ec2), quota code C(L-DB2E81BA)), the applied value (GetServiceQuota), else AWS's
    default (GetAWSDefaultServiceQuota). On-Demand quotas count vCPUs of running instances,
    per family group (U(https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html)).
  - Fails, naming the command that requests more, when the quota is smaller than the vCPUs of
    C(launch) (plus, with C(beside_project_node), the project's GPU node, which may wake
    meanwhile). New accounts often have 0 here, and an increase can take days.
  - Warns when G and VT instances already running in the region leave too little of the
    quota free right now (they are listed).
  - Changes nothing. Where the endpoint serves no EC2 quota (the local stand-in), it warns
    that the quota was not read and carries on.
author: tinyllama-ops
options:
  launch:
    description: The instance types about to run at the same time (one entry per instance).
    type: list
    elements: str
    required: true
  project:
    description: The C(Project) tag of the deployment; its instances are named in the report.
    type: str
    required: true
  beside_project_node:
    description:
      - Also count the project's GPU node (C(Project=<project>), C(Role=gpu), not terminated),
        since a bake runs while the node may wake.
    type: bool
    default: false
  quota_code:
    description: The Service Quotas code of the quota (EC2's G and VT On-Demand quota).
    type: str
    default: L-DB2E81BA
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Check the G-instance quota covers the node
  tlops.stack.tl_gpu_quota:
    launch: [g4dn.xlarge]
    project: tinyllama
"""

RETURN = r"""
quota:
  description: The quota's value in vCPUs; null when it could not be read.
  type: float
  returned: always
source:
  description: C(applied), C(default) or C(unread).
  type: str
  returned: always
needed:
  description: The vCPUs of what is checked (C(launch), and the node when asked).
  type: int
  returned: always
running:
  description: The G and VT instances running in the region, with their vCPUs.
  type: list
  elements: dict
  returned: always
"""

import re

from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    Failure,
    is_boto3_error_code,
    pages,
    retrying_client,
    run,
)

SERVICE_CODE = "ec2"
# The families the quota "Running On-Demand G and VT instances" counts: G3, G4dn, G4ad, G5,
# G5g, G6, G6e, Gr6, ... and VT1 (the EC2 instance-type quotas page above, "On-Demand
# Instance quotas"). The family is the type's name up to its generation digit.
G_AND_VT = re.compile(r"^(g|gr|vt)[0-9]")
# Instances in these states count against an On-Demand quota (same page: "running").
COUNTED_STATES = ["pending", "running"]


def counted(instance_type):
    return bool(G_AND_VT.match(instance_type))


def read_quota(quotas, code):
    """(value, source): the applied value, else AWS's default; (None, "unread") where the
    endpoint serves neither. GetServiceQuota answers NoSuchResourceException when no applied
    value is available (API_GetServiceQuota, Service Quotas API reference)."""
    try:
        answer = quotas.get_service_quota(ServiceCode=SERVICE_CODE, QuotaCode=code, aws_retry=True)
        return float(answer["Quota"]["Value"]), "applied"
    except is_boto3_error_code("NoSuchResourceException"):
        pass
    answer = gaps.optional(
        quotas.get_aws_default_service_quota,
        "servicequotas-no-ec2-quotas",
        ServiceCode=SERVICE_CODE,
        QuotaCode=code,
        aws_retry=True,
    )
    if answer is gaps.LACKING:
        return None, "unread"
    return float(answer["Quota"]["Value"]), "default"


def vcpus_of(ec2, types):
    """{instance type: its default vCPUs} (DescribeInstanceTypes' VCpuInfo)."""
    wanted = sorted(set(types))
    if not wanted:
        return {}
    try:
        found = pages(ec2.describe_instance_types, "InstanceTypes", InstanceTypes=wanted)
    except is_boto3_error_code("InvalidInstanceType") as exc:
        message = exc.response["Error"]["Message"]
        raise Failure(f"launch: {message}: name an EC2 instance type") from None
    return {item["InstanceType"]: int(item["VCpuInfo"]["DefaultVCpus"]) for item in found}


def g_instances(ec2, project):
    """The region's G and VT instances that count against the quota, or might (the project's
    node in any state but terminated), as dicts: id, type, state, ours, role."""
    filters = [{"Name": "instance-state-name", "Values": [*COUNTED_STATES, "stopping", "stopped"]}]
    found = []
    for reservation in pages(ec2.describe_instances, "Reservations", Filters=filters):
        for instance in reservation.get("Instances", []):
            if not counted(instance["InstanceType"]):
                continue
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            found.append(
                {
                    "id": instance["InstanceId"],
                    "type": instance["InstanceType"],
                    "state": instance["State"]["Name"],
                    "ours": tags.get("Project") == project,
                    "role": tags.get("Role", ""),
                }
            )
    return found


def request_more(region, code, at_least):
    return (
        f"request at least {at_least} vCPUs: `aws service-quotas request-service-quota-increase "
        f"--region {region} --service-code {SERVICE_CODE} --quota-code {code} --desired-value "
        f"{at_least}` (or the Service Quotas console, Amazon EC2, 'Running On-Demand G and VT "
        "instances'); on a new account AWS can take days to grant it (docs/runbook.md)"
    )


def check(module):
    params = module.params
    unknown = [t for t in params["launch"] if not counted(t)]
    if unknown:
        raise Failure(
            f"launch: {', '.join(unknown)} is not a G or VT instance type, which quota "
            f"{params['quota_code']} counts; check the instance type setting"
        )
    ec2 = retrying_client(module, "ec2")
    instances = g_instances(ec2, params["project"])
    node = [i for i in instances if i["ours"] and i["role"] == "gpu"]
    checked = list(params["launch"]) + (
        [i["type"] for i in node] if params["beside_project_node"] else []
    )
    vcpus = vcpus_of(ec2, checked + [i["type"] for i in instances])
    needed = sum(vcpus[t] for t in checked)
    running = [{**i, "vcpus": vcpus[i["type"]]} for i in instances if i["state"] in COUNTED_STATES]
    quota, source = read_quota(retrying_client(module, "service-quotas"), params["quota_code"])
    region = module.region
    outcome = {"changed": False, "quota": quota, "source": source, "needed": needed}
    if quota is None:
        module.warn(gaps.text("servicequotas-no-ec2-quotas", code=params["quota_code"]))
        return {**outcome, "running": running}
    if quota < needed:
        raise Failure(
            f"the account may run {quota:g} vCPUs of G and VT instances in {region} (quota "
            f"{params['quota_code']}, {source} value), but {' + '.join(checked)} need "
            f"{needed}: " + request_more(region, params["quota_code"], needed)
        )
    in_use = sum(i["vcpus"] for i in running if not (i["ours"] and i["role"] == "gpu"))
    if quota - in_use < needed:
        names = ", ".join(f"{i['id']} ({i['type']}, {i['vcpus']} vCPUs)" for i in running)
        module.warn(
            f"G and VT instances running in {region} use {in_use} of the {quota:g} vCPUs the "
            f"quota allows ({names}); {needed} more would not start now: stop some, or "
            + request_more(region, params["quota_code"], in_use + needed)
        )
    return {**outcome, "running": running}


def main():
    argument_spec = dict(
        launch=dict(type="list", elements="str", required=True),
        project=dict(type="str", required=True),
        beside_project_node=dict(type="bool", default=False),
        quota_code=dict(type="str", default="L-DB2E81BA"),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: check(module))


if __name__ == "__main__":
    main()

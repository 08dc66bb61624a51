#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# The idle cost report: no maintained module prices what a deployment leaves billing, and the
# arithmetic must be the same one `tlops cost` runs, so it is the tlops package's.

DOCUMENTATION = r"""
---
module: tl_idle_cost
short_description: Price what carries the project's tag, as it is now, by the month
description:
  - Finds what carries the tag C(Project=<project>) and prices each resource with the
    project's price table (C(playbooks/vars/prices.yml)), in euros a month if it stays as it
    is. In order, the instances (a running one at a month of its hourly price, a stopped one
    at 0), the node's volumes, Elastic IPs, VPC endpoints (interface ones per AZ, gateway
    ones free), the queue (each tagged ElastiCache replication group not being deleted, at
    its node type's price times its member clusters), the project's own AMIs with their EBS
    snapshots, buckets and VPCs.
  - Also names the stack's state (awake, napping, waking, asleep, or not deployed), from the
    GPU node's EC2 state and the queue group's status, and what bills in it.
  - It exists so that the report is computed once, by C(tlops.cost.idle), which C(tlops cost)
    runs too; status.yml and teardown.yml print its C(lines). It changes nothing.
  - It needs the project's Python (the controller's C(.venv)), where the tlops package is.
author: tinyllama-ops
notes:
  - A replication group in C(deleting) is not listed (it serves nothing and leaves within
    minutes; the stand-in never finishes a delete).
  - A snapshot is sized by C(FullSnapshotSizeInBytes) where DescribeSnapshots gives it,
    else by its image's volume size, labelled as an upper bound.
  - Where the endpoint returns volume records without C(SnapshotId) (the stand-in's root
    volumes), each instance's root volume is sized from the tagged launch template instead,
    and the row says so.
options:
  project:
    description: The C(Project) tag of the deployment.
    type: str
    required: true
  prices_file:
    description:
      - The price table, a YAML file with a C(prices) mapping like C(playbooks/vars/prices.yml).
      - Empty means the repository's C(playbooks/vars/prices.yml).
    type: path
    default: ""
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Price what carries the project tag
  tlops.stack.tl_idle_cost:
    project: tinyllama
    prices_file: "{{ playbook_dir }}/vars/prices.yml"
  register: idle_cost_report

- name: Print the idle cost report
  ansible.builtin.debug:
    msg: "{{ idle_cost_report.lines }}"
"""

RETURN = r"""
rows:
  description: One per resource, in the report's order.
  type: list
  elements: dict
  returned: always
  contains:
    item:
      description: What it is (kind, id, size or shape, state).
      type: str
    eur_month:
      description: Euros a month if it stays as it is, rounded to cents.
      type: float
    note:
      description: Where the price comes from, or why it is 0 or a bound.
      type: str
total_eur_month:
  description: The rows' sum, in euros a month.
  type: float
  returned: always
recorded:
  description: The date the price table was recorded.
  type: str
  returned: always
state:
  description: The stack's state, C(awake), C(napping), C(waking), C(asleep) or C(not deployed).
  type: str
  returned: always
bills_while_idle:
  description: What bills in that state, in a sentence.
  type: str
  returned: always
lines:
  description: The report as printed, a header, the state, one line a row and the total.
  type: list
  elements: str
  returned: always
"""

from pathlib import Path

import yaml
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    Failure,
    run,
)

try:
    from tlops.cost import idle
except ImportError:  # reported in price(): not the project's interpreter
    idle = None


NEEDED = ("recorded", "resources", "instance_hour_eur", "hours_per_month")


def table(source):
    """The price table in `source`; Failure names the file."""
    try:
        loaded = idle.prices(source)
        missing = [key for key in NEEDED if key not in loaded]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        missing, problem = NEEDED, str(exc)
    else:
        problem = f"no {', '.join(missing)} under prices"
    if missing:
        raise Failure(
            f"prices_file: {source} is not a price table ({problem}): point it at a YAML "
            "file shaped like playbooks/vars/prices.yml"
        )
    return loaded


def price(module):
    if idle is None:
        raise Failure(
            "tl_idle_cost needs the tlops package, which this Python lacks: run it with the "
            "project's .venv (ansible_python_interpreter=.venv/bin/python; `make setup`)"
        )
    params = module.params
    source = Path(params["prices_file"]) if params["prices_file"] else idle.PRICES
    try:
        report = idle.report(module.client, params["project"], table(source))
    except KeyError as exc:  # an entry the table lacks, for a kind of resource found
        raise Failure(
            f"prices_file: {source} has no price {exc} for what is deployed: add it, as "
            "playbooks/vars/prices.yml has it"
        ) from None
    return {"changed": False, **report, "lines": idle.lines(report)}


def main():
    argument_spec = dict(
        project=dict(type="str", required=True),
        prices_file=dict(type="path", default=""),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: price(module))


if __name__ == "__main__":
    main()

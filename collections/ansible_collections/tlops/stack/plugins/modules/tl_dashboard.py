#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# Dashboards: neither amazon.aws nor community.aws ships a module for CloudWatch dashboards.

DOCUMENTATION = r"""
---
module: tl_dashboard
short_description: Manage a CloudWatch dashboard, marked as the project's own
description:
  - Creates, updates and deletes a CloudWatch dashboard from a body (the JSON of
    C(PutDashboard)). A change is written only when the stored body differs from the
    desired one, compared as JSON, so an unchanged dashboard reports no change.
  - This module exists because neither C(amazon.aws) nor C(community.aws) has a module
    for CloudWatch dashboards.
  - CloudWatch cannot tag a dashboard, so the module adds one text widget of its own below
    the given ones that names the manager and lists O(tags); O(state=absent) deletes a
    dashboard only when that widget lists every tag given, never one found by its name alone.
  - The body is checked the way C(PutDashboard) checks it (top-level keys, widget shapes),
    since the local stand-in (moto) accepts anything; CloudWatch's own validation messages
    are returned as warnings.
author: tinyllama-ops
notes:
  - With O(state=absent), O(tags) must hold at least C(Project); only a resource that
    carries every given tag is deleted, never one found by its name alone.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
options:
  name:
    description: The dashboard's name (1-255 of letters, digits, V(-) and V(_)).
    type: str
    required: true
  state:
    description:
      - V(present) writes the dashboard when its body differs; V(absent) deletes it if its
        mark lists every tag in O(tags).
    type: str
    default: present
    choices: [present, absent]
  body:
    description:
      - The dashboard body, an object with C(widgets) (a dict, or its JSON text), without the
        owner's mark, which the module adds. Required when O(state=present).
    type: raw
  tags:
    description:
      - The tags the mark lists (O(state=present)) or must list (O(state=absent)).
    type: dict
    aliases: [resource_tags]
"""

EXAMPLES = r"""
- name: Write the overview dashboard
  tlops.stack.tl_dashboard:
    name: TinyLlama-Overview
    body: "{{ lookup('ansible.builtin.template', 'dashboard.json.j2') }}"
    tags:
      Project: tinyllama
      Role: observability

- name: Delete it, only if it carries our mark
  tlops.stack.tl_dashboard:
    name: TinyLlama-Overview
    state: absent
    tags:
      Project: tinyllama
"""

RETURN = r"""
dashboard_name:
  description: The dashboard's name.
  returned: always
  type: str
  sample: TinyLlama-Overview
dashboard_arn:
  description: The dashboard's ARN; null when it does not exist (or would be created).
  returned: always
  type: str
  sample: arn:aws:cloudwatch::123456789012:dashboard/TinyLlama-Overview
body:
  description: The body written (the given widgets and the mark).
  returned: when O(state=present)
  type: dict
diff:
  description: The stored body before and after.
  returned: in diff mode
  type: dict
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    ensure_state,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_dashboard import (
    check,
    ensure_absent,
    ensure_present,
)


def ensure(module):
    return ensure_state(module, "cloudwatch", check, ensure_present, ensure_absent)


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        body=dict(type="raw"),
        tags=dict(type="dict", aliases=["resource_tags"]),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

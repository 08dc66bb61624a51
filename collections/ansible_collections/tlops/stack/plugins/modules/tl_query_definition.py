#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# Saved Logs Insights queries: no module of amazon.aws or community.aws manages them.

DOCUMENTATION = r"""
---
module: tl_query_definition
short_description: Manage a saved CloudWatch Logs Insights query (a query definition)
description:
  - Creates, updates and deletes a CloudWatch Logs Insights query definition, the saved query
    the console lists under Queries, with the log groups it runs over; written only when the
    query text or the log groups differ.
  - This module exists because neither C(amazon.aws) nor C(community.aws) has a module for
    query definitions.
  - Query definitions carry no tags. The project names its own C(<Project>/<query>); when
    O(tags) names a C(Project), O(name) must start with it and a slash, and O(state=absent)
    deletes only such a definition.
author: tinyllama-ops
notes:
  - With O(state=absent), O(tags) must hold at least C(Project); only a definition named
    after it is deleted, never one found by any other name.
  - The local stand-in (moto 5.2.5) implements no query definition call (it answers HTTP
    500); the module then warns, changes nothing and reports no change. The queries
    themselves run locally over the local stack's logs (C(tlops local logs query NAME)).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
options:
  name:
    description: The definition's name, unique among the account's saved queries.
    type: str
    required: true
  state:
    description: V(present) writes the definition when it differs; V(absent) deletes it.
    type: str
    default: present
    choices: [present, absent]
  query_string:
    description: The Logs Insights query (at most 10000 characters). Required when present.
    type: str
  log_group_names:
    description: The log groups it runs over. At least one when present.
    type: list
    elements: str
    default: []
  tags:
    description:
      - Not stored (query definitions have no tags); its C(Project) decides which names are
        the project's, see the description.
    type: dict
    aliases: [resource_tags]
"""

EXAMPLES = r"""
- name: Save the 5xx-by-route query
  tlops.stack.tl_query_definition:
    name: tinyllama/api_5xx_by_route
    query_string: "filter status >= 500 | stats count(*) as errors by route | sort errors desc"
    log_group_names: [/tinyllama/http-api-access]
    tags:
      Project: tinyllama

- name: Delete it
  tlops.stack.tl_query_definition:
    name: tinyllama/api_5xx_by_route
    state: absent
    tags:
      Project: tinyllama
"""

RETURN = r"""
name:
  description: The definition's name.
  returned: always
  type: str
  sample: tinyllama/api_5xx_by_route
query_definition_id:
  description: Its id; null when it does not exist, would be created, or cannot be read.
  returned: always
  type: str
  sample: 8d3e2a91-7a3c-4f0e-9d55-2f4c1f7b0c11
diff:
  description: The query text and log groups before and after.
  returned: in diff mode
  type: dict
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    ensure_state,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_query_definition import (
    check,
    ensure_absent,
    ensure_present,
)


def ensure(module):
    return ensure_state(module, "logs", check, ensure_present, ensure_absent)


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        query_string=dict(type="str"),
        log_group_names=dict(type="list", elements="str", default=[]),
        tags=dict(type="dict", aliases=["resource_tags"]),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

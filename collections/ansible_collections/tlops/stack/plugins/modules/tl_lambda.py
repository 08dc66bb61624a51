#!/usr/bin/python
# Copyright: tinyllama-ops. Apache-2.0.
"""tl_lambda: a Python Lambda function built from its sources, its versions and its alias."""

DOCUMENTATION = r"""
---
module: tl_lambda
short_description: Build, deploy and version a Python Lambda function from its source directory
description:
  - Builds the function's zip itself, deterministically, from its source directory (every file of
    it), the parts of the C(tlops) package the handler imports and the pure-Python third-party
    packages it needs; the same inputs give the same bytes, so an unchanged function reports no
    change.
  - It exists because M(amazon.aws.lambda) uploads a zip it is given (and cannot tell whether a
    rebuilt zip is new), publishes a version on every code change without any retention policy,
    and cannot roll an alias back.
  - Creates or updates the function (code and configuration compared with C($LATEST), each updated
    only when it differs, waiting for each update to finish), publishes a version only when the
    code or the configuration changed or when the alias does not point at a version holding the
    desired code and configuration (if the newest published version holds them, the alias is
    pointed at it, which is what PublishVersion would return), points the alias at it, and
    deletes published versions beyond the newest O(keep_versions) that no alias points to (on
    every run, so lowering O(keep_versions) applies at once).
  - O(rollback=true) is an action, not a state; it points the alias at the published version
    before the one it points to now and changes nothing else, and reports a change each time it
    moves the alias. A later run without O(rollback) points the alias at the version holding the
    desired code again; to stay rolled back, revert the source.
  - The module runs where the sources are (the controller; use C(delegate_to=localhost)), under
    the project's virtual environment Python (C(.venv/bin/python), made by C(make setup)), which
    has C(tlops) installed.
author: tinyllama-ops
options:
  name:
    description: The function's name.
    type: str
    required: true
  state:
    description:
      - V(present) builds and deploys the function; V(absent) deletes it with all its versions and
        aliases, but only if it carries every tag in O(tags) (a look-alike without them is left
        alone, with a warning).
    type: str
    choices: [present, absent]
    default: present
  source:
    description:
      - The function's source directory (for example C(lambda_src/router)). Every file in it is
        shipped except C(__pycache__); native libraries (C(.so), C(.pyd), C(.dylib)) are refused,
        and so is a zip over 5 MiB.
      - A relative path is resolved against the working directory of the module's process, which
        for a local run (C(connection=local) or C(delegate_to=localhost)) is the playbook's
        directory, not the one C(ansible-playbook) was started in; roles pass an absolute path
        (for example C({{ playbook_dir }}/../lambda_src/router)).
      - Required when O(state=present), unless O(rollback=true).
    type: path
  handler:
    description: The handler, C(<module>.<function>); the module's file must be in O(source).
    type: str
    default: handler.lambda_handler
  runtime:
    description:
      - A Python runtime. Bytecode is shipped only when the Python running this module is the
        runtime's version.
    type: str
    default: python3.12
  memory_size:
    description: Memory in MB, 128 to 10240.
    type: int
    default: 512
  timeout:
    description: Time limit of one invocation in seconds, 1 to 900.
    type: int
    default: 10
  role_arn:
    description:
      - ARN of the execution role. Required when O(state=present), unless O(rollback=true).
    type: str
  environment:
    description:
      - Environment variables, names to string values (quote numbers). Omitted, the function's
        variables are left as they are.
      - Values are shown in the diff and the result; keep secrets out (read them from SSM or
        Secrets Manager at run time).
    type: dict
  tracing_mode:
    description: X-Ray tracing mode.
    type: str
    choices: [Active, PassThrough]
    default: Active
  architecture:
    description: Instruction set the function runs on.
    type: str
    choices: [x86_64, arm64]
    default: x86_64
  description:
    description: The function's description (and its versions'). Omitted, left as it is.
    type: str
  vpc_subnet_ids:
    description:
      - Subnets the function runs in (to reach a VPC-only service such as ElastiCache). Empty,
        the function runs outside any VPC. Needs O(vpc_security_group_ids) too.
    type: list
    elements: str
    default: []
  vpc_security_group_ids:
    description: Security groups of the function's network interfaces in O(vpc_subnet_ids).
    type: list
    elements: str
    default: []
  alias:
    description: The alias that callers invoke and that is moved to each new version.
    type: str
    default: prod
  keep_versions:
    description:
      - How many of the newest published versions to keep, at least 1. Older versions are
        deleted unless an alias points to one of them.
    type: int
    default: 5
  rollback:
    description:
      - Point O(alias) at the published version before the one it points to now, and change
        nothing else. Fails if there is no such version. Reports a change each time.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for the function to become active or for an update to finish.
    type: int
    default: 300
  propagation_timeout:
    description:
      - Seconds to keep retrying C(CreateFunction) and C(UpdateFunctionConfiguration), with
        doubling delays (2, 4, 8, ... seconds, at most 30), while Lambda refuses the execution
        role as one it cannot assume, or as lacking C(ec2:CreateNetworkInterface) (a function
        in a VPC) or C(xray:PutTraceSegments) (active tracing). A role or policy made moments
        ago is refused so until IAM has propagated it; past this, the module fails saying what
        the role must allow. 0 to 600; 0 does not retry.
    type: int
    default: 90
  tags:
    description:
      - Tags of the function (not of its versions). With O(state=absent), the tags the function
        must carry to be deleted (pass at least C(Project=tinyllama)).
      - Omitted, the function's tags are left as they are.
    type: dict
    aliases: [resource_tags]
  purge_tags:
    description: Remove tags not in O(tags) (keys starting with C(aws:) are never removed).
    type: bool
    default: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
notes:
  - With O(state=absent), O(tags) must hold at least C(Project); only a resource that
    carries every given tag is deleted, never one found by its name alone.
  - On the local stand-in (moto 5.2.5) C(UpdateFunctionConfiguration) ignores C(TracingConfig) and
    C(UpdateFunctionCode) ignores C(Architectures); the module warns that the change was not
    applied and does not report it as made.
  - The stand-in numbers a new version "count of versions + 1", so after retention deleted a
    version it gives a new version a number already in use (AWS never reuses a number). The module
    warns and deletes the stand-in's stale copy of that number, so the alias resolves to the new
    code.
  - The stand-in lets an aliased version be deleted (AWS refuses); the module never deletes one.
"""

EXAMPLES = r"""
- name: Deploy the router Lambda and keep its last 5 versions
  tlops.stack.tl_lambda:
    name: tinyllama-router
    source: "{{ playbook_dir }}/../lambda_src/router"
    role_arn: "{{ router_role_arn }}"
    memory_size: 512
    timeout: 10
    environment:
      TL_REDIS_URL: "rediss://{{ queue_endpoint }}:6379/0"
      TL_RATE_LIMIT: "30"
    alias: prod
    keep_versions: 5
    tags:
      Project: tinyllama
      Role: router
  delegate_to: localhost

- name: Point prod back at the previous version
  tlops.stack.tl_lambda:
    name: tinyllama-router
    rollback: true
  delegate_to: localhost

- name: Delete the router, only if it is ours
  tlops.stack.tl_lambda:
    name: tinyllama-router
    state: absent
    tags:
      Project: tinyllama
  delegate_to: localhost
"""

RETURN = r"""
function_name:
  description: The function's name.
  returned: always
  type: str
  sample: tinyllama-router
function_arn:
  description: The function's ARN, unqualified; null in check mode before it exists.
  returned: always
  type: str
  sample: arn:aws:lambda:eu-west-1:123456789012:function:tinyllama-router
alias_arn:
  description: The alias' ARN; null in check mode before it exists.
  returned: when O(state=present)
  type: str
  sample: arn:aws:lambda:eu-west-1:123456789012:function:tinyllama-router:prod
version:
  description: The published version the alias points to; null in check mode when a version would
    be published.
  returned: when O(state=present)
  type: str
  sample: "7"
code_sha256:
  description: Base64 of the SHA-256 of the zip (Lambda's CodeSha256) of that version.
  returned: when O(state=present)
  type: str
  sample: 0IL6qKMkyAP4zQu4VCOhAAjGY0P/8C+fiYw1U9RzBJk=
code_size:
  description: Size of that zip in bytes.
  returned: when O(state=present)
  type: int
  sample: 573466
published:
  description: Whether a version was published (in check mode, would be).
  returned: when O(state=present)
  type: bool
deleted_versions:
  description: Versions deleted by the retention policy (in check mode, that would be).
  returned: when O(state=present)
  type: list
  elements: str
  sample: ["1", "2"]
configuration:
  description: The managed configuration of the version the alias points to.
  returned: when O(state=present)
  type: dict
  contains:
    role_arn: {description: Execution role ARN., type: str, returned: always}
    handler: {description: Handler., type: str, returned: always}
    runtime: {description: Runtime., type: str, returned: always}
    memory_size: {description: Memory in MB., type: int, returned: always}
    timeout: {description: Time limit in seconds., type: int, returned: always}
    environment: {description: Environment variables., type: dict, returned: always}
    tracing_mode: {description: X-Ray tracing mode., type: str, returned: always}
    architecture: {description: Instruction set., type: str, returned: always}
    description: {description: Description., type: str, returned: always}
    vpc_subnet_ids: {description: Subnets; empty outside a VPC., type: list, returned: always}
    vpc_security_group_ids: {description: Security groups, sorted., type: list, returned: always}
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    ensure_state,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_lambda.states import (
    ensure_absent,
    ensure_present,
    ensure_rolled_back,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_lambda.validate import validate


def ensure(module):
    def present(client, params, check_mode, warn):
        if params["rollback"]:
            return ensure_rolled_back(client, params, check_mode)
        return ensure_present(client, params, check_mode, warn)

    return ensure_state(module, "lambda", validate, present, ensure_absent)


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        source=dict(type="path"),
        handler=dict(type="str", default="handler.lambda_handler"),
        runtime=dict(type="str", default="python3.12"),
        memory_size=dict(type="int", default=512),
        timeout=dict(type="int", default=10),
        role_arn=dict(type="str"),
        environment=dict(type="dict"),
        tracing_mode=dict(type="str", choices=["Active", "PassThrough"], default="Active"),
        architecture=dict(type="str", choices=["x86_64", "arm64"], default="x86_64"),
        description=dict(type="str"),
        vpc_subnet_ids=dict(type="list", elements="str", default=[]),
        vpc_security_group_ids=dict(type="list", elements="str", default=[]),
        alias=dict(type="str", default="prod"),
        keep_versions=dict(type="int", default=5),
        rollback=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
        propagation_timeout=dict(type="int", default=90),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# One Lambda function configuration in an S3 bucket's notification configuration. The maintained
# community.aws.s3_bucket_notification names its key filter rules Prefix and Suffix and always
# sends both, an empty one included; the API's names are prefix and suffix
# (https://docs.aws.amazon.com/AmazonS3/latest/API/API_FilterRule.html), and the local stand-in
# refuses anything else (docs/modules.md).

DOCUMENTATION = r"""
---
module: tl_bucket_notification
short_description: Manage one Lambda function configuration of an S3 bucket's notifications
description:
  - Adds, updates or removes one Lambda function configuration, found by its O(id), in an S3
    bucket's notification configuration. Every other configuration of the bucket (other Lambda
    functions, SQS queues, SNS topics, EventBridge) is written back exactly as it was read, since
    C(PutBucketNotificationConfiguration) replaces the bucket's whole configuration.
  - The configuration is compared with the one the bucket holds after normalising both (events
    as a sorted set, filter rule names in any case, an empty rule as none), and written only when
    they differ, so a second run reports no change.
  - This module exists because the maintained M(community.aws.s3_bucket_notification) writes the
    key filter rules as C(Prefix) and C(Suffix) and always sends both, an empty suffix included,
    where the S3 API reference names them C(prefix) and C(suffix)
    (U(https://docs.aws.amazon.com/AmazonS3/latest/API/API_FilterRule.html)). The local stand-in
    (moto 5.2.5 in server mode) accepts only the lower-case names, each with a value, and answers
    anything else with HTTP 500, so the project's deploy could not configure the control
    bucket's notification there. That module also has no diff mode, puts back only the topic,
    queue and Lambda configurations it read (an C(EventBridgeConfiguration) is dropped), offers
    11 of the event types, and calls S3 without amazon.aws' backoff on throttling.
  - This one sends a filter rule only for a non-empty O(prefix) or O(suffix), named in lower
    case; it checks O(function_arn) and O(events) as AWS documents them before any call, and
    a wrong value fails naming the option.
author: tinyllama-ops
notes:
  - AWS checks, on every write, that the function lets S3 invoke it, and answers
    C(InvalidArgument) (Unable to validate the following destination configurations) when it
    does not. Add the permission first, e.g. with M(amazon.aws.lambda_policy), C(principal)
    C(s3.amazonaws.com), C(action) C(lambda:InvokeFunction) and C(source_arn)
    C(arn:aws:s3:::<bucket>), for the same alias as O(function_arn).
  - AWS validates every destination of the bucket on each write, the other ones included, so a
    write fails while another configuration's queue, topic or function is missing or refuses S3.
  - AWS refuses configurations that share an event type with prefixes and suffixes that could
    match the same key; the module does not check that, the stand-in does not either.
  - A notification configuration carries no tags and has no ARN; the bucket is the project's,
    and O(state=absent) removes only the Lambda configuration with that O(id) (nothing when the
    id names a queue or topic configuration, or the bucket is gone). There is no C(tags) option.
  - The read and the write are two calls; a change another writer makes in between is lost.
    Run the tasks that touch one bucket's notifications one after the other.
  - The stand-in does not read back C(EventBridgeConfiguration), so there it is lost on a
    write; on AWS it is kept. See docs/modules.md.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
options:
  bucket:
    description: The bucket's name. It must exist (with O(state=present)).
    type: str
    required: true
  id:
    description:
      - The configuration's C(Id), unique within the bucket (1 to 255 printable characters).
        It is how the module finds the one configuration it manages.
    type: str
    required: true
  state:
    description:
      - V(present) adds or updates the configuration; V(absent) removes it and nothing else.
    type: str
    default: present
    choices: [present, absent]
  function_arn:
    description:
      - The ARN of the Lambda function S3 invokes, optionally qualified by an alias (or a
        version), e.g. V(arn:aws:lambda:eu-west-1:123456789012:function:tinyllama-control:prod).
      - Required when O(state=present).
    type: str
  events:
    description:
      - The event types that invoke it, names S3 documents for Lambda destinations
        (U(https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-event-types-and-destinations.html)),
        such as V(s3:ObjectCreated:*) or V(s3:ObjectRemoved:Delete). Order and repeats do not
        matter.
    type: list
    elements: str
    default: ["s3:ObjectCreated:*"]
  prefix:
    description:
      - Only keys that start with this (at most 1024 characters). Empty, no prefix rule is sent.
    type: str
    default: ""
  suffix:
    description:
      - Only keys that end with this (at most 1024 characters). Empty, no suffix rule is sent.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Let the control bucket invoke control
  amazon.aws.lambda_policy:
    function_name: tinyllama-control
    alias: prod
    statement_id: control-bucket-requests
    action: lambda:InvokeFunction
    principal: s3.amazonaws.com
    source_arn: arn:aws:s3:::tinyllama-control-123456789012
    source_account: "123456789012"

- name: Invoke control for each request written to the control bucket
  tlops.stack.tl_bucket_notification:
    bucket: tinyllama-control-123456789012
    id: control-requests
    function_arn: arn:aws:lambda:eu-west-1:123456789012:function:tinyllama-control:prod
    events: ["s3:ObjectCreated:*"]
    prefix: requests/
    suffix: .json

- name: Stop invoking it (other notifications of the bucket stay)
  tlops.stack.tl_bucket_notification:
    bucket: tinyllama-control-123456789012
    id: control-requests
    state: absent
"""

RETURN = r"""
bucket:
  description: The bucket's name.
  returned: always
  type: str
  sample: tinyllama-control-123456789012
configuration:
  description:
    - The managed configuration as it is after the task, snake_case; null when absent.
  returned: always
  type: dict
  contains:
    id:
      description: Its id.
      type: str
      sample: control-requests
    function_arn:
      description: The function (or alias) S3 invokes.
      type: str
      sample: arn:aws:lambda:eu-west-1:123456789012:function:tinyllama-control:prod
    events:
      description: The event types, sorted.
      type: list
      elements: str
      sample: ["s3:ObjectCreated:*"]
    prefix:
      description: The key prefix rule's value, empty for none.
      type: str
      sample: requests/
    suffix:
      description: The key suffix rule's value, empty for none.
      type: str
      sample: ""
diff:
  description: That one configuration before and after, with the keys of RV(configuration).
  returned: in diff mode
  type: dict
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    result,
    retrying_client,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_bucket_notification import (
    DEFAULT_EVENTS,
    check,
    ensure_absent,
    ensure_present,
)


def ensure(module):
    """tl_aws.ensure_state without its Project tag check: a notification configuration has no
    tags to check, and absent removes only the entry with that id."""
    params = module.params
    check(params)
    client = retrying_client(module, "s3")
    state = ensure_present if params["state"] == "present" else ensure_absent
    return result(module, **state(client, params, module.check_mode, module.warn))


def main():
    argument_spec = dict(
        bucket=dict(type="str", required=True),
        id=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        function_arn=dict(type="str"),
        events=dict(type="list", elements="str", default=list(DEFAULT_EVENTS)),
        prefix=dict(type="str", default=""),
        suffix=dict(type="str", default=""),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

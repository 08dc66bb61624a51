#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# Alarms with tags: amazon.aws.cloudwatch_metric_alarm cannot tag an alarm, and teardown
# selects what it deletes by tag.

DOCUMENTATION = r"""
---
module: tl_metric_alarm
short_description: Manage a CloudWatch metric alarm and its tags
description:
  - Creates, updates and deletes one CloudWatch alarm on one metric (a statistic or a
    percentile over a period), with its actions and tags; an alarm is written only when a
    field the module manages differs, so a second run reports no change.
  - This module exists because M(amazon.aws.cloudwatch_metric_alarm) cannot tag an alarm,
    and the project's teardown deletes only what carries its C(Project) tag.
  - It checks what C(PutMetricAlarm) checks and the local stand-in (moto) does not, namely
    the period (10, 30 or a multiple of 60 seconds), one of a statistic or a percentile,
    O(datapoints_to_alarm) at most O(evaluation_periods), and at most a day evaluated.
author: tinyllama-ops
notes:
  - With O(state=absent), O(tags) must hold at least C(Project); only a resource that
    carries every given tag is deleted, never one found by its name alone.
  - Alarms evaluate nothing on the local stand-in; they are created and read back there.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
options:
  name:
    description: The alarm's name, unique in the account and region.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the alarm; V(absent) deletes it if it carries every tag
        in O(tags).
    type: str
    default: present
    choices: [present, absent]
  description:
    description: What the alarm means and what to do (shown in its notification).
    type: str
  namespace:
    description: The metric's namespace (V(TLFIF), V(AWS/ApiGateway), ...).
    type: str
  metric_name:
    description: The metric's name.
    type: str
  dimensions:
    description: The metric's dimensions, names to values.
    type: dict
  statistic:
    description: The statistic compared; give this or O(extended_statistic).
    type: str
    choices: [SampleCount, Average, Sum, Minimum, Maximum]
  extended_statistic:
    description: A percentile compared, such as V(p95); give this or O(statistic).
    type: str
  period:
    description: Seconds each datapoint covers (10, 30 or a multiple of 60).
    type: int
  evaluation_periods:
    description: How many of the latest periods are looked at.
    type: int
    default: 1
  datapoints_to_alarm:
    description: How many of them must breach (M out of N); default O(evaluation_periods).
    type: int
  threshold:
    description: The value compared against.
    type: float
  comparison_operator:
    description: How the statistic is compared with O(threshold).
    type: str
    choices:
      - GreaterThanOrEqualToThreshold
      - GreaterThanThreshold
      - LessThanThreshold
      - LessThanOrEqualToThreshold
  treat_missing_data:
    description: What a period without data counts as.
    type: str
    default: missing
    choices: [breaching, notBreaching, ignore, missing]
  unit:
    description: The unit of the metric's datapoints compared (omitted, any).
    type: str
  alarm_actions:
    description: ARNs notified when the alarm goes to ALARM (an SNS topic).
    type: list
    elements: str
    default: []
  ok_actions:
    description: ARNs notified when it goes back to OK.
    type: list
    elements: str
    default: []
  insufficient_data_actions:
    description: ARNs notified when it goes to INSUFFICIENT_DATA.
    type: list
    elements: str
    default: []
  tags:
    description:
      - The alarm's tags. If not set, tags are not modified.
      - With O(state=absent), the tags the alarm must carry to be deleted.
    type: dict
    aliases: [resource_tags]
  purge_tags:
    description: If V(true) and O(tags) is set, tags not in O(tags) are removed.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Alarm when the API's p95 latency reaches 300 ms over five minutes
  tlops.stack.tl_metric_alarm:
    name: tinyllama-api-p95-latency
    namespace: AWS/ApiGateway
    metric_name: Latency
    dimensions: {ApiId: a1b2c3d4e5}
    extended_statistic: p95
    period: 300
    threshold: 300
    comparison_operator: GreaterThanOrEqualToThreshold
    treat_missing_data: notBreaching
    alarm_actions: ["{{ alert_topic_arn }}"]
    tags:
      Project: tinyllama
      Role: observability

- name: Delete it, only if it is ours
  tlops.stack.tl_metric_alarm:
    name: tinyllama-api-p95-latency
    state: absent
    tags:
      Project: tinyllama
"""

RETURN = r"""
alarm_name:
  description: The alarm's name.
  returned: always
  type: str
  sample: tinyllama-api-p95-latency
alarm_arn:
  description: The alarm's ARN; null when it does not exist (or would be created).
  returned: always
  type: str
  sample: arn:aws:cloudwatch:eu-west-1:123456789012:alarm:tinyllama-api-p95-latency
diff:
  description: The managed fields and tags before and after.
  returned: in diff mode
  type: dict
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    ensure_state,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_metric_alarm import (
    desired,
    ensure_absent,
    ensure_present,
)


def ensure(module):
    def present(client, params, check_mode, _warn):
        return ensure_present(client, params, check_mode)

    return ensure_state(module, "cloudwatch", desired, present, ensure_absent)


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        description=dict(type="str"),
        namespace=dict(type="str"),
        metric_name=dict(type="str"),
        dimensions=dict(type="dict"),
        statistic=dict(type="str", choices=["SampleCount", "Average", "Sum", "Minimum", "Maximum"]),
        extended_statistic=dict(type="str"),
        period=dict(type="int"),
        evaluation_periods=dict(type="int", default=1),
        datapoints_to_alarm=dict(type="int"),
        threshold=dict(type="float"),
        comparison_operator=dict(
            type="str",
            choices=[
                "GreaterThanOrEqualToThreshold",
                "GreaterThanThreshold",
                "LessThanThreshold",
                "LessThanOrEqualToThreshold",
            ],
        ),
        treat_missing_data=dict(
            type="str",
            default="missing",
            choices=["breaching", "notBreaching", "ignore", "missing"],
        ),
        unit=dict(type="str"),
        alarm_actions=dict(type="list", elements="str", default=[]),
        ok_actions=dict(type="list", elements="str", default=[]),
        insufficient_data_actions=dict(type="list", elements="str", default=[]),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

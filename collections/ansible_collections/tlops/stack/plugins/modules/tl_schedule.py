#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# EventBridge Scheduler schedules: no maintained module manages them, and the EventBridge rules
# amazon.aws.cloudwatchevent_rule makes run their cron expressions in UTC only
# (https://repost.aws/knowledge-center/eventbridge-scheduler-adjust-dst); a schedule follows
# its time zone's daylight saving time
# (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html).

DOCUMENTATION = r"""
---
module: tl_schedule
short_description: Manage an EventBridge Scheduler schedule (cron, rate or one-time, in a time zone)
description:
  - Creates, updates and deletes one Amazon EventBridge Scheduler schedule, with its
    expression, its time zone, its state (enabled or disabled), its flexible time window and
    its target (ARN, the role EventBridge Scheduler assumes, the input, the retry policy, a
    dead-letter queue). A schedule is written only when a field the module manages differs, so
    a second run reports no change.
  - This module exists because neither C(amazon.aws) nor C(community.aws) has a module for
    EventBridge Scheduler. The nearest, M(amazon.aws.cloudwatchevent_rule) (formerly in
    C(community.aws)), manages EventBridge I(rules), whose cron expressions always run in UTC
    and take no time zone; 08:00 on weekdays in C(Europe/Berlin) would move by an hour twice a
    year. It also has no flexible time window, retry policy or dead-letter queue per target.
  - It checks, before any call, what C(CreateSchedule) checks and the local stand-in (moto)
    does not, namely the expression (C(cron) with six fields, C(rate), C(at)), the time zone
    (a name of the IANA database, as Python's C(zoneinfo) knows it), names, the role ARN, the
    flexible window and the retry policy. A wrong value fails naming the option and showing a
    good one.
  - Schedules cannot carry tags (EventBridge Scheduler tags only schedule groups), so the
    project marks its schedules by name. When O(tags) names a C(Project), O(name) must start
    with it and a dash (C(tinyllama-wake)); O(state=absent) requires that, and with
    O(require_target_arn) also deletes only a schedule that still calls that target.
author: tinyllama-ops
notes:
  - With O(state=absent), O(tags) must hold at least C(Project); only a schedule named
    C(<Project>-...) is deleted, never one by any other name.
  - C(UpdateSchedule) replaces the whole schedule, so on an update the fields the module does
    not manage (KMS key, end date, a start date still to come, action after completion, a
    templated target's own parameters while the target stays the same) are sent again as
    GetSchedule gave them.
  - Nothing is waited for. A schedule has no state in between; each call's answer is final.
  - The local stand-in (moto 5.2.5) stores schedules and reads them back but never invokes a
    target and validates nothing; see docs/modules.md.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
options:
  name:
    description:
      - The schedule's name, unique in its group (1 to 64 letters, digits, C(.), C(_), C(-)).
    type: str
    required: true
  group_name:
    description:
      - The schedule group it belongs to. It must exist; the module does not create groups.
    type: str
    default: default
  state:
    description:
      - V(present) creates or updates the schedule; V(absent) deletes it (see the description
        for which ones).
    type: str
    default: present
    choices: [present, absent]
  schedule_expression:
    description:
      - When it runs. V(cron(minutes hours day-of-month month day-of-week year)), one of the
        two day fields V(?), for example V(cron(0 8 ? * MON-FRI *)); V(rate(value unit)) with
        minute(s), hour(s) or day(s), for example V(rate(15 minutes)); or once,
        V(at(yyyy-mm-ddThh:mm:ss)).
      - Required when O(state=present).
    type: str
  schedule_expression_timezone:
    description:
      - The IANA time zone the expression is evaluated in, such as V(Europe/Berlin); daylight
        saving time is followed.
    type: str
    default: UTC
  description:
    description: What the schedule is for (at most 512 characters).
    type: str
  enabled:
    description:
      - Whether the schedule runs (C(State) C(ENABLED)) or is kept but paused (C(DISABLED)).
    type: bool
    default: true
  flexible_time_window:
    description:
      - The window within which EventBridge Scheduler may invoke the target. Left out, V(OFF),
        that is at the scheduled minute.
    type: dict
    suboptions:
      mode:
        description:
          - V(OFF), or V(FLEXIBLE) within O(flexible_time_window.maximum_window_in_minutes).
          - Quote V('OFF') in YAML, which reads a bare OFF as false.
        type: str
        default: "OFF"
        choices: ["OFF", FLEXIBLE]
      maximum_window_in_minutes:
        description: The window, 1 to 1440 minutes; only with V(FLEXIBLE), and required there.
        type: int
  target:
    description:
      - What the schedule invokes. Required when O(state=present).
    type: dict
    suboptions:
      arn:
        description: The target's ARN, for example a Lambda function's.
        type: str
        required: true
      role_arn:
        description:
          - The IAM role EventBridge Scheduler assumes to invoke the target (its trust policy
            names C(scheduler.amazonaws.com); for a Lambda it may call C(lambda:InvokeFunction)).
        type: str
        required: true
      input:
        description:
          - What the target receives. A string is sent as it is; a dict or a list as compact
            JSON with sorted keys. A Lambda, Step Functions or EventBridge target requires JSON.
          - JSON objects and arrays are compared parsed, so spacing and key order make no
            change. Left out, the target gets EventBridge Scheduler's own notification.
        type: raw
      retry_policy:
        description: How often and how long a failed invocation is retried.
        type: dict
        suboptions:
          maximum_event_age_in_seconds:
            description: How long to keep retrying, 60 to 86400 seconds.
            type: int
            default: 86400
          maximum_retry_attempts:
            description: How many retries at most, 0 to 185.
            type: int
            default: 185
      dead_letter_arn:
        description: A standard SQS queue's ARN that receives the events not delivered.
        type: str
  require_target_arn:
    description:
      - With O(state=absent), the schedule is deleted only if its target's ARN is this one;
        otherwise it is left alone with a warning. Not used with O(state=present).
    type: str
  tags:
    description:
      - Not stored (schedules carry no tags); its C(Project) decides which names are the
        project's, see the description. Required with O(state=absent).
    type: dict
    aliases: [resource_tags]
"""

EXAMPLES = r"""
- name: Wake the node at 08:00 Berlin time on weekdays
  tlops.stack.tl_schedule:
    name: tinyllama-wake
    description: Start the GPU node before the working day
    schedule_expression: cron(0 8 ? * MON-FRI *)
    schedule_expression_timezone: Europe/Berlin
    target:
      arn: "{{ wake_function_arn }}"
      role_arn: "{{ scheduler_role_arn }}"
      input: {action: wake}
      retry_policy:
        maximum_event_age_in_seconds: 3600
        maximum_retry_attempts: 3
    tags:
      Project: tinyllama

- name: Put it to sleep at 19:00, within a five-minute window
  tlops.stack.tl_schedule:
    name: tinyllama-sleep
    schedule_expression: cron(0 19 ? * MON-FRI *)
    schedule_expression_timezone: Europe/Berlin
    flexible_time_window: {mode: FLEXIBLE, maximum_window_in_minutes: 5}
    target:
      arn: "{{ wake_function_arn }}"
      role_arn: "{{ scheduler_role_arn }}"
      input: {action: sleep}
    tags:
      Project: tinyllama

- name: Pause waking for the holidays (kept, not deleted)
  tlops.stack.tl_schedule:
    name: tinyllama-wake
    enabled: false
    schedule_expression: cron(0 8 ? * MON-FRI *)
    schedule_expression_timezone: Europe/Berlin
    target:
      arn: "{{ wake_function_arn }}"
      role_arn: "{{ scheduler_role_arn }}"
      input: {action: wake}

- name: Delete it, only if it is ours and still calls our function
  tlops.stack.tl_schedule:
    name: tinyllama-wake
    state: absent
    require_target_arn: "{{ wake_function_arn }}"
    tags:
      Project: tinyllama
"""

RETURN = r"""
name:
  description: The schedule's name.
  returned: always
  type: str
  sample: tinyllama-wake
group_name:
  description: Its schedule group.
  returned: always
  type: str
  sample: default
schedule_arn:
  description: The schedule's ARN; null when it does not exist (or would be created in check mode).
  returned: always
  type: str
  sample: arn:aws:scheduler:eu-west-1:123456789012:schedule/default/tinyllama-wake
diff:
  description:
    - The managed fields before and after, snake_case (C(schedule_expression),
      C(schedule_expression_timezone), C(enabled), C(flexible_time_window), C(target), ...).
  returned: in diff mode
  type: dict
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    ensure_state,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_schedule.states import (
    ensure_absent,
    ensure_present,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_schedule.validate import check


def ensure(module):
    return ensure_state(module, "scheduler", check, ensure_present, ensure_absent)


def main():
    window = dict(
        mode=dict(type="str", default="OFF", choices=["OFF", "FLEXIBLE"]),
        maximum_window_in_minutes=dict(type="int"),
    )
    retry_policy = dict(
        maximum_event_age_in_seconds=dict(type="int", default=86400),
        maximum_retry_attempts=dict(type="int", default=185),
    )
    target = dict(
        arn=dict(type="str", required=True),
        role_arn=dict(type="str", required=True),
        input=dict(type="raw"),
        retry_policy=dict(type="dict", options=retry_policy),
        dead_letter_arn=dict(type="str"),
    )
    argument_spec = dict(
        name=dict(type="str", required=True),
        group_name=dict(type="str", default="default"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        schedule_expression=dict(type="str"),
        schedule_expression_timezone=dict(type="str", default="UTC"),
        description=dict(type="str"),
        enabled=dict(type="bool", default=True),
        flexible_time_window=dict(type="dict", options=window),
        target=dict(type="dict", options=target),
        require_target_arn=dict(type="str"),
        tags=dict(type="dict", aliases=["resource_tags"]),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

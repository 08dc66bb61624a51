#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# Budgets: neither amazon.aws nor community.aws ships a module for AWS Budgets.

DOCUMENTATION = r"""
---
module: tl_budget
short_description: Manage an AWS Budgets cost budget with its notifications, subscribers and tags
description:
  - Creates, updates in place and deletes an AWS Budgets C(COST) budget, its notifications
    (actual or forecasted spend against a threshold) and their e-mail and SNS subscribers.
  - This module exists because neither C(amazon.aws) nor C(community.aws) has a module for
    AWS Budgets; the tinyllama stack needs one for its monthly cost guard rail (a warning at
    75 % by e-mail and SNS, and a notification at 105 % to the SNS topic of the budget-killer
    Lambda).
  - On AWS, a change of the limit, the filters or the time unit is made with C(update_budget);
    notifications are added and removed with C(create_notification) and C(delete_notification);
    subscribers are read with C(describe_subscribers_for_notification) and changed with
    C(create_subscriber) and C(delete_subscriber); tags are read and changed on the budget ARN
    C(arn:aws:budgets::<account>:budget/<name>).
author: tinyllama-ops
notes:
  - With O(state=absent), O(tags) must hold at least C(Project); only a resource that
    carries every given tag is deleted, never one found by its name alone.
  - AWS Budgets evaluates spend only a few times a day (about every 8 to 12 hours), so a
    notification can arrive hours after its threshold was crossed; do not rely on it to stop
    spending within minutes.
  - The amounts (O(limit_amount), and O(notifications[].threshold) when
    O(notifications[].threshold_type=ABSOLUTE_VALUE)) are in O(limit_unit), which must be the
    account's billing currency; that is usually USD even where the design speaks of euros.
  - A notification is identified by its O(notifications[].notification_type),
    O(notifications[].comparison_operator), O(notifications[].threshold) and
    O(notifications[].threshold_type); changing any of them removes the old notification and
    adds a new one.
  - AWS deletes a notification together with its last subscriber, so when none of a
    notification's current subscribers is kept the notification is deleted and re-created
    with the new subscribers instead.
  - The local stand-in (moto 5.2.5) implements only create, describe and delete of budgets and
    notifications. It does not implement C(update_budget), C(update_notification),
    C(describe_subscribers_for_notification), C(create_subscriber), C(delete_subscriber),
    C(update_subscriber), C(list_tags_for_resource), C(tag_resource) or C(untag_resource); it
    accepts C(ResourceTags) in C(create_budget) but does not keep them. It answers those calls
    with a bare HTTP 500 page. The module then warns and
    (a) deletes and re-creates the budget with its notifications when the limit, filters or time
    unit must change (this needs O(notifications) when the budget has notifications, since their
    subscribers cannot be read back); (b) leaves the subscribers of existing notifications
    uncompared and says so; (c) leaves tags uncompared and says so; (d) for O(state=absent),
    scopes the deletion by name instead of by tags, see O(state).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
options:
  name:
    description:
      - The name of the budget, unique within the account.
      - 1 to 100 characters; V(:) and V(\\) and the substring V(/action/) are not allowed.
    type: str
    required: true
  state:
    description:
      - V(present) creates the budget or brings it to the given settings.
      - V(absent) deletes it, but only if it carries every tag in O(tags) (callers pass at least
        V(Project=tinyllama)); a budget with that name but without those tags is left alone
        with a warning. Without O(tags) no tag is required. Where the tags cannot be read
        (the local stand-in), the budget is deleted only if its name starts with the value of
        the V(Project) tag in O(tags), and a warning says so.
    type: str
    default: present
    choices: [present, absent]
  limit_amount:
    description:
      - The budget limit per O(time_unit), in O(limit_unit). Must be greater than 0.
      - Required when O(state=present).
    type: float
  limit_unit:
    description:
      - The currency of O(limit_amount) and of absolute thresholds. AWS Budgets amounts are in
        the account's billing currency, usually V(USD).
    type: str
    default: USD
  time_unit:
    description:
      - The period after which the budget's actual and forecasted spend reset.
    type: str
    default: MONTHLY
    choices: [MONTHLY, QUARTERLY, ANNUALLY]
  budget_type:
    description:
      - What the budget tracks. Only cost budgets are supported for now.
    type: str
    default: COST
    choices: [COST]
  cost_filters:
    description:
      - 'The cost filters, a dictionary of filter name to a list of values, for example
        V({"TagKeyValue": ["user:Project$tinyllama"]}) (a cost allocation tag must be activated
        in the billing console before AWS filters on it).'
      - When not given, the budget's filters are left as they are (none on creation).
    type: dict
  notifications:
    description:
      - The budget's notifications, each with its subscribers. Up to 10 per budget.
      - When not given, the notifications are left as they are (none on creation); V([])
        removes them all.
    type: list
    elements: dict
    suboptions:
      notification_type:
        description: Whether the notification is about actual or forecasted spend.
        type: str
        default: ACTUAL
        choices: [ACTUAL, FORECASTED]
      comparison_operator:
        description: How the spend is compared with the threshold.
        type: str
        default: GREATER_THAN
        choices: [GREATER_THAN, LESS_THAN, EQUAL_TO]
      threshold:
        description:
          - The threshold, greater than 0; a percentage of O(limit_amount) (V(105) for 105 %)
            or an amount in O(limit_unit), see O(notifications[].threshold_type).
        type: float
        required: true
      threshold_type:
        description: Whether O(notifications[].threshold) is a percentage or an amount.
        type: str
        default: PERCENTAGE
        choices: [PERCENTAGE, ABSOLUTE_VALUE]
      subscribers:
        description:
          - Who is told, 1 to 10 per notification, at most one of them an SNS topic.
        type: list
        elements: dict
        required: true
        suboptions:
          subscription_type:
            description: V(EMAIL) or V(SNS).
            type: str
            required: true
            choices: [SNS, EMAIL]
          address:
            description:
              - An e-mail address (V(EMAIL)) or an SNS topic ARN (V(SNS)), for example
                V(arn:aws:sns:eu-west-1:123456789012:tinyllama-budget). The topic's policy must
                let V(budgets.amazonaws.com) publish to it.
            type: str
            required: true
  account_id:
    description:
      - The 12-digit account that owns the budget. Defaults to the caller's account
        (C(sts get_caller_identity)).
    type: str
  tags:
    description:
      - The budget's tags (AWS Budgets resource tags). If not set, tags are not modified.
      - With O(state=absent), the tags the budget must carry to be deleted.
    type: dict
    aliases: [resource_tags]
  purge_tags:
    description:
      - If V(true) and O(tags) is set, tags not in O(tags) are removed from the budget.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Monthly cost budget with a warning and the budget-killer trigger
  tlops.stack.tl_budget:
    name: tinyllama-monthly
    limit_amount: 20
    limit_unit: USD
    cost_filters:
      TagKeyValue: ["user:Project$tinyllama"]
    notifications:
      - threshold: 75
        subscribers:
          - subscription_type: EMAIL
            address: ops@example.com
          - subscription_type: SNS
            address: arn:aws:sns:eu-west-1:123456789012:tinyllama-budget-warning
      - threshold: 105
        subscribers:
          - subscription_type: SNS
            address: arn:aws:sns:eu-west-1:123456789012:tinyllama-budget-killer
    tags:
      Project: tinyllama
      Role: guardrails

- name: Delete the budget (only if it is tagged Project=tinyllama)
  tlops.stack.tl_budget:
    name: tinyllama-monthly
    state: absent
    tags:
      Project: tinyllama
"""

RETURN = r"""
name:
  description: The budget's name.
  returned: always
  type: str
  sample: tinyllama-monthly
arn:
  description: The budget's ARN.
  returned: always
  type: str
  sample: arn:aws:budgets::123456789012:budget/tinyllama-monthly
account_id:
  description: The account that owns the budget.
  returned: always
  type: str
  sample: "123456789012"
limit_amount:
  description: The budget limit.
  returned: when O(state=present)
  type: float
  sample: 20.0
limit_unit:
  description: The currency of the limit.
  returned: when O(state=present)
  type: str
  sample: USD
time_unit:
  description: The budget period.
  returned: when O(state=present)
  type: str
  sample: MONTHLY
cost_filters:
  description: The cost filters, each list sorted.
  returned: when O(state=present)
  type: dict
  sample: {"TagKeyValue": ["user:Project$tinyllama"]}
notifications:
  description:
    - The notifications as given, normalised (defaults filled in, sorted, subscribers sorted);
      when O(notifications) is not given, those the budget has (subscribers V(null) where they
      cannot be read).
  returned: when O(state=present)
  type: list
  elements: dict
  sample:
    - notification_type: ACTUAL
      comparison_operator: GREATER_THAN
      threshold: 75.0
      threshold_type: PERCENTAGE
      subscribers:
        - {subscription_type: EMAIL, address: ops@example.com}
tags:
  description: The budget's tags; V(null) where they cannot be read (the local stand-in).
  returned: when O(state=present)
  type: dict
  sample: {"Project": "tinyllama", "Role": "guardrails"}
diff:
  description:
    - Before and after (limit, unit, time unit, filters, notifications with subscribers, tags).
  returned: in diff mode
  type: dict
"""

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    refuse_untagged_delete,
    result,
    retrying_client,
    run,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_budget.read import budget_arn
from ansible_collections.tlops.stack.plugins.module_utils.tl_budget.states import (
    ensure_absent,
    ensure_present,
)
from ansible_collections.tlops.stack.plugins.module_utils.tl_budget.validate import desired_state


def caller_account(module):
    sts = retrying_client(module, "sts")
    return sts.get_caller_identity(aws_retry=True)["Account"]


def ensure(module):
    """Glue: the input checked, the account and a client from the module, the state, the exit."""
    params = module.params
    refuse_untagged_delete(params)
    desired = desired_state(params)
    account = params["account_id"] or caller_account(module)
    arn = budget_arn(module.region, account, params["name"])
    client = retrying_client(module, "budgets")
    identity = {"name": params["name"], "arn": arn, "account_id": account}
    if desired is None:
        changed, before = ensure_absent(
            client, account, arn, params, module.check_mode, module.warn
        )
        return result(module, changed, before, None, **identity)
    changed, before, after = ensure_present(
        client, account, arn, desired, params, module.check_mode, module.warn
    )
    returned = {
        k: after[k] for k in ("limit_amount", "limit_unit", "time_unit", "cost_filters", "tags")
    }
    returned["notifications"] = (
        desired["notifications"] if desired["notifications"] is not None else after["notifications"]
    )
    return result(module, changed, before, after, **identity, **returned)


def main():
    subscriber = dict(
        subscription_type=dict(type="str", required=True, choices=["SNS", "EMAIL"]),
        address=dict(type="str", required=True),
    )
    notification = dict(
        notification_type=dict(type="str", default="ACTUAL", choices=["ACTUAL", "FORECASTED"]),
        comparison_operator=dict(
            type="str", default="GREATER_THAN", choices=["GREATER_THAN", "LESS_THAN", "EQUAL_TO"]
        ),
        threshold=dict(type="float", required=True),
        threshold_type=dict(
            type="str", default="PERCENTAGE", choices=["PERCENTAGE", "ABSOLUTE_VALUE"]
        ),
        subscribers=dict(type="list", elements="dict", required=True, options=subscriber),
    )
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        limit_amount=dict(type="float"),
        limit_unit=dict(type="str", default="USD"),
        time_unit=dict(type="str", default="MONTHLY", choices=["MONTHLY", "QUARTERLY", "ANNUALLY"]),
        budget_type=dict(type="str", default="COST", choices=["COST"]),
        cost_filters=dict(type="dict"),
        notifications=dict(type="list", elements="dict", options=notification),
        account_id=dict(type="str"),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ["limit_amount"])],
        supports_check_mode=True,
    )
    run(module, lambda: ensure(module))


if __name__ == "__main__":
    main()

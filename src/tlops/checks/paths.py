"""Network paths, proven from what is deployed: for every target a component declares in
access.yml, the link that carries its traffic, or the link that is missing.

The stand-in routes nothing and enforces no security group, so "it worked locally" says
nothing about a VPC. This module reads the deployed VPC (subnets, route tables, internet
and NAT gateways, VPC endpoints, security groups) and each component's placement, from the
stand-in or an account through the same calls, and accepts a path only as one of:

- a gateway endpoint of the service on the route table of the component's subnet;
- an interface endpoint of the service with private DNS (and DNS on in the VPC) whose
  security group admits 443 from the component's group. Such an endpoint captures the
  service's name for the whole VPC: every component there reaches that service through
  it or not at all, whatever public path it also has;
- a public address (the node's, on every start) plus a default route to an internet gateway,
  or, for what has no public address, a default route to a NAT gateway;
- for Redis, an ingress rule on the queue's group for 6379 from the component's group;
- for a Lambda outside any VPC, AWS's own network (nothing of ours to prove).

Every path also needs the component's own group to let the traffic out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from tlops.common.pages import all_items

REDIS_PORT = 6379
HTTPS_PORT = 443
_GATEWAY_SERVICES = ("s3", "dynamodb")


class Proof(NamedTuple):
    component: str
    target: str
    status: str  # ok | missing | skipped
    detail: str  # the path that proves it, or the missing link, or why nothing is proven

    @property
    def ok(self) -> bool:
        return self.status != "missing"

    def line(self) -> str:
        mark = {"ok": "ok", "missing": "MISSING", "skipped": "skip"}[self.status]
        return f"{self.component} → {self.target}: {mark}: {self.detail}"


class Placement(NamedTuple):
    """Where a component runs: its subnets and groups, and whether it has a public address."""

    runs_in: str  # lambda | lambda-vpc | instance
    subnet_ids: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()
    public_address: bool = False
    public_reason: str = ""
    env: Mapping[str, str] = {}
    problem: str = ""  # why it could not be placed (not deployed, ...)


class Network(NamedTuple):
    """The deployed VPC, as read by `read_network`."""

    vpc_id: str
    cidr: str
    dns: bool  # enableDnsSupport and enableDnsHostnames
    subnets: dict[str, dict[str, Any]]
    route_tables: list[dict[str, Any]]
    endpoints: list[dict[str, Any]]
    groups: dict[str, dict[str, Any]]
    internet_gateways: tuple[str, ...]
    nat_gateways: tuple[str, ...]

    def route_table_of(self, subnet_id: str) -> dict[str, Any] | None:
        """The subnet's route table: its explicit association, else the VPC's main table."""
        main = None
        for table in self.route_tables:
            for association in table.get("Associations", []):
                if association.get("SubnetId") == subnet_id:
                    return table
                if association.get("Main"):
                    main = table
        return main


# --- reading what is deployed -----------------------------------------------------------
def read_network(ec2: Any, vpc_id: str) -> Network:
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    dns = all(
        ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)[key]["Value"]
        for name, key in (
            ("enableDnsSupport", "EnableDnsSupport"),
            ("enableDnsHostnames", "EnableDnsHostnames"),
        )
    )
    subnets = {s["SubnetId"]: s for s in all_items(ec2.describe_subnets, "Subnets", Filters=in_vpc)}
    tables = all_items(ec2.describe_route_tables, "RouteTables", Filters=in_vpc)
    endpoints = [
        e
        for e in all_items(ec2.describe_vpc_endpoints, "VpcEndpoints", Filters=in_vpc)
        if e.get("State", "available").lower() in ("available", "pending")
    ]
    groups = {
        g["GroupId"]: g
        for g in all_items(ec2.describe_security_groups, "SecurityGroups", Filters=in_vpc)
    }
    igws = all_items(
        ec2.describe_internet_gateways,
        "InternetGateways",
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}],
    )
    nats = all_items(ec2.describe_nat_gateways, "NatGateways", Filter=in_vpc)
    return Network(
        vpc_id=vpc_id,
        cidr=vpc["CidrBlock"],
        dns=dns,
        subnets=subnets,
        route_tables=tables,
        endpoints=endpoints,
        groups=groups,
        internet_gateways=tuple(g["InternetGatewayId"] for g in igws),
        nat_gateways=tuple(n["NatGatewayId"] for n in nats if n.get("State") == "available"),
    )


def lambda_placement(lam: Any, function_name: str, runs_in: str) -> Placement:
    try:
        config = lam.get_function_configuration(FunctionName=function_name)
    except (BotoCoreError, ClientError) as exc:  # any failure: not deployed as declared
        return Placement(runs_in, problem=f"function {function_name} not found ({exc})")
    vpc = config.get("VpcConfig") or {}
    env = dict((config.get("Environment") or {}).get("Variables") or {})
    subnets, groups = tuple(vpc.get("SubnetIds") or ()), tuple(vpc.get("SecurityGroupIds") or ())
    if runs_in == "lambda-vpc" and not subnets:
        return Placement(runs_in, env=env, problem=f"{function_name} runs outside the VPC")
    if runs_in == "lambda" and subnets:
        return Placement(
            runs_in,
            env=env,
            problem=f"{function_name} runs in a VPC, where its paths are not proven "
            "(access.yml: lambda, outside any VPC)",
        )
    reason = "a Lambda in a VPC never has a public address"
    return Placement(runs_in, subnets, groups, False, reason, env)


def instance_placement(subnet: Mapping[str, Any], instance: Mapping[str, Any]) -> Placement:
    """The node after a cold boot: its subnet and groups, and the address a start gives it."""
    subnet_id = instance.get("SubnetId", "")
    groups = tuple(g["GroupId"] for g in instance.get("SecurityGroups", []))
    if subnet.get("MapPublicIpOnLaunch"):
        public, reason = True, f"subnet {subnet_id} gives it a public address on every start"
    elif instance.get("PublicIpAddress"):
        public, reason = True, "it holds a public address now (lost on its next stop and start)"
    else:
        public, reason = False, f"subnet {subnet_id} gives no public address on start"
    return Placement("instance", (subnet_id,), groups, public, reason)


# --- judging one link -------------------------------------------------------------------
def _protocol_ok(rule: Mapping[str, Any], port: int) -> bool:
    protocol = str(rule.get("IpProtocol", ""))
    if protocol == "-1":
        return True
    if protocol not in ("tcp", "6"):
        return False
    return int(rule.get("FromPort", -1)) <= port <= int(rule.get("ToPort", -1))


def _rule_admits(
    rule: Mapping[str, Any], port: int, group_ids: Iterable[str], cidrs: list[str]
) -> bool:
    if not _protocol_ok(rule, port):
        return False
    if {pair.get("GroupId") for pair in rule.get("UserIdGroupPairs", [])} & set(group_ids):
        return True
    for block in rule.get("IpRanges", []):
        network = ipaddress.ip_network(block.get("CidrIp", "255.255.255.255/32"), strict=False)
        if any(ipaddress.ip_network(c, strict=False).subnet_of(network) for c in cidrs):
            return True
    return False


def _admits(group: Mapping[str, Any], port: int, sources: Iterable[str], cidrs: list[str]) -> bool:
    return any(_rule_admits(rule, port, sources, cidrs) for rule in group.get("IpPermissions", []))


def _lets_out(
    network: Network, placement: Placement, port: int, to_groups: Iterable[str], to_cidrs: list[str]
) -> str | None:
    """None when one of the component's groups lets the traffic out; else what is missing."""
    for group_id in placement.group_ids:
        for rule in network.groups.get(group_id, {}).get("IpPermissionsEgress", []):
            if _rule_admits(rule, port, to_groups, to_cidrs):
                return None
    return f"its groups {', '.join(placement.group_ids) or '(none)'} let nothing out on {port}"


def _subnet_cidrs(network: Network, placement: Placement) -> list[str]:
    return [network.subnets[s]["CidrBlock"] for s in placement.subnet_ids if s in network.subnets]


def _default_route(table: Mapping[str, Any] | None) -> dict[str, Any] | None:
    for route in (table or {}).get("Routes", []):
        if (
            route.get("DestinationCidrBlock") == "0.0.0.0/0"
            and route.get("State", "active") == "active"
        ):
            return route
    return None


def public_path(network: Network, placement: Placement) -> tuple[str | None, str]:
    """(the path, or None, and what is missing): the internet from the component."""
    subnet_id = placement.subnet_ids[0] if placement.subnet_ids else ""
    table = network.route_table_of(subnet_id)
    route = _default_route(table)
    where = (
        f"route table {table['RouteTableId']}" if table else f"subnet {subnet_id} (no route table)"
    )
    if route is None:
        return None, f"no default route on {where}"
    gateway, nat = route.get("GatewayId", ""), route.get("NatGatewayId", "")
    if nat:
        if nat in network.nat_gateways:
            return f"default route to NAT gateway {nat} on {where}", ""
        return (
            None,
            f"the default route on {where} goes to NAT gateway {nat}, which is not available",
        )
    if gateway in network.internet_gateways:
        if placement.public_address:
            return f"{placement.public_reason}; default route to {gateway} on {where}", ""
        return (
            None,
            f"default route to {gateway} on {where}, "
            f"but no public address: {placement.public_reason}",
        )
    return (
        None,
        f"the default route on {where} goes to {gateway or 'nowhere'}, not an internet gateway",
    )


def service_path(
    network: Network, placement: Placement, service: str, region: str
) -> tuple[str | None, str]:
    name = f"com.amazonaws.{region}.{service}"
    missing = []
    subnet_id = placement.subnet_ids[0] if placement.subnet_ids else ""
    table = network.route_table_of(subnet_id)
    endpoints = [e for e in network.endpoints if e.get("ServiceName") == name]
    for endpoint in endpoints:
        if endpoint.get("VpcEndpointType", "Gateway") != "Gateway":
            continue
        if table and table["RouteTableId"] in endpoint.get("RouteTableIds", []):
            return (
                f"gateway endpoint {endpoint['VpcEndpointId']} "
                f"on route table {table['RouteTableId']}",
                "",
            )
        missing.append(
            f"gateway endpoint {endpoint['VpcEndpointId']} is not on the subnet's route table"
        )
    # With private DNS on, an interface endpoint's private hosted zone answers for the
    # service's public name ("resolves to the private IP addresses of the endpoint network
    # interfaces in the VPC": CreateVpcEndpoint, PrivateDnsEnabled) in the whole VPC, so
    # the component's calls go to the endpoint and nowhere else: its verdict is the path's,
    # with no fallback to a public path.
    # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVpcEndpoint.html
    # https://docs.aws.amazon.com/vpc/latest/privatelink/privatelink-access-aws-services.html
    captured = [
        e
        for e in endpoints
        if e.get("VpcEndpointType") == "Interface" and e.get("PrivateDnsEnabled") and network.dns
    ]
    for endpoint in captured:
        proven, why = _interface_endpoint(network, placement, endpoint)
        if proven:
            return proven, ""
        return None, f"{why} (its private DNS captures {name} for all of {network.vpc_id})"
    for endpoint in endpoints:
        if endpoint.get("VpcEndpointType") == "Interface":
            missing.append(_interface_endpoint(network, placement, endpoint)[1])
    if not endpoints:
        missing.append(f"no endpoint of {name} in {network.vpc_id}")
    path, why = public_path(network, placement)
    if path:
        return path, ""
    return None, "; ".join([*missing, why])


def _interface_endpoint(
    network: Network, placement: Placement, endpoint: Mapping[str, Any]
) -> tuple[str | None, str]:
    ident = endpoint["VpcEndpointId"]
    if not endpoint.get("PrivateDnsEnabled"):
        return (
            None,
            f"interface endpoint {ident} has private DNS off "
            "(the API's host name would not reach it)",
        )
    if not network.dns:
        return (
            None,
            f"interface endpoint {ident} needs DNS support and hostnames on in {network.vpc_id}",
        )
    group_ids = [g["GroupId"] for g in endpoint.get("Groups", [])]
    cidrs = _subnet_cidrs(network, placement)
    if not any(
        _admits(network.groups.get(g, {}), HTTPS_PORT, placement.group_ids, cidrs)
        for g in group_ids
    ):
        return None, (
            f"interface endpoint {ident} answers to groups {', '.join(group_ids) or '(none)'}, "
            f"which admit nothing on 443 from {', '.join(placement.group_ids) or 'its groups'}"
        )
    blocked = _lets_out(network, placement, HTTPS_PORT, group_ids, [network.cidr])
    if blocked:
        return None, f"interface endpoint {ident} is there, but {blocked}"
    return (
        f"interface endpoint {ident} (private DNS), group {', '.join(group_ids)} "
        f"admits 443 from {', '.join(placement.group_ids)}",
        "",
    )


def redis_path(
    network: Network, placement: Placement, redis_groups: Iterable[str]
) -> tuple[str | None, str]:
    redis_groups = list(redis_groups)
    cidrs = _subnet_cidrs(network, placement)
    for group_id in redis_groups:
        if _admits(network.groups.get(group_id, {}), REDIS_PORT, placement.group_ids, cidrs):
            blocked = _lets_out(network, placement, REDIS_PORT, [group_id], [network.cidr])
            if blocked:
                return None, f"the queue's group {group_id} admits it, but {blocked}"
            return f"group {group_id} admits {REDIS_PORT} from {', '.join(placement.group_ids)}", ""
    return None, (
        f"the queue's groups {', '.join(redis_groups) or '(none)'} admit nothing on {REDIS_PORT} "
        f"from {', '.join(placement.group_ids) or 'its groups'}"
    )


# --- the whole check --------------------------------------------------------------------
def prove(
    name: str,
    component: Mapping[str, Any],
    placement: Placement,
    network: Network | None,
    *,
    region: str,
    redis_groups: Iterable[str] | None,
    fill: Callable[[str], str] = lambda text: text,
) -> list[Proof]:
    """One Proof per target `component` declares; `redis_groups` None: no queue is deployed."""
    proofs = []
    for reach in component.get("reaches") or []:
        target = fill(str(reach["target"]))
        skip = reach.get("unless_env")
        if placement.problem:
            proofs.append(Proof(name, target, "missing", placement.problem))
        elif skip and placement.env.get(skip):
            proofs.append(
                Proof(name, target, "skipped", f"not needed: the function's {skip} is set")
            )
        elif placement.runs_in == "lambda":
            proofs.append(Proof(name, target, "ok", "outside any VPC: AWS's own network"))
        elif network is None:
            proofs.append(Proof(name, target, "missing", "the project's VPC is not deployed"))
        elif target == "redis" and redis_groups is None:
            proofs.append(
                Proof(
                    name,
                    target,
                    "skipped",
                    "no ElastiCache queue is deployed here "
                    "(enable_redis is false, or teardown idle removed it)",
                )
            )
        else:
            path, missing = _path(network, placement, target, region, redis_groups or ())
            proofs.append(
                Proof(name, target, "ok" if path else "missing", path or f"no path: {missing}")
            )
    return proofs


def _path(
    network: Network, placement: Placement, target: str, region: str, redis_groups: Iterable[str]
) -> tuple[str | None, str]:
    if target == "redis":
        return redis_path(network, placement, redis_groups)
    if target.startswith("service:"):
        service = target.removeprefix("service:")
        path, missing = service_path(network, placement, service, region)
        if path and service not in _GATEWAY_SERVICES and "gateway endpoint" in path:
            return None, missing  # unreachable: only S3 and DynamoDB have gateway endpoints
        return path, missing
    path, missing = public_path(network, placement)
    return path, missing

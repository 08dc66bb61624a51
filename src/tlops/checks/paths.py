"""Network paths, proven from what is deployed: for every target a component declares in
access.yml, the link that carries its traffic, or the link that is missing.

The stand-in routes nothing and enforces no security group or network ACL, so "it worked
locally" says nothing about a VPC. This module reads the deployed VPC (subnets, route tables,
network ACLs, internet and NAT gateways, VPC endpoints and their policies, security groups,
prefix lists) and each component's placement, from the stand-in or an account through the
same calls, and accepts a path only as one of:

- a gateway endpoint of the service whose route carries every address of the service's
  prefix list from the component's subnet (longest prefix match), and whose policy allows
  the component's calls to the service. Its route captures those addresses: its verdict
  is the path's, with no fallback to a public path;
- an interface endpoint of the service with private DNS (and DNS on in the VPC) whose
  security group admits 443 from the component, and whose policy allows its calls. Such an
  endpoint captures the service's name for the whole VPC: every component there reaches
  that service through it or not at all, whatever public path it also has;
- a public address (for the node: the one its next start gives it) plus a default route to
  an internet gateway, or, for what has no public address, a default route to an available
  public NAT gateway in a subnet whose own default route goes to an internet gateway;
- for Redis, an ingress rule on the queue's group for 6379 from the component, to each of
  the queue's subnets;
- for a Lambda outside any VPC, AWS's own network (nothing of ours to prove).

On every path the traffic must also get out and its answers back: an egress rule of the
component's own group (groups are stateful, so the answers need no rule), and the network
ACL of each subnet boundary the connection crosses, both ways (ACLs are stateless: the
answers, to the client's ephemeral ports, need rules of their own). A rule counts for an
address range only when it contains all of it; a deny rule counts against it when it
touches any of it. Each rule below names the AWS page it follows. A component in several
subnets needs its paths from each of them.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tlops.checks import access
from tlops.checks.vpc import (
    _GATEWAY_SERVICES,
    _IAM_PREFIX,
    HTTPS_PORT,
    INTERNET,
    NAT_EPHEMERAL,
    REDIS_PORT,
    Network,
    Placement,
    Proof,
    Queue,
    Request,
    _acl_stops,
    _acls_pass,
    _admits,
    _lets_out,
    route_target,
    route_to,
)


# --- judging one path -------------------------------------------------------------------
def public_path(network: Network, placement: Placement, subnet_id: str) -> tuple[str | None, str]:
    """(the path, or None, and what is missing): the internet from the component."""
    table = network.route_table_of(subnet_id)
    where = (
        f"route table {table['RouteTableId']}" if table else f"subnet {subnet_id} (no route table)"
    )
    route, why = route_to(network, table, INTERNET)
    if route is None:
        return None, why
    target = route_target(route)
    if route.get("NatGatewayId"):
        return _through_nat(network, placement, subnet_id, target, where)
    if target not in network.internet_gateways:
        return None, f"the default route on {where} goes to {target}, not an internet gateway"
    if not placement.public_address:
        return (
            None,
            f"default route to {target} on {where}, but no public address: "
            f"{placement.public_reason}",
        )
    blocked = _out_to_the_internet(network, placement, subnet_id)
    if blocked:
        return None, blocked
    return f"{placement.public_reason}; default route to {target} on {where}", ""


def _out_to_the_internet(network: Network, placement: Placement, subnet_id: str) -> str | None:
    """What stops HTTPS out of the component's group and subnet to any host, or None."""
    return _lets_out(network, placement, HTTPS_PORT, (), INTERNET) or _acls_pass(
        network, subnet_id, to_cidr=INTERNET, port=HTTPS_PORT, answer_ports=placement.answer_ports
    )


def _through_nat(
    network: Network, placement: Placement, subnet_id: str, nat: str, where: str
) -> tuple[str | None, str]:
    """The way out through a NAT gateway: available and public, its own subnet routed to an
    internet gateway, and the ACL of its subnet letting the connection in from the
    component, out to the internet and the answers back (the NAT gateway's own side of
    them on its ports 1024-65535)."""
    if nat not in network.nat_gateways:
        return None, (
            f"the default route on {where} goes to NAT gateway {nat}, "
            "which is not an available public one"
        )
    nat_subnet = network.nat_gateways[nat]
    nat_table = network.route_table_of(nat_subnet)
    onward, why = route_to(network, nat_table, INTERNET)
    if onward is not None and route_target(onward) not in network.internet_gateways:
        why = f"its default route goes to {route_target(onward)}, not an internet gateway"
    if why:
        return None, f"NAT gateway {nat} in subnet {nat_subnet} has no way on: {why}"
    blocked = _out_to_the_internet(network, placement, subnet_id)
    if not blocked and nat_subnet != subnet_id:
        acl = network.network_acl_of(nat_subnet) or {}
        own = network.cidr_of(subnet_id)
        for outbound, cidr, ports, what in (
            (False, own, (HTTPS_PORT, HTTPS_PORT), f"in from {own} on {HTTPS_PORT}"),
            (True, INTERNET, (HTTPS_PORT, HTTPS_PORT), f"out to the internet on {HTTPS_PORT}"),
            (False, INTERNET, NAT_EPHEMERAL, "answers in from the internet"),
            (True, own, placement.answer_ports, f"answers out to {own}"),
        ):
            stopped = _acl_stops(acl, outbound=outbound, cidr=cidr, ports=ports)
            if stopped:
                blocked = (
                    f"NAT gateway {nat}'s network ACL {acl.get('NetworkAclId', '(none)')} "
                    f"lets no TCP {what}: {stopped}"
                )
                break
    if blocked:
        return None, blocked
    return f"default route to NAT gateway {nat} on {where}", ""


def service_path(
    network: Network,
    placement: Placement,
    subnet_id: str,
    service: str,
    region: str,
    requests: Sequence[Request] = (),
) -> tuple[str | None, str]:
    name = f"com.amazonaws.{region}.{service}"
    missing = []
    table = network.route_table_of(subnet_id)
    endpoints = [e for e in network.endpoints if e.get("ServiceName") == name]
    calls = _calls_to(service, requests)
    for endpoint in endpoints:
        if endpoint.get("VpcEndpointType", "Gateway") != "Gateway":
            continue
        if service not in _GATEWAY_SERVICES:
            missing.append(f"{endpoint['VpcEndpointId']}: {service} has no gateway endpoints")
        elif table and table["RouteTableId"] in endpoint.get("RouteTableIds", []):
            return _gateway_endpoint(network, placement, subnet_id, table, endpoint, calls)
        else:
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
        proven, why = _interface_endpoint(network, placement, subnet_id, endpoint, calls)
        if proven:
            return proven, ""
        return None, f"{why} (its private DNS captures {name} for all of {network.vpc_id})"
    for endpoint in endpoints:
        if endpoint.get("VpcEndpointType") == "Interface":
            missing.append(_interface_endpoint(network, placement, subnet_id, endpoint, calls)[1])
    if not endpoints:
        missing.append(f"no endpoint of {name} in {network.vpc_id}")
    path, why = public_path(network, placement, subnet_id)
    if path:
        return path, ""
    return None, "; ".join([*missing, why])


def _endpoint_route(table: Mapping[str, Any], endpoint: Mapping[str, Any]) -> dict | None:
    """The table's route to the gateway endpoint's prefix list, if it has one."""
    ident = endpoint.get("VpcEndpointId")
    return next(
        (
            r
            for r in table.get("Routes", [])
            if r.get("GatewayId") == ident and r.get("DestinationPrefixListId")
        ),
        None,
    )


def _gateway_endpoint(
    network: Network,
    placement: Placement,
    subnet_id: str,
    table: Mapping[str, Any],
    endpoint: Mapping[str, Any],
    calls: Sequence[Request],
) -> tuple[str | None, str]:
    """A gateway endpoint on the subnet's route table: the service's addresses all routed to
    it, and the component's group and subnet ACL letting HTTPS out to them and the answers
    back ("When your instances access Amazon S3 or DynamoDB through a gateway endpoint, they
    access the service using its public endpoint. The security groups for these instances
    must allow traffic to and from the service ... The network ACLs for the subnets for these
    instances must also allow traffic to and from the service":
    https://docs.aws.amazon.com/vpc/latest/privatelink/gateway-endpoints.html), and its
    policy allowing the calls."""
    ident, table_id = endpoint["VpcEndpointId"], table["RouteTableId"]
    route = _endpoint_route(table, endpoint)
    if route is None:
        return (
            None,
            f"gateway endpoint {ident} lists route table {table_id}, which has no route to it",
        )
    prefix_list = route["DestinationPrefixListId"]
    cidrs = network.prefix_lists.get(prefix_list, ())
    if not cidrs:
        return None, f"gateway endpoint {ident}: prefix list {prefix_list}'s addresses are unknown"
    for cidr in cidrs:
        blocked = _to_the_endpoint(network, placement, subnet_id, table, route, cidr)
        if blocked:
            return None, f"gateway endpoint {ident} is on route table {table_id}, but {blocked}"
    refused = _policy_refuses(endpoint, calls)
    if refused:
        return None, refused
    return f"gateway endpoint {ident} on route table {table_id}", ""


def _to_the_endpoint(
    network: Network,
    placement: Placement,
    subnet_id: str,
    table: Mapping[str, Any],
    endpoint_route: Mapping[str, Any],
    cidr: str,
) -> str | None:
    """What keeps HTTPS to one range of the service's prefix list from the gateway endpoint's
    route, out of the component's group or through its subnet's ACL; None if nothing."""
    carrier, why = route_to(network, table, cidr)
    if carrier is None:
        return why
    if carrier is not endpoint_route:
        listed = endpoint_route["DestinationPrefixListId"]
        return f"{cidr} of {listed} goes to {route_target(carrier)}"
    return _lets_out(network, placement, HTTPS_PORT, (), cidr) or _acls_pass(
        network, subnet_id, to_cidr=cidr, port=HTTPS_PORT, answer_ports=placement.answer_ports
    )


def _interface_endpoint(
    network: Network,
    placement: Placement,
    subnet_id: str,
    endpoint: Mapping[str, Any],
    calls: Sequence[Request],
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
    own = network.cidr_of(subnet_id)
    if not any(_admits(network, g, HTTPS_PORT, placement.group_ids, own) for g in group_ids):
        return None, (
            f"interface endpoint {ident} answers to groups {', '.join(group_ids) or '(none)'}, "
            f"which admit nothing on 443 from {', '.join(placement.group_ids) or 'its groups'}"
        )
    blocked = _within_the_vpc(
        network, placement, subnet_id, HTTPS_PORT, group_ids, endpoint.get("SubnetIds") or ()
    )
    if blocked:
        return None, f"interface endpoint {ident} is there, but {blocked}"
    refused = _policy_refuses(endpoint, calls)
    if refused:
        return None, refused
    return (
        f"interface endpoint {ident} (private DNS), group {', '.join(group_ids)} "
        f"admits 443 from {', '.join(placement.group_ids)}",
        "",
    )


def _within_the_vpc(
    network: Network,
    placement: Placement,
    subnet_id: str,
    port: int,
    to_groups: Sequence[str],
    to_subnets: Iterable[str],
) -> str | None:
    """What stops a connection from the component to something in each of `to_subnets`
    (the local route, its own group's egress, the ACLs of both subnets); None if nothing."""
    to_subnets = list(to_subnets)
    if not to_subnets:
        return "the subnets it is in are not known"
    table = network.route_table_of(subnet_id)
    for subnet in to_subnets:
        cidr = network.cidr_of(subnet)
        if not cidr:
            return f"its subnet {subnet} is not in {network.vpc_id}"
        route, why = route_to(network, table, cidr)
        if route is None or route_target(route) != "local":
            return why or f"{cidr} is routed to {route_target(route or {})}, not within the VPC"
        blocked = _lets_out(network, placement, port, to_groups, cidr) or _acls_pass(
            network,
            subnet_id,
            to_cidr=cidr,
            to_subnet=subnet,
            port=port,
            answer_ports=placement.answer_ports,
        )
        if blocked:
            return blocked
    return None


def redis_path(
    network: Network, placement: Placement, subnet_id: str, queue: Queue
) -> tuple[str | None, str]:
    own = network.cidr_of(subnet_id)
    for group_id in queue.group_ids:
        if _admits(network, group_id, REDIS_PORT, placement.group_ids, own):
            blocked = _within_the_vpc(
                network, placement, subnet_id, REDIS_PORT, [group_id], queue.subnet_ids
            )
            if blocked:
                return None, f"the queue's group {group_id} admits it, but {blocked}"
            return f"group {group_id} admits {REDIS_PORT} from {', '.join(placement.group_ids)}", ""
    return None, (
        f"the queue's groups {', '.join(queue.group_ids) or '(none)'} admit nothing on "
        f"{REDIS_PORT} from {', '.join(placement.group_ids) or 'its groups'}"
    )


# --- judging an endpoint's policy -------------------------------------------------------
_UNJUDGED = ("NotAction", "NotResource", "NotPrincipal", "Condition")


def _calls_to(service: str, requests: Iterable[Request]) -> list[Request]:
    prefix = _IAM_PREFIX.get(service, service)
    return [r for r in requests if r[0].split(":", 1)[0].lower() == prefix]


def _for_everyone(statement: Mapping[str, Any]) -> bool:
    principal = statement.get("Principal", "*")
    if isinstance(principal, Mapping):
        principal = principal.get("AWS", "")
    listed = [principal] if isinstance(principal, str) else list(principal)
    return listed == ["*"]


def _policy_refuses(endpoint: Mapping[str, Any], calls: Sequence[Request]) -> str | None:
    """None when the endpoint's policy allows each of the component's calls through it; else
    the first it refuses. "An endpoint policy does not override or replace identity-based
    policies": a call passes only if it allows it too; without one, "we attach the default
    endpoint policy", full access
    (https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html). Judged
    with access.allows on the statements it reads (for every principal, with Action and
    Resource, no Condition): an Allow with anything else does not count, and a Deny with
    anything else that could touch a call leaves the path unproven."""
    document = endpoint.get("PolicyDocument")
    if not document or not calls:
        return None
    policy = json.loads(document) if isinstance(document, str) else document
    found = policy.get("Statement") or []
    statements = [found] if isinstance(found, Mapping) else list(found)
    kind, ident = endpoint.get("VpcEndpointType", "Gateway").lower(), endpoint["VpcEndpointId"]
    judged = []
    for statement in statements:
        plain = _for_everyone(statement) and not any(k in statement for k in _UNJUDGED)
        if plain:
            judged.append(statement)
        elif statement.get("Effect") == "Deny" and _may_deny(statement, calls):
            return (
                f"{kind} endpoint {ident}'s policy has a Deny "
                f"{statement.get('Sid') or '(no Sid)'} this check cannot judge "
                f"(a principal, Not* element or condition)"
            )
    for action, resource, keys in calls:
        if not access.allows({"Statement": judged}, action, resource, keys):
            return f"{kind} endpoint {ident}'s policy does not allow {action} on {resource}"
    return None


def _may_deny(statement: Mapping[str, Any], calls: Sequence[Request]) -> bool:
    if "NotAction" in statement:
        return True
    patterns = statement.get("Action", [])
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    return any(
        fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns for action, _, _ in calls
    )


# --- the whole check --------------------------------------------------------------------
def prove(
    name: str,
    component: Mapping[str, Any],
    placement: Placement,
    network: Network | None,
    *,
    region: str,
    queue: Queue | None,
    requests: Sequence[Request] = (),
    fill: Callable[[str], str] = lambda text: text,
) -> list[Proof]:
    """One Proof per target `component` declares; `queue` None: no queue is deployed.
    `requests`: the calls the component makes (access.declared_requests), which an
    endpoint's policy must allow."""
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
        elif target == "redis" and queue is None:
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
            path, missing = _path(network, placement, target, region, queue, requests)
            proofs.append(
                Proof(name, target, "ok" if path else "missing", path or f"no path: {missing}")
            )
    return proofs


def _path(
    network: Network,
    placement: Placement,
    target: str,
    region: str,
    queue: Queue | None,
    requests: Sequence[Request],
) -> tuple[str | None, str]:
    """The path from each of the component's subnets: all of them must have one."""
    found = [
        (subnet, _path_from(network, placement, subnet, target, region, queue, requests))
        for subnet in placement.subnet_ids
    ]
    if not found:
        return None, "it is in no subnet"
    if len(found) == 1:
        return found[0][1]
    missing = [f"from {subnet}: {why}" for subnet, (path, why) in found if not path]
    if missing:
        return None, "; ".join(missing)
    return "; ".join(f"from {subnet}: {path}" for subnet, (path, _) in found), ""


def _path_from(
    network: Network,
    placement: Placement,
    subnet_id: str,
    target: str,
    region: str,
    queue: Queue | None,
    requests: Sequence[Request],
) -> tuple[str | None, str]:
    if target == "redis":
        return redis_path(network, placement, subnet_id, queue or Queue((), ()))
    if target.startswith("service:"):
        service = target.removeprefix("service:")
        return service_path(network, placement, subnet_id, service, region, requests)
    return public_path(network, placement, subnet_id)

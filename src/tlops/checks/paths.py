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
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from tlops.checks import access
from tlops.common.pages import all_items

REDIS_PORT = 6379
HTTPS_PORT = 443
INTERNET = "0.0.0.0/0"  # a host on the internet: its address is not known, so all of them
_GATEWAY_SERVICES = ("s3", "dynamodb")
_IAM_PREFIX = {"monitoring": "cloudwatch"}  # endpoint service name → IAM action prefix

Ports = tuple[int, int]
Request = tuple[str, str, Mapping[str, str]]  # (action, resource, condition keys)

# The client picks the ports its answers come back to, by what it is: "Many Linux kernels
# (including the Amazon Linux kernel) use ports 32768-61000", "A NAT gateway uses ports
# 1024-65535", "AWS Lambda functions use ports 1024-65535".
# https://docs.aws.amazon.com/vpc/latest/userguide/nacl-ephemeral-ports.html
LINUX_EPHEMERAL: Ports = (32768, 61000)
LAMBDA_EPHEMERAL: Ports = (1024, 65535)
NAT_EPHEMERAL: Ports = (1024, 65535)


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

    @property
    def answer_ports(self) -> Ports:
        """The ephemeral ports its connections' answers come back to."""
        return LINUX_EPHEMERAL if self.runs_in == "instance" else LAMBDA_EPHEMERAL


class Queue(NamedTuple):
    """The deployed queue: its security groups and the subnets its nodes are in."""

    group_ids: tuple[str, ...]
    subnet_ids: tuple[str, ...]


class Network(NamedTuple):
    """The deployed VPC, as read by `read_network`."""

    vpc_id: str
    dns: bool  # enableDnsSupport and enableDnsHostnames
    subnets: dict[str, dict[str, Any]]
    route_tables: list[dict[str, Any]]
    network_acls: list[dict[str, Any]]
    endpoints: list[dict[str, Any]]
    groups: dict[str, dict[str, Any]]
    prefix_lists: dict[str, tuple[str, ...]]  # a prefix list's id → its CIDRs
    internet_gateways: tuple[str, ...]
    nat_gateways: dict[str, str]  # an available public NAT gateway's id → its subnet

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

    def network_acl_of(self, subnet_id: str) -> dict[str, Any] | None:
        """The subnet's network ACL: "If you don't explicitly associate a subnet with a
        network ACL, the subnet is automatically associated with the default network ACL"
        (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-network-acls.html)."""
        default = None
        for acl in self.network_acls:
            if any(a.get("SubnetId") == subnet_id for a in acl.get("Associations", [])):
                return acl
            if acl.get("IsDefault"):
                default = acl
        return default

    def cidr_of(self, subnet_id: str) -> str:
        return str(self.subnets.get(subnet_id, {}).get("CidrBlock", ""))


# --- reading what is deployed -----------------------------------------------------------
def read_network(ec2: Any, vpc_id: str) -> Network:
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
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
        dns=dns,
        subnets=subnets,
        route_tables=tables,
        network_acls=all_items(ec2.describe_network_acls, "NetworkAcls", Filters=in_vpc),
        endpoints=endpoints,
        groups=groups,
        prefix_lists=_read_prefix_lists(ec2, tables, groups.values()),
        internet_gateways=tuple(g["InternetGatewayId"] for g in igws),
        nat_gateways={
            n["NatGatewayId"]: n.get("SubnetId", "")
            for n in nats
            if n.get("State") == "available" and n.get("ConnectivityType", "public") == "public"
        },
    )


def _read_prefix_lists(
    ec2: Any, tables: Iterable[Mapping[str, Any]], groups: Iterable[Mapping[str, Any]]
) -> dict[str, tuple[str, ...]]:
    """The CIDRs of every prefix list a route or an egress rule names. Network ACLs cannot
    name one ("You can't reference prefix lists in network ACL rules, but you can get the
    IP address ranges for the service from its prefix list":
    https://docs.aws.amazon.com/vpc/latest/privatelink/gateway-endpoints.html), so its
    addresses are what they are judged on."""
    named = {
        route["DestinationPrefixListId"]
        for table in tables
        for route in table.get("Routes", [])
        if route.get("DestinationPrefixListId")
    }
    named |= {
        entry["PrefixListId"]
        for group in groups
        for rule in group.get("IpPermissionsEgress", [])
        for entry in rule.get("PrefixListIds", [])
    }
    return {
        ident: tuple(
            e["Cidr"]
            for e in all_items(ec2.get_managed_prefix_list_entries, "Entries", PrefixListId=ident)
        )
        for ident in sorted(named)
    }


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


class NextAddress(NamedTuple):
    """Whether the node's next start gives it a public address, and what says so."""

    public: bool
    reason: str


def instance_placement(instance: Mapping[str, Any], address: NextAddress) -> Placement:
    """The node after a cold boot: its subnet and groups, and the address a start gives it."""
    groups = tuple(g["GroupId"] for g in instance.get("SecurityGroups", []))
    subnet_id = instance.get("SubnetId", "")
    return Placement("instance", (subnet_id,), groups, address.public, address.reason)


def next_public_address(
    ec2: Any, instance: Mapping[str, Any], subnet: Mapping[str, Any]
) -> NextAddress:
    """The public address the node's next start gives it. The address it holds now says
    nothing: "We release your instance's public IP address when it is stopped ... Your
    stopped or hibernated instance receives a new public IP address when it is started",
    but "it will not receive a new one if there is more than one network interface attached
    to your instance"; an Elastic IP stays. Whether a start asks for one is the primary
    interface's associatePublicIpAddress, not the subnet's MapPublicIpOnLaunch, which only
    a launch that names no interface takes.
    https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-instance-addressing.html
    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeNetworkInterfaceAttribute.html
    """
    interfaces = instance.get("NetworkInterfaces") or []
    primary = next(
        (i for i in interfaces if (i.get("Attachment") or {}).get("DeviceIndex") == 0), None
    )
    if primary is None:
        return NextAddress(False, "it has no primary network interface")
    interface_id = primary["NetworkInterfaceId"]
    elastic = ec2.describe_addresses(
        Filters=[{"Name": "network-interface-id", "Values": [interface_id]}]
    )["Addresses"]
    if elastic:
        ip = elastic[0].get("PublicIp", "")
        return NextAddress(True, f"Elastic IP {ip} stays on its primary interface {interface_id}")
    if len(interfaces) > 1:
        return NextAddress(
            False,
            f"it has {len(interfaces)} network interfaces: a stopped instance with more than "
            "one gets no new public address when it starts",
        )
    asked = _interface_asks(ec2, interface_id)
    if asked is not None:
        return NextAddress(
            asked,
            f"its primary interface {interface_id} {_asks(asked)} on every start "
            "(associatePublicIpAddress)",
        )
    return _launch_decides(ec2, instance, subnet)


def _asks(asked: bool) -> str:
    return "asks for a public address" if asked else "asks for no public address"


def _interface_asks(ec2: Any, interface_id: str) -> bool | None:
    """The primary interface's associatePublicIpAddress; None where it is not answered
    (the stand-in refuses the attribute: docs/local-stack.md)."""
    try:
        found = ec2.describe_network_interface_attribute(
            NetworkInterfaceId=interface_id, Attribute="associatePublicIpAddress"
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "InvalidParameterValue":
            return None
        raise
    asked = found.get("AssociatePublicIpAddress")
    return None if asked is None else bool(asked)


def _launch_decides(
    ec2: Any, instance: Mapping[str, Any], subnet: Mapping[str, Any]
) -> NextAddress:
    """Where the interface's attribute is not answered: what the node's launch asked for,
    as its launch template records it (NetworkInterfaces[0].AssociatePublicIpAddress), else
    the subnet's MapPublicIpOnLaunch, what a launch that names no interface takes. EC2 tags
    an instance launched from a template with the template's id and version."""
    gap = "the stand-in does not answer associatePublicIpAddress"
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    template = tags.get("aws:ec2launchtemplate:id", "")
    if template:
        version = tags.get("aws:ec2launchtemplate:version", "$Default")
        asked = _template_asks(ec2, template, version)
        if asked is not None:
            return NextAddress(
                asked,
                f"{gap}; launch template {template} (version {version}) {_asks(asked)} on "
                "its primary interface",
            )
        gap += f" and launch template {template} (version {version}) names no interface"
    subnet_id = subnet.get("SubnetId", instance.get("SubnetId", ""))
    mapped = bool(subnet.get("MapPublicIpOnLaunch"))
    verb = "gives" if mapped else "gives no"
    return NextAddress(
        mapped,
        f"{gap}: judged by subnet {subnet_id}, which {verb} a public address to a launch "
        "that names no interface",
    )


def _template_asks(ec2: Any, template: str, version: str) -> bool | None:
    """The template version's AssociatePublicIpAddress for the primary interface; None when
    it names none (or the version is gone)."""
    try:
        versions = ec2.describe_launch_template_versions(
            LaunchTemplateId=template, Versions=[version]
        )["LaunchTemplateVersions"]
    except ClientError:
        return None
    data = versions[0].get("LaunchTemplateData", {}) if versions else {}
    for interface in data.get("NetworkInterfaces", []):
        if interface.get("DeviceIndex", 0) == 0 and "AssociatePublicIpAddress" in interface:
            return bool(interface["AssociatePublicIpAddress"])
    return None


# --- judging one rule -------------------------------------------------------------------
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def _contains(rule_cidr: str, cidr: str) -> bool:
    """Whether a rule's range holds all of `cidr` (a rule that only overlaps a subnet does
    not admit it)."""
    rule, wanted = _network(rule_cidr), _network(cidr)
    return rule.version == wanted.version and wanted.subnet_of(rule)  # type: ignore[arg-type]


def _touches(rule_cidr: str, cidr: str) -> bool:
    """Whether a rule's range holds any of `cidr`; a private range holds no host of the
    internet."""
    rule, wanted = _network(rule_cidr), _network(cidr)
    if rule.version != wanted.version:
        return False
    if cidr == INTERNET and rule.is_private:
        return False
    return rule.overlaps(wanted)  # type: ignore[arg-type]


def _protocol_ok(rule: Mapping[str, Any], port: int) -> bool:
    protocol = str(rule.get("IpProtocol", ""))
    if protocol == "-1":
        return True
    if protocol not in ("tcp", "6"):
        return False
    return int(rule.get("FromPort", -1)) <= port <= int(rule.get("ToPort", -1))


def _rule_admits(
    rule: Mapping[str, Any],
    port: int,
    group_ids: Iterable[str],
    cidr: str,
    prefix_lists: Mapping[str, Sequence[str]],
) -> bool:
    """Whether one security group rule admits TCP `port` from (or to) the groups or all of
    `cidr`. A rule names a CIDR, a prefix list or a group ("Security group rules", Source
    or destination: https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html);
    a range admits only what it wholly contains."""
    if not _protocol_ok(rule, port):
        return False
    if {pair.get("GroupId") for pair in rule.get("UserIdGroupPairs", [])} & set(group_ids):
        return True
    ranges = [block.get("CidrIp", "") for block in rule.get("IpRanges", [])]
    for entry in rule.get("PrefixListIds", []):
        ranges += prefix_lists.get(entry.get("PrefixListId", ""), ())
    return bool(cidr) and any(r and _contains(r, cidr) for r in ranges)


def _admits(network: Network, group_id: str, port: int, sources: Iterable[str], cidr: str) -> bool:
    rules = network.groups.get(group_id, {}).get("IpPermissions", [])
    return any(_rule_admits(r, port, sources, cidr, network.prefix_lists) for r in rules)


def _lets_out(
    network: Network, placement: Placement, port: int, to_groups: Iterable[str], to_cidr: str
) -> str | None:
    """None when one of the component's groups lets the connection out; else what is
    missing. Groups are stateful: "If you send a request from your instance, the response
    traffic for that request is allowed to reach the instance regardless of the inbound
    security group rules" (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-security-groups.html),
    so the answers need no rule of their own."""
    to_groups = list(to_groups)
    for group_id in placement.group_ids:
        for rule in network.groups.get(group_id, {}).get("IpPermissionsEgress", []):
            if _rule_admits(rule, port, to_groups, to_cidr, network.prefix_lists):
                return None
    return (
        f"its groups {', '.join(placement.group_ids) or '(none)'} let nothing out on {port} "
        f"to {to_cidr}"
    )


def _acl_entry_ports(entry: Mapping[str, Any]) -> Ports | None:
    """The TCP ports an ACL entry covers; None when it is for another protocol."""
    protocol = str(entry.get("Protocol", ""))
    if protocol == "-1":
        return (0, 65535)
    if protocol not in ("6", "tcp"):
        return None
    ports = entry.get("PortRange") or {}
    return (int(ports.get("From", 0)), int(ports.get("To", 65535)))


def _acl_stops(acl: Mapping[str, Any], *, outbound: bool, cidr: str, ports: Ports) -> str | None:
    """None when the network ACL lets every TCP packet on `ports` out to (or in from) all of
    `cidr`; else the rule that stops some. "Rules are evaluated starting with the lowest
    numbered rule. As soon as a rule matches traffic, it's applied regardless of any
    higher-numbered rule that might contradict it"; the last rule, `*`, denies what no rule
    matched (https://docs.aws.amazon.com/vpc/latest/userguide/nacl-rules.html). An allow
    that covers only part of the traffic leaves the rest to later rules; a deny that
    touches any of it stops it."""
    entries = [e for e in acl.get("Entries", []) if bool(e.get("Egress")) == outbound]
    for entry in sorted(entries, key=lambda e: int(e.get("RuleNumber", 32767))):
        covered = _acl_entry_ports(entry)
        rule_cidr = entry.get("CidrBlock", "")
        if covered is None or not rule_cidr or covered[1] < ports[0] or covered[0] > ports[1]:
            continue
        if not _touches(rule_cidr, cidr):
            continue
        number = entry.get("RuleNumber", "*")
        if entry.get("RuleAction") != "allow":
            return f"rule {'*' if number == 32767 else number} denies it"
        if _contains(rule_cidr, cidr) and covered[0] <= ports[0] and ports[1] <= covered[1]:
            return None
    return "no rule allows it"


def _acls_pass(
    network: Network,
    subnet_id: str,
    *,
    to_cidr: str,
    to_subnet: str = "",
    port: int,
    answer_ports: Ports,
) -> str | None:
    """None when the network ACL of every subnet boundary the connection crosses lets it
    through, and its answers back; else which ACL stops what. ACLs are stateless
    ("responses to allowed inbound traffic are subject to the rules for outbound traffic
    (and vice versa)") and not evaluated within a subnet ("We evaluate the network ACL rules
    when traffic enters and leaves the subnet, not as it is routed within a subnet"):
    https://docs.aws.amazon.com/vpc/latest/userguide/vpc-network-acls.html"""
    if to_subnet == subnet_id:
        return None
    own = network.cidr_of(subnet_id)
    crossings = [
        (subnet_id, True, to_cidr, (port, port), f"out to {to_cidr} on {port}"),
        (subnet_id, False, to_cidr, answer_ports, f"answers in from {to_cidr}"),
    ]
    if to_subnet:
        crossings += [
            (to_subnet, False, own, (port, port), f"in from {own} on {port}"),
            (to_subnet, True, own, answer_ports, f"answers out to {own}"),
        ]
    for subnet, outbound, cidr, ports, what in crossings:
        acl = network.network_acl_of(subnet)
        if acl is None:
            return f"subnet {subnet} has no network ACL"
        stopped = _acl_stops(acl, outbound=outbound, cidr=cidr, ports=ports)
        if stopped:
            span = f"{ports[0]}-{ports[1]}" if ports[0] != ports[1] else str(ports[0])
            return (
                f"network ACL {acl.get('NetworkAclId', '?')} of {subnet} lets no TCP {what} "
                f"(ports {span}): {stopped}"
            )
    return None


# --- judging routes ---------------------------------------------------------------------
_ROUTE_TARGETS = (
    "GatewayId", "NatGatewayId", "VpcPeeringConnectionId", "TransitGatewayId",
    "NetworkInterfaceId", "InstanceId", "VpcEndpointId", "LocalGatewayId", "CarrierGatewayId",
    "EgressOnlyInternetGatewayId", "CoreNetworkArn",
)  # fmt: skip


def route_target(route: Mapping[str, Any]) -> str:
    return next((str(route[key]) for key in _ROUTE_TARGETS if route.get(key)), "nowhere")


def _route_blocks(network: Network, table: Mapping[str, Any]) -> list[tuple[str, bool, dict]]:
    """(CIDR, from a prefix list, route) for every destination range of the table's routes."""
    blocks = []
    for route in table.get("Routes", []):
        if route.get("DestinationCidrBlock"):
            blocks.append((route["DestinationCidrBlock"], False, route))
        for cidr in network.prefix_lists.get(route.get("DestinationPrefixListId", ""), ()):
            blocks.append((cidr, True, route))
    return blocks


def route_to(
    network: Network, table: Mapping[str, Any] | None, cidr: str
) -> tuple[dict[str, Any] | None, str]:
    """(the route that carries all traffic to `cidr`, "") or (None, why none does). "We use
    the most specific route that matches the traffic to determine how to route the traffic
    (longest prefix match)"; a route to a prefix list ranks after a route to a CIDR block
    ("If there is a route that specifies the exact IP address range for the service ... that
    route takes precedence over the endpoint route": https://docs.aws.amazon.com/vpc/latest/privatelink/gateway-endpoints.html;
    https://docs.aws.amazon.com/vpc/latest/userguide/route-tables-priority.html). A more
    specific route inside `cidr` to elsewhere takes part of it. For the internet, the VPC's
    own range, private ranges and the prefix lists of AWS services hold no other host."""
    if table is None:
        return None, "the subnet has no route table"
    where = f"route table {table.get('RouteTableId', '?')}"
    wanted = _network(cidr)
    covering, inside = [], []
    for block, listed, route in _route_blocks(network, table):
        reach = _network(block)
        if reach.version != wanted.version:
            continue
        if wanted.subnet_of(reach):  # type: ignore[arg-type]
            covering.append((reach.prefixlen, not listed, route))
        elif reach.subnet_of(wanted) and not (  # type: ignore[arg-type]
            cidr == INTERNET and (listed or reach.is_private or route_target(route) == "local")
        ):
            inside.append((block, route))
    if not covering:
        what = "default route" if cidr == INTERNET else f"route for {cidr}"
        return None, f"no {what} on {where}"
    route = max(covering, key=lambda c: (c[0], c[1]))[2]
    target = route_target(route)
    if route.get("State", "active") != "active":
        return None, f"the route on {where} for {cidr} goes to {target}, which is a blackhole"
    for block, other in inside:
        if route_target(other) != target:
            return None, (
                f"on {where}, the more specific route for {block} takes part of {cidr} "
                f"to {route_target(other)}"
            )
    return route, ""


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

"""The VPC as the path checker sees it (tlops.checks.paths): what a component's traffic
crosses, read from the stand-in or an account through the same calls, and the verdict of
each single rule on it.

- the shapes: a component's Placement, the Network of its VPC, a Proof of one target;
- reading: the VPC's subnets, route tables, network ACLs, gateways, endpoints, groups and
  prefix lists; a function's or the node's placement, and the node's next public address;
- one rule: a security group rule or network ACL entry admitting a range and a port, and
  the route a table picks for an address (longest prefix match).

Each rule names the AWS page it follows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

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

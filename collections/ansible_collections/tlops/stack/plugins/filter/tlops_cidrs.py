# Apache-2.0. What the node's ingress ranges would open, judged before anything is written.
"""`tlops_ingress_problems`: each ingress range that would open the node wider than meant,
as a sentence naming it; empty when every range is fine.

    {{ network_node_ingress_cidrs | tlops_ingress_problems(network_node_ingress_min_prefix) }}

A string compare against "0.0.0.0/0" let `203.0.113.7/0`, `0.0.0.0/00` and two `/1` halves
through, and the AWS module then wrote the whole internet into the security group (a
security group rule's CIDR is the range it admits, host bits and all: VPC User Guide,
"Security group rules"). So each range is parsed strictly: an IPv4 network written as its
canonical form, no host bits, at least `min_prefix` bits long; and the ranges together may
not cover more than `max_addresses` addresses.
"""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError

# A /8 of addresses in all: more than any NLB's subnets or an operator's offices need.
MAX_ADDRESSES = 2**24


def _problem(entry) -> tuple[str, ipaddress.IPv4Network | None]:
    text = str(entry).strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        return f"{text!r} is not an IPv4 network ({exc})", None
    if network.version != 4:
        return f"{text!r} is not an IPv4 network (security group rule cidr_ip)", None
    if str(network) != text:
        return f"{text!r} is not written as the network it means ({network})", None
    return "", network


def tlops_ingress_problems(cidrs, min_prefix=16, max_addresses=MAX_ADDRESSES):
    if isinstance(cidrs, str) or not isinstance(cidrs, list | tuple):
        raise AnsibleFilterError("tlops_ingress_problems needs a list of CIDRs")
    problems, networks = [], []
    for entry in cidrs:
        problem, network = _problem(entry)
        if problem:
            problems.append(problem)
            continue
        if network.prefixlen < int(min_prefix):
            problems.append(
                f"{network} opens the node to {network.num_addresses} addresses: a range must "
                f"be /{int(min_prefix)} or narrower"
            )
            continue
        networks.append(network)
    together = sum(n.num_addresses for n in ipaddress.collapse_addresses(networks))
    if together > int(max_addresses):
        problems.append(
            f"together the ranges open the node to {together} addresses, more than "
            f"{int(max_addresses)}: list fewer, narrower ones"
        )
    return problems


def tlops_https_sources(groups, port=443):
    """Every range (IPv4 and IPv6) an inbound rule of `groups` (ec2_security_group_info's
    security_groups) admits TCP `port` from: a rule of protocol -1 admits every port, a tcp
    rule the ports from_port..to_port (EC2 API, IpPermission)."""
    found = []
    for group in groups or []:
        for rule in group.get("ip_permissions") or []:
            protocol = str(rule.get("ip_protocol"))
            low, high = rule.get("from_port"), rule.get("to_port")
            every_port = protocol == "-1" or (protocol in ("tcp", "6") and low is None)
            if not (every_port or (protocol in ("tcp", "6") and low <= int(port) <= high)):
                continue
            found += [r["cidr_ip"] for r in rule.get("ip_ranges") or []]
            found += [r["cidr_ipv6"] for r in rule.get("ipv6_ranges") or []]
    return sorted(set(found))


class FilterModule:
    def filters(self):
        return {
            "tlops_ingress_problems": tlops_ingress_problems,
            "tlops_https_sources": tlops_https_sources,
        }

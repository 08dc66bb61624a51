"""Network-path proofs (tlops.checks.paths), continued from test_paths.py on the same
hand-built VPC: a rule counts for a subnet only when its range holds all of it, and the
component's own group must let its traffic out to an interface endpoint."""

from __future__ import annotations

from tests.checks.test_paths import (
    EC2_CALLER_NEEDS,
    EC2_ENDPOINT,
    ENDPOINT_SG,
    NODE,
    NODE_NEEDS,
    PRIVATE,
    REDIS_SG,
    ROUTER,
    ROUTER_NEEDS,
    ROUTER_SG,
    acl_entry,
    group,
    network,
    proofs,
    rule,
    with_acl,
    with_ec2_endpoint,
)

# The router's subnet is 10.20.1.0/24, the node's 10.20.0.0/24, the VPC 10.20.0.0/22.
HALVES_OF_THE_ROUTERS_SUBNET = ("10.20.1.0/25", "10.20.1.128/25")


# --- a rule admits a subnet only if it holds all of it ------------------------------------
def test_a_queue_rule_that_overlaps_the_components_subnet_without_holding_it_admits_nothing():
    """AWS, "Security group rules": a rule's source is an IPv4 CIDR range, and it admits
    traffic from the addresses in that range
    (https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html). A Lambda in a
    subnet takes any address of it, so a rule holding half of the subnet does not admit it."""
    for half in HALVES_OF_THE_ROUTERS_SUBNET:
        by_half = group("redis", [rule(6379, cidr=half)])
        net = network(groups={**network().groups, REDIS_SG: by_half})
        proof = proofs(ROUTER_NEEDS, ROUTER, net)["redis"]
        assert proof.status == "missing", (half, proof)
        assert "admit nothing on 6379 from sg-router" in proof.detail
    by_the_vpc = group("redis", [rule(6379, cidr="10.20.0.0/22")])
    net = network(groups={**network().groups, REDIS_SG: by_the_vpc})
    assert proofs(ROUTER_NEEDS, ROUTER, net)["redis"].status == "ok"


def test_an_endpoint_rule_that_overlaps_the_components_subnet_without_holding_it_admits_nothing():
    """The same rule for an interface endpoint's group, which must admit 443 from the
    component ("The security group must allow ... traffic on port 443 from the resources in
    the VPC": https://docs.aws.amazon.com/vpc/latest/privatelink/create-interface-endpoint.html)."""
    for half in HALVES_OF_THE_ROUTERS_SUBNET:
        by_half = group("endpoints", [rule(443, cidr=half)])
        net = with_ec2_endpoint(groups={**network().groups, ENDPOINT_SG: by_half})
        proof = proofs(EC2_CALLER_NEEDS, ROUTER, net)["service:ec2"]
        assert proof.status == "missing", (half, proof)
        assert "admit nothing on 443 from sg-router" in proof.detail


def test_an_egress_rule_that_overlaps_the_queues_subnet_without_holding_it_lets_nothing_out():
    """Outbound rules name the destination range they let traffic out to
    (https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html); the queue
    may answer from any address of its subnet 10.20.1.0/24."""
    for half in HALVES_OF_THE_ROUTERS_SUBNET:
        out_to_half = group("router", [], egress=[rule(6379, cidr=half)])
        net = network(groups={**network().groups, ROUTER_SG: out_to_half})
        proof = proofs(ROUTER_NEEDS, ROUTER, net)["redis"]
        assert proof.status == "missing", (half, proof)
        assert "let nothing out on 6379 to 10.20.1.0/24" in proof.detail
    out_to_the_vpc = group("router", [], egress=[rule(6379, cidr="10.20.0.0/22")])
    net = network(groups={**network().groups, ROUTER_SG: out_to_the_vpc})
    assert proofs(ROUTER_NEEDS, ROUTER, net)["redis"].status == "ok"


def test_a_network_acl_allow_that_overlaps_the_clients_subnet_without_holding_it_admits_nothing():
    """AWS, "Network ACL rules": each rule names a CIDR range, and traffic no rule allows falls
    to the final `*` deny (https://docs.aws.amazon.com/vpc/latest/userguide/nacl-rules.html).
    The queue's subnet lets 6379 in from half of the node's subnet 10.20.0.0/24 only."""
    half_of_the_node = [
        acl_entry(100, "allow", "10.20.0.0/25", egress=False, ports=(6379, 6379)),
        acl_entry(100, "allow", "0.0.0.0/0", egress=True),
    ]
    node = proofs(NODE_NEEDS, NODE, network(network_acls=with_acl(PRIVATE, half_of_the_node)))
    assert node["redis"].status == "missing", node["redis"]
    assert (
        "network ACL acl-subnet-private of subnet-private lets no TCP in from 10.20.0.0/24 "
        "on 6379 (ports 6379): rule * denies it" in node["redis"].detail
    )
    the_vpc = [acl_entry(100, "allow", "10.20.0.0/22", egress=False, ports=(6379, 6379)),
               half_of_the_node[1]]  # fmt: skip
    node = proofs(NODE_NEEDS, NODE, network(network_acls=with_acl(PRIVATE, the_vpc)))
    assert node["redis"].status == "ok", node["redis"]


# --- egress to an interface endpoint ---------------------------------------------------
def test_a_component_whose_group_lets_no_https_out_to_an_interface_endpoint_has_no_path():
    """AWS, "Security groups": a group "controls the traffic that is allowed to leave" the
    resources it is associated with, by its outbound rules
    (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-security-groups.html). The
    endpoint's group admits the router, but the router's own group lets 443 out neither to
    the endpoint's group nor to its subnet; with private DNS the endpoint is the only way to
    EC2 (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVpcEndpoint.html)."""
    for egress in (
        [rule(6379, group=REDIS_SG)],
        [rule(443, group=REDIS_SG)],
        [rule(443, cidr="10.20.0.0/24")],  # the other subnet, not the endpoint's
    ):
        net = with_ec2_endpoint(
            groups={**network().groups, ROUTER_SG: group("router", [], egress=egress)}
        )
        proof = proofs(EC2_CALLER_NEEDS, ROUTER, net)["service:ec2"]
        assert proof.status == "missing", (egress, proof)
        assert (
            "interface endpoint vpce-ec2 is there, but its groups sg-router let nothing out "
            "on 443 to 10.20.1.0/24" in proof.detail
        )
    assert EC2_ENDPOINT["SubnetIds"] == [PRIVATE]
    for egress in ([rule(443, group=ENDPOINT_SG)], [rule(443, cidr="10.20.1.0/24")]):
        net = with_ec2_endpoint(
            groups={**network().groups, ROUTER_SG: group("router", [], egress=egress)}
        )
        assert proofs(EC2_CALLER_NEEDS, ROUTER, net)["service:ec2"].status == "ok", egress

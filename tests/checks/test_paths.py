"""Network-path proofs (tlops.checks.paths) on hand-built VPCs: each kind of proof, and each
missing link named with the component, the target and what is missing. A test of an AWS
rule names the page of AWS's documentation the rule follows."""

from __future__ import annotations

import json

import pytest

from tlops.checks import paths, vpc
from tlops.checks.vpc import Network, NextAddress, Placement, Queue

REGION = "eu-west-1"
VPC = "vpc-1"
PRIVATE, PUBLIC = "subnet-private", "subnet-public"
ROUTER_SG, NODE_SG, REDIS_SG, ENDPOINT_SG = "sg-router", "sg-node", "sg-redis", "sg-endpoints"
S3_LIST, S3_RANGES = "pl-s3", ("52.216.0.0/15", "3.5.0.0/19")
REPLIES = "arn:aws:s3:::replies/example"


def rule(port: int, *, group: str | None = None, cidr: str | None = None) -> dict:
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "UserIdGroupPairs": [{"GroupId": group}] if group else [],
        "IpRanges": [{"CidrIp": cidr}] if cidr else [],
    }


EVERYTHING_OUT = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]


def group(name: str, ingress: list[dict], egress: list[dict] | None = None) -> dict:
    return {
        "GroupName": name,
        "IpPermissions": ingress,
        "IpPermissionsEgress": EVERYTHING_OUT if egress is None else egress,
    }


def acl_entry(number: int, action: str, cidr: str, *, egress: bool, ports=None) -> dict:
    """A network ACL rule, as DescribeNetworkAcls lists it; `ports` None: every protocol."""
    entry = {"RuleNumber": number, "RuleAction": action, "CidrBlock": cidr, "Egress": egress}
    if ports is None:
        return {**entry, "Protocol": "-1"}
    return {**entry, "Protocol": "6", "PortRange": {"From": ports[0], "To": ports[1]}}


def acl(ident: str, subnets: list[str], entries: list[dict], *, default: bool = False) -> dict:
    """A network ACL with its rules and the final `*` rule both ways."""
    last = [acl_entry(32767, "deny", "0.0.0.0/0", egress=e) for e in (True, False)]
    return {
        "NetworkAclId": ident,
        "IsDefault": default,
        "Associations": [{"SubnetId": s} for s in subnets],
        "Entries": [*entries, *last],
    }


# The default network ACL: every subnet's unless another is associated; it allows everything.
DEFAULT_ACL = acl(
    "acl-default",
    [PRIVATE, PUBLIC],
    [acl_entry(100, "allow", "0.0.0.0/0", egress=e) for e in (True, False)],
    default=True,
)


def with_acl(subnet: str, entries: list[dict]) -> list[dict]:
    """The default ACL, and a custom one with `entries` associated with `subnet`."""
    others = [s for s in (PRIVATE, PUBLIC) if s != subnet]
    return [{**DEFAULT_ACL, "Associations": [{"SubnetId": s} for s in others]},
            acl(f"acl-{subnet}", [subnet], entries)]  # fmt: skip


LOCAL = {"DestinationCidrBlock": "10.20.0.0/22", "GatewayId": "local", "State": "active"}
S3_ROUTE = {"DestinationPrefixListId": S3_LIST, "GatewayId": "vpce-s3", "State": "active"}
TO_IGW = {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "igw-1", "State": "active"}

# Not in the deployed design (nothing in the VPC calls EC2): an interface endpoint of EC2 with
# private DNS, answering to the router's group only, as an earlier design had it.
EC2_ENDPOINT = {
    "VpcEndpointId": "vpce-ec2",
    "VpcEndpointType": "Interface",
    "ServiceName": f"com.amazonaws.{REGION}.ec2",
    "PrivateDnsEnabled": True,
    "Groups": [{"GroupId": ENDPOINT_SG}],
    "SubnetIds": [PRIVATE],
}


def network(**changes) -> Network:
    """The VPC deploy.yml builds, as the EC2 API describes it; `changes` replace fields."""
    base = Network(
        vpc_id=VPC,
        dns=True,
        subnets={
            PRIVATE: {
                "SubnetId": PRIVATE,
                "CidrBlock": "10.20.1.0/24",
                "MapPublicIpOnLaunch": False,
            },
            PUBLIC: {"SubnetId": PUBLIC, "CidrBlock": "10.20.0.0/24", "MapPublicIpOnLaunch": True},
        },
        route_tables=[
            {
                "RouteTableId": "rtb-main",
                "Associations": [{"Main": True}],
                "Routes": [LOCAL, S3_ROUTE],
            },
            {
                "RouteTableId": "rtb-public",
                "Associations": [{"SubnetId": PUBLIC}],
                "Routes": [LOCAL, TO_IGW, S3_ROUTE],
            },
        ],
        network_acls=[DEFAULT_ACL],
        endpoints=[
            {
                "VpcEndpointId": "vpce-s3",
                "VpcEndpointType": "Gateway",
                "ServiceName": f"com.amazonaws.{REGION}.s3",
                "RouteTableIds": ["rtb-main", "rtb-public"],
            },
        ],
        groups={
            ROUTER_SG: group("router", []),
            NODE_SG: group("node", []),
            ENDPOINT_SG: group("endpoints", [rule(443, group=ROUTER_SG)]),
            REDIS_SG: group("redis", [rule(6379, group=ROUTER_SG), rule(6379, group=NODE_SG)]),
        },
        prefix_lists={S3_LIST: S3_RANGES},
        internet_gateways=("igw-1",),
        nat_gateways={},
    )
    return base._replace(**changes)


ROUTER = Placement("lambda-vpc", (PRIVATE,), (ROUTER_SG,), False, "a Lambda in a VPC never has one")
NODE = vpc.instance_placement(
    {"SubnetId": PUBLIC, "SecurityGroups": [{"GroupId": NODE_SG}]},
    NextAddress(True, "its primary interface eni-1 asks for a public address on every start"),
)
ROUTER_NEEDS = {
    "runs_in": "lambda-vpc",
    "reaches": [
        {"target": "redis"},
        {"target": "service:s3"},
        {"target": "public:cognito-idp.eu-west-1.amazonaws.com", "unless_env": "TL_JWKS"},
    ],
}
ROUTER_CALLS = [("s3:GetObject", REPLIES, {}), ("s3:PutObject", "arn:aws:s3:::control/x", {})]
# A function in the private subnet that calls EC2 (what the router did before control).
EC2_CALLER_NEEDS = {"runs_in": "lambda-vpc", "reaches": [{"target": "service:ec2"}]}


def with_ec2_endpoint(endpoint: dict | None = None, **changes) -> Network:
    return network(endpoints=[network().endpoints[0], endpoint or EC2_ENDPOINT], **changes)


NODE_NEEDS = {
    "runs_in": "instance",
    "reaches": [
        {"target": "redis"},
        {"target": "service:s3"},
        {"target": "service:ec2"},
        {"target": "service:monitoring"},
    ],
}
QUEUE = Queue((REDIS_SG,), (PRIVATE,))


def proofs(component, placement, net, queue=QUEUE, requests=()) -> dict[str, paths.Proof]:
    found = paths.prove(
        "c", component, placement, net, region=REGION, queue=queue, requests=requests
    )
    return {proof.target: proof for proof in found}


def test_the_deployed_design_proves_every_path_of_the_router_and_the_node():
    router = proofs(
        ROUTER_NEEDS, ROUTER._replace(env={"TL_JWKS": "{}"}), network(), requests=ROUTER_CALLS
    )
    assert router["redis"].detail == "group sg-redis admits 6379 from sg-router"
    assert "gateway endpoint vpce-s3 on route table rtb-main" in router["service:s3"].detail
    assert router["public:cognito-idp.eu-west-1.amazonaws.com"].status == "skipped"
    assert not [e for e in network().endpoints if e["VpcEndpointType"] == "Interface"]
    node = proofs(NODE_NEEDS, NODE, network())
    assert all(proof.status == "ok" for proof in node.values()), node
    assert "on route table rtb-public" in node["service:s3"].detail
    assert "public address on every start" in node["service:ec2"].detail
    assert "igw-1" in node["service:monitoring"].detail


def test_defect_1_a_router_that_fetches_its_keys_has_no_way_out():
    router = proofs(ROUTER_NEEDS, ROUTER, network())  # no TL_JWKS: it would fetch the keys
    proof = router["public:cognito-idp.eu-west-1.amazonaws.com"]
    assert proof.status == "missing"
    assert "no default route on route table rtb-main" in proof.detail


def nat_network(nat_acl_entries: list[dict] | None = None) -> Network:
    """The router's subnet routed to a NAT gateway in the public subnet."""
    main = {
        "RouteTableId": "rtb-main",
        "Associations": [{"Main": True}],
        "Routes": [LOCAL, {"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-1"}],
    }
    acls = [DEFAULT_ACL] if nat_acl_entries is None else with_acl(PUBLIC, nat_acl_entries)
    return network(
        route_tables=[main, *network().route_tables[1:]],
        nat_gateways={"nat-1": PUBLIC},
        network_acls=acls,
    )


def test_a_nat_gateway_would_be_a_way_out():
    proof = proofs(ROUTER_NEEDS, ROUTER, nat_network())[
        "public:cognito-idp.eu-west-1.amazonaws.com"
    ]
    assert proof.status == "ok" and "NAT gateway nat-1" in proof.detail


def test_defect_2_an_endpoint_whose_group_admits_nobody_is_no_path():
    # The endpoint answered to the router's own group, which has no ingress rules.
    net = with_ec2_endpoint({**EC2_ENDPOINT, "Groups": [{"GroupId": ROUTER_SG}]})
    proof = proofs(EC2_CALLER_NEEDS, ROUTER, net)["service:ec2"]
    assert proof.status == "missing"
    assert (
        "vpce-ec2 answers to groups sg-router, which admit nothing on 443 from sg-router"
        in proof.detail
    )
    assert proof.line().startswith("c → service:ec2: MISSING")


def test_an_endpoint_with_private_dns_off_or_dns_off_in_the_vpc_is_no_path():
    net = with_ec2_endpoint({**EC2_ENDPOINT, "PrivateDnsEnabled": False})
    assert "private DNS off" in proofs(EC2_CALLER_NEEDS, ROUTER, net)["service:ec2"].detail
    net = with_ec2_endpoint(dns=False)
    assert "DNS support" in proofs(EC2_CALLER_NEEDS, ROUTER, net)["service:ec2"].detail


def test_an_endpoint_admitting_the_subnet_by_cidr_is_a_path():
    groups = {**network().groups, ENDPOINT_SG: group("endpoints", [rule(443, cidr="10.20.0.0/22")])}
    net = with_ec2_endpoint(groups=groups)
    assert proofs(EC2_CALLER_NEEDS, ROUTER, net)["service:ec2"].status == "ok"
    groups = {**network().groups, ENDPOINT_SG: group("endpoints", [rule(443, group=ROUTER_SG)])}
    found = proofs(EC2_CALLER_NEEDS, ROUTER, with_ec2_endpoint(groups=groups))["service:ec2"]
    assert found.status == "ok" and "interface endpoint vpce-ec2 (private DNS)" in found.detail


def test_a_private_dns_endpoint_captures_the_service_for_the_whole_vpc():
    """AWS, CreateVpcEndpoint's PrivateDnsEnabled: the service's default name "resolves to the
    private IP addresses of the endpoint network interfaces in the VPC"
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVpcEndpoint.html). The
    node has a public address and a route to the internet gateway, but its EC2 calls go to
    an endpoint whose group admits only the router: it cannot stop itself."""
    groups = {**network().groups, ENDPOINT_SG: group("endpoints", [rule(443, group=ROUTER_SG)])}
    node = proofs(NODE_NEEDS, NODE, with_ec2_endpoint(groups=groups))
    assert node["service:ec2"].status == "missing", node["service:ec2"]
    assert "captures com.amazonaws.eu-west-1.ec2 for all of vpc-1" in node["service:ec2"].detail
    assert node["service:monitoring"].status == "ok"  # no endpoint captures CloudWatch
    # With private DNS off the endpoint captures nothing: the public path stands.
    net = with_ec2_endpoint({**EC2_ENDPOINT, "PrivateDnsEnabled": False}, groups=groups)
    assert proofs(NODE_NEEDS, NODE, net)["service:ec2"].status == "ok"


def test_defect_3_a_node_without_a_public_address_reaches_neither_ec2_nor_cloudwatch():
    public_table = {**network().route_tables[1], "Routes": [LOCAL, TO_IGW]}
    s3_on_main_only = {**network().endpoints[0], "RouteTableIds": ["rtb-main"]}
    net = network(
        route_tables=[network().route_tables[0], public_table], endpoints=[s3_on_main_only]
    )
    node = NODE._replace(public_address=False, public_reason="its interface asks for none")
    found = proofs(NODE_NEEDS, node, net)
    for target in ("service:s3", "service:ec2", "service:monitoring"):
        assert found[target].status == "missing", found[target]
        assert "but no public address" in found[target].detail
    assert "vpce-s3 is not on the subnet's route table" in found["service:s3"].detail
    assert found["redis"].status == "ok"  # inside the VPC nothing changed


def test_redis_needs_the_queue_group_to_admit_the_component_and_the_component_to_let_it_out():
    groups = {**network().groups, REDIS_SG: group("redis", [rule(6379, group=NODE_SG)])}
    proof = proofs(ROUTER_NEEDS, ROUTER, network(groups=groups))["redis"]
    assert proof.status == "missing" and "admit nothing on 6379 from sg-router" in proof.detail
    groups = {
        **network().groups,
        ROUTER_SG: group("router", [], egress=[rule(443, cidr="0.0.0.0/0")]),
    }
    proof = proofs(ROUTER_NEEDS, ROUTER, network(groups=groups))["redis"]
    assert proof.status == "missing" and "let nothing out on 6379" in proof.detail


def test_no_queue_deployed_is_said_not_hidden():
    proof = proofs(ROUTER_NEEDS, ROUTER, network(), queue=None)["redis"]
    assert proof.status == "skipped" and "no ElastiCache queue" in proof.detail
    assert proof.ok


def test_a_lambda_outside_any_vpc_rides_aws_network():
    outside = {"runs_in": "lambda", "reaches": [{"target": "service:ce"}]}
    found = proofs(outside, Placement("lambda"), None)
    assert found["service:ce"].status == "ok"


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        (Placement("lambda-vpc", problem="function x not found"), "function x not found"),
        (Placement("instance", problem="no GPU node is deployed"), "no GPU node is deployed"),
    ],
)
def test_a_component_that_is_not_where_declared_fails_every_target(placement, expected):
    found = proofs(NODE_NEEDS, placement, network())
    assert {proof.status for proof in found.values()} == {"missing"}
    assert all(expected in proof.detail for proof in found.values())


def test_only_s3_and_dynamodb_are_proven_by_gateway_endpoints():
    bogus = {**network().endpoints[0], "ServiceName": f"com.amazonaws.{REGION}.ec2"}
    net = network(endpoints=[bogus])
    assert proofs(EC2_CALLER_NEEDS, ROUTER, net)["service:ec2"].status == "missing"


def test_the_main_route_table_serves_a_subnet_without_its_own():
    assert network().route_table_of(PRIVATE)["RouteTableId"] == "rtb-main"
    assert network().route_table_of(PUBLIC)["RouteTableId"] == "rtb-public"


# --- egress: the component's own group, on every kind of path ----------------------------
def test_a_group_that_lets_no_https_out_has_no_gateway_endpoint_path():
    """AWS, "Gateway endpoints", Security: "The security groups for these instances must allow
    traffic to and from the service", an outbound rule naming the service's prefix list
    (https://docs.aws.amazon.com/vpc/latest/privatelink/gateway-endpoints.html)."""
    only_redis = group("router", [], egress=[rule(6379, group=REDIS_SG)])
    net = network(groups={**network().groups, ROUTER_SG: only_redis})
    proof = proofs(ROUTER_NEEDS, ROUTER, net)["service:s3"]
    assert proof.status == "missing"
    assert (
        "vpce-s3 is on route table rtb-main, but its groups sg-router let nothing out on 443 "
        "to 52.216.0.0/15" in proof.detail
    )
    to_the_list = {**rule(443), "PrefixListIds": [{"PrefixListId": S3_LIST}]}
    net = network(groups={**network().groups, ROUTER_SG: group("router", [], [to_the_list])})
    assert proofs(ROUTER_NEEDS, ROUTER, net)["service:s3"].status == "ok"


def test_a_group_that_lets_no_https_out_has_no_public_path():
    """AWS, "Security group rules": outbound rules name the destinations a group lets traffic out
    to (https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html). The node
    has its address and the internet gateway, but its group lets only Redis out."""
    only_redis = group("node", [], egress=[rule(6379, group=REDIS_SG)])
    node = proofs(NODE_NEEDS, NODE, network(groups={**network().groups, NODE_SG: only_redis}))
    for target in ("service:ec2", "service:monitoring"):
        assert node[target].status == "missing", node[target]
        assert "let nothing out on 443 to 0.0.0.0/0" in node[target].detail
    assert node["redis"].status == "ok"


def test_a_group_that_lets_https_out_to_part_of_the_internet_has_no_public_path():
    """AWS, "Security group rules": a rule admits the range it names; one that names part of the
    internet does not admit a host whose address is not known
    (https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html)."""
    half = group("node", [], egress=[rule(443, cidr="0.0.0.0/1"), rule(443, cidr="128.0.0.0/1")])
    node = proofs(NODE_NEEDS, NODE, network(groups={**network().groups, NODE_SG: half}))
    assert node["service:monitoring"].status == "missing"


# --- network ACLs: ordered rules, stateless, both sides of a subnet boundary --------------
def test_a_network_acl_deny_rule_before_the_allow_stops_the_s3_path():
    """AWS, "Network ACL rules": "Rules are evaluated starting with the lowest numbered rule. As
    soon as a rule matches traffic, it's applied regardless of any higher-numbered rule that
    might contradict it" (https://docs.aws.amazon.com/vpc/latest/userguide/nacl-rules.html)."""
    entries = [
        acl_entry(90, "deny", "52.216.0.0/15", egress=True, ports=(443, 443)),
        acl_entry(100, "allow", "0.0.0.0/0", egress=True),
        acl_entry(100, "allow", "0.0.0.0/0", egress=False),
    ]
    proof = proofs(ROUTER_NEEDS, ROUTER, network(network_acls=with_acl(PRIVATE, entries)))
    assert proof["service:s3"].status == "missing"
    assert (
        "network ACL acl-subnet-private of subnet-private lets no TCP out to 52.216.0.0/15 "
        "on 443 (ports 443): rule 90 denies it" in proof["service:s3"].detail
    )
    # The same deny after the allow is never reached.
    entries[0] = acl_entry(110, "deny", "52.216.0.0/15", egress=True, ports=(443, 443))
    proof = proofs(ROUTER_NEEDS, ROUTER, network(network_acls=with_acl(PRIVATE, entries)))
    assert proof["service:s3"].status == "ok"


def test_a_network_acl_must_let_the_answers_back_in_to_the_clients_ephemeral_ports():
    """Network ACLs are stateless: "responses to allowed inbound traffic are subject to the
    rules for outbound traffic (and vice versa)"
    (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-network-acls.html), and the answers
    come to the client's ephemeral ports: "Many Linux kernels ... use ports 32768-61000",
    "AWS Lambda functions use ports 1024-65535"
    (https://docs.aws.amazon.com/vpc/latest/userguide/nacl-ephemeral-ports.html)."""
    out_only = [acl_entry(100, "allow", "0.0.0.0/0", egress=True)]
    found = proofs(NODE_NEEDS, NODE, network(network_acls=with_acl(PUBLIC, out_only)))
    assert found["service:monitoring"].status == "missing"
    assert "lets no TCP answers in from 0.0.0.0/0 (ports 32768-61000): rule * denies it" in (
        found["service:monitoring"].detail
    )
    linux_answers = [*out_only, acl_entry(100, "allow", "0.0.0.0/0", egress=False,
                                          ports=(32768, 65535))]  # fmt: skip
    found = proofs(NODE_NEEDS, NODE, network(network_acls=with_acl(PUBLIC, linux_answers)))
    assert found["service:monitoring"].status == "ok"
    # The same rules do not carry a Lambda's answers, which may come to 1024-32767.
    found = proofs(ROUTER_NEEDS, ROUTER, network(network_acls=with_acl(PRIVATE, linux_answers)))
    assert "(ports 1024-65535): rule * denies it" in found["service:s3"].detail


def test_the_queues_subnet_acl_is_crossed_from_another_subnet_but_not_from_its_own():
    """AWS, "Control subnet traffic with network access control lists": "We evaluate the
    network ACL rules when traffic enters and leaves the subnet, not as it is routed within a
    subnet" (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-network-acls.html). The
    queue's subnet denies 6379 in from all of the VPC: the node (in the public subnet) has
    no path, the router (in the queue's subnet) still has one."""
    entries = [
        acl_entry(80, "deny", "10.20.0.0/22", egress=False, ports=(6379, 6379)),
        acl_entry(100, "allow", "0.0.0.0/0", egress=False),
        acl_entry(100, "allow", "0.0.0.0/0", egress=True),
    ]
    net = network(network_acls=with_acl(PRIVATE, entries))
    node = proofs(NODE_NEEDS, NODE, net)["redis"]
    assert node.status == "missing"
    assert (
        "network ACL acl-subnet-private of subnet-private lets no TCP in from 10.20.0.0/24 "
        "on 6379 (ports 6379): rule 80 denies it" in node.detail
    )
    assert proofs(ROUTER_NEEDS, ROUTER, net)["redis"].status == "ok"


def test_the_nat_gateways_subnet_acl_must_let_its_answers_in():
    """AWS, "Ephemeral ports": "A NAT gateway uses ports 1024-65535", so its subnet's ACL must
    let the internet's answers in to them
    (https://docs.aws.amazon.com/vpc/latest/userguide/nacl-ephemeral-ports.html)."""
    https_only = [
        acl_entry(100, "allow", "0.0.0.0/0", egress=True),
        acl_entry(100, "allow", "10.20.0.0/22", egress=False),
    ]
    proof = proofs(ROUTER_NEEDS, ROUTER, nat_network(https_only))
    cognito = proof["public:cognito-idp.eu-west-1.amazonaws.com"]
    assert cognito.status == "missing"
    assert (
        "NAT gateway nat-1's network ACL acl-subnet-public lets no TCP answers in from the "
        "internet: rule * denies it" in cognito.detail
    )


# --- a rule admits a subnet only if it holds all of it ------------------------------------
def test_a_rule_that_holds_one_of_two_subnets_does_not_admit_a_component_in_both():
    """AWS, "Security group rules": a rule's source is a CIDR range (https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html);
    a Lambda in two subnets runs in either, so each must be admitted. The queue's group admits
    the router's first subnet by its range only."""
    second = "subnet-private-b"
    subnets = {**network().subnets, second: {"SubnetId": second, "CidrBlock": "10.20.2.0/24"}}
    acls = [{**DEFAULT_ACL, "Associations": [{"SubnetId": s} for s in (PRIVATE, PUBLIC, second)]}]
    by_range = group("redis", [rule(6379, cidr="10.20.1.0/24")])
    net = network(
        subnets=subnets, network_acls=acls, groups={**network().groups, REDIS_SG: by_range}
    )
    router = ROUTER._replace(subnet_ids=(PRIVATE, second))
    proof = proofs(ROUTER_NEEDS, router, net)["redis"]
    assert proof.status == "missing"
    assert proof.detail == (
        "no path: from subnet-private-b: the queue's groups sg-redis admit nothing on 6379 "
        "from sg-router"
    )
    assert proofs(ROUTER_NEEDS, ROUTER, net)["redis"].status == "ok"


def test_a_network_acl_allow_that_holds_part_of_the_services_range_does_not_admit_it():
    """AWS, "Network ACL rules": a rule names a CIDR range (https://docs.aws.amazon.com/vpc/latest/userguide/nacl-rules.html).
    An allow for 52.216.0.0/16 holds only half of S3's 52.216.0.0/15: the other half falls to
    the `*` rule."""
    entries = [
        acl_entry(100, "allow", "52.216.0.0/16", egress=True),
        acl_entry(110, "allow", "3.5.0.0/19", egress=True),
        acl_entry(100, "allow", "0.0.0.0/0", egress=False),
    ]
    proof = proofs(ROUTER_NEEDS, ROUTER, network(network_acls=with_acl(PRIVATE, entries)))
    assert proof["service:s3"].status == "missing"
    assert "out to 52.216.0.0/15 on 443 (ports 443): rule * denies it" in proof["service:s3"].detail


# --- routes: longest prefix match -------------------------------------------------------
def test_a_more_specific_route_takes_part_of_the_services_addresses_from_the_endpoint():
    """AWS, "Gateway endpoints": "If there is a route that specifies the exact IP address range for
    the service ... in the same Region, that route takes precedence over the endpoint route"
    (https://docs.aws.amazon.com/vpc/latest/privatelink/gateway-endpoints.html); "we direct
    traffic using the most specific route that matches the traffic"
    (https://docs.aws.amazon.com/vpc/latest/userguide/route-tables-priority.html)."""
    stolen = {"DestinationCidrBlock": "52.216.0.0/15", "GatewayId": "igw-1", "State": "active"}
    main = {**network().route_tables[0], "Routes": [LOCAL, S3_ROUTE, stolen]}
    net = network(route_tables=[main, network().route_tables[1]])
    proof = proofs(ROUTER_NEEDS, ROUTER, net)["service:s3"]
    assert proof.status == "missing"
    assert (
        "vpce-s3 is on route table rtb-main, but 52.216.0.0/15 of pl-s3 goes to igw-1"
        in proof.detail
    )
    inside = {"DestinationCidrBlock": "3.5.0.0/24", "VpcPeeringConnectionId": "pcx-1"}
    main = {**network().route_tables[0], "Routes": [LOCAL, S3_ROUTE, inside]}
    proof = proofs(ROUTER_NEEDS, ROUTER, network(route_tables=[main, network().route_tables[1]]))
    assert "the more specific route for 3.5.0.0/24 takes part of 3.5.0.0/19 to pcx-1" in (
        proof["service:s3"].detail
    )


def test_the_default_route_is_not_the_path_for_the_internet_a_more_specific_route_takes():
    """AWS, "How route priority works", longest prefix match: a more specific route to a peering
    connection takes the internet's addresses it holds from the default route
    (https://docs.aws.amazon.com/vpc/latest/userguide/route-tables-priority.html). A public
    host's address is not known, so it may be among them; a private range is not."""
    peered = {"DestinationCidrBlock": "54.0.0.0/8", "VpcPeeringConnectionId": "pcx-1"}
    private = {"DestinationCidrBlock": "172.31.0.0/16", "VpcPeeringConnectionId": "pcx-2"}
    public_table = {**network().route_tables[1], "Routes": [LOCAL, TO_IGW, S3_ROUTE, private]}
    net = network(route_tables=[network().route_tables[0], public_table])
    assert proofs(NODE_NEEDS, NODE, net)["service:monitoring"].status == "ok"
    public_table = {**public_table, "Routes": [*public_table["Routes"], peered]}
    net = network(route_tables=[network().route_tables[0], public_table])
    proof = proofs(NODE_NEEDS, NODE, net)["service:monitoring"]
    assert proof.status == "missing"
    assert "the more specific route for 54.0.0.0/8 takes part of 0.0.0.0/0 to pcx-1" in proof.detail


# --- an endpoint's policy ----------------------------------------------------------------
def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def with_s3_policy(document: str) -> Network:
    return network(endpoints=[{**network().endpoints[0], "PolicyDocument": document}])


def test_a_gateway_endpoint_whose_policy_allows_only_another_bucket_carries_no_calls():
    """AWS, "Control access to VPC endpoints using endpoint policies": the policy controls which
    principals can use the endpoint to access the service; without one, the default policy
    allows everything (https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html).
    The endpoint's route captures S3's addresses, so there is no public path instead."""
    other = {"Effect": "Allow", "Principal": "*", "Action": "s3:*",
             "Resource": "arn:aws:s3:::someone-else/*"}  # fmt: skip
    found = proofs(NODE_NEEDS, NODE, with_s3_policy(policy(other)), requests=ROUTER_CALLS)
    assert found["service:s3"].status == "missing"
    assert found["service:s3"].detail == (
        f"no path: gateway endpoint vpce-s3's policy does not allow s3:GetObject on {REPLIES}"
    )
    ours = {**other, "Resource": ["arn:aws:s3:::replies/*", "arn:aws:s3:::control/*"]}
    found = proofs(NODE_NEEDS, NODE, with_s3_policy(policy(ours)), requests=ROUTER_CALLS)
    assert found["service:s3"].status == "ok"
    default = policy({"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"})
    assert proofs(NODE_NEEDS, NODE, with_s3_policy(default), requests=ROUTER_CALLS)["service:s3"].ok


def test_a_deny_in_a_gateway_endpoints_policy_stops_the_calls_it_names():
    """AWS, "Control access to VPC endpoints using endpoint policies": an endpoint policy is an IAM
    policy, where an explicit Deny wins
    (https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html)."""
    everything = {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}
    no_writes = {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "*"}
    found = proofs(ROUTER_NEEDS, ROUTER, with_s3_policy(policy(everything, no_writes)),
                   requests=ROUTER_CALLS)  # fmt: skip
    assert "does not allow s3:PutObject on arn:aws:s3:::control/x" in found["service:s3"].detail
    # A Deny with a condition is not judged: the path is not proven.
    ours_only = {"StringNotEquals": {"aws:ResourceAccount": "123456789012"}}
    unless = {**no_writes, "Sid": "OnlyOurAccount", "Condition": ours_only}
    found = proofs(ROUTER_NEEDS, ROUTER, with_s3_policy(policy(everything, unless)),
                   requests=ROUTER_CALLS)  # fmt: skip
    assert "policy has a Deny OnlyOurAccount this check cannot judge" in found["service:s3"].detail
    # An Allow for one principal is not counted for the component.
    theirs = {**everything, "Principal": {"AWS": "arn:aws:iam::123456789012:role/other"}}
    found = proofs(ROUTER_NEEDS, ROUTER, with_s3_policy(policy(theirs)), requests=ROUTER_CALLS)
    assert found["service:s3"].status == "missing"


def test_an_interface_endpoints_policy_is_judged_too():
    """AWS, "Control access to VPC endpoints using endpoint policies": interface endpoints of
    services that support them carry a policy too
    (https://docs.aws.amazon.com/vpc/latest/privatelink/vpc-endpoints-access.html)."""
    reads_only = {"Effect": "Allow", "Principal": "*", "Action": "ec2:Describe*", "Resource": "*"}
    endpoint = {**EC2_ENDPOINT, "PolicyDocument": policy(reads_only)}
    stop = [("ec2:StopInstances", "arn:aws:ec2:eu-west-1:1:instance/i-1", {})]
    found = proofs(EC2_CALLER_NEEDS, ROUTER, with_ec2_endpoint(endpoint), requests=stop)
    assert "interface endpoint vpce-ec2's policy does not allow ec2:StopInstances" in (
        found["service:ec2"].detail
    )


# --- the node's next public address ------------------------------------------------------
STOPPED_NODE = {
    "InstanceId": "i-1",
    "SubnetId": PUBLIC,
    "SecurityGroups": [{"GroupId": NODE_SG}],
    "NetworkInterfaces": [{"NetworkInterfaceId": "eni-1", "Attachment": {"DeviceIndex": 0}}],
}


class AccountEc2:
    """An account's EC2 API for one stopped node: its primary interface answers
    associatePublicIpAddress; no Elastic IP."""

    def __init__(self, asked: bool):
        self.asked = asked

    def describe_addresses(self, Filters):
        return {"Addresses": []}

    def describe_network_interface_attribute(self, NetworkInterfaceId, Attribute):
        assert Attribute == "associatePublicIpAddress"
        return {"NetworkInterfaceId": NetworkInterfaceId, "AssociatePublicIpAddress": self.asked}


def test_a_stopped_nodes_next_address_is_its_interfaces_not_its_subnets_default():
    """AWS, "Public IPv4 addresses": a stopped instance "receives a new public IP address when
    it is started" (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-instance-addressing.html),
    as its primary interface's associatePublicIpAddress says
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeNetworkInterfaceAttribute.html);
    the subnet's MapPublicIpOnLaunch only decides a launch that names no interface."""
    public_subnet = network().subnets[PUBLIC]  # MapPublicIpOnLaunch: true
    address = vpc.next_public_address(AccountEc2(False), STOPPED_NODE, public_subnet)
    assert address == NextAddress(
        False,
        "its primary interface eni-1 asks for no public address on every start "
        "(associatePublicIpAddress)",
    )
    node = proofs(NODE_NEEDS, vpc.instance_placement(STOPPED_NODE, address), network())
    assert node["service:ec2"].status == "missing"
    assert "but no public address: its primary interface eni-1" in node["service:ec2"].detail
    private_subnet = network().subnets[PRIVATE]  # MapPublicIpOnLaunch: false
    assert vpc.next_public_address(AccountEc2(True), STOPPED_NODE, private_subnet).public


@pytest.fixture
def ec2(aws_stand_in):
    from tlops.common import aws

    return aws.client("ec2")


def launch(ec2, *, template_interface: dict | None, map_public: bool, interfaces: int = 1):
    """A node launched from a launch template in the stand-in, stopped; its subnet maps
    public addresses on launch or not."""
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/22")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.0.0/24")["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": map_public})
    image = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    data = {"ImageId": image, "InstanceType": "t3.micro"}
    if template_interface is not None:
        data["NetworkInterfaces"] = [{"DeviceIndex": 0, **template_interface}]
    name = f"node-{vpc}"
    ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)
    instance = ec2.run_instances(
        LaunchTemplate={"LaunchTemplateName": name}, SubnetId=subnet, MinCount=1, MaxCount=1
    )["Instances"][0]
    for index in range(1, interfaces):
        eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]
        ec2.attach_network_interface(
            NetworkInterfaceId=eni["NetworkInterfaceId"],
            InstanceId=instance["InstanceId"],
            DeviceIndex=index,
        )
    ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
    found = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])
    subnet_record = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]
    return found["Reservations"][0]["Instances"][0], subnet_record


@pytest.mark.integration
def test_in_the_stand_in_the_launch_template_says_what_a_start_asks_for(ec2):
    """The stand-in (moto) refuses DescribeNetworkInterfaceAttribute's associatePublicIpAddress
    (docs/local-stack.md): the launch template's NetworkInterfaces[0].AssociatePublicIpAddress
    is read instead, and the gap is named. AWS, "Public IPv4 addresses"
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-instance-addressing.html)."""
    node, subnet = launch(ec2, template_interface={"AssociatePublicIpAddress": False},
                          map_public=True)  # fmt: skip
    address = vpc.next_public_address(ec2, node, subnet)
    assert not address.public
    assert address.reason.startswith("the stand-in does not answer associatePublicIpAddress; ")
    assert "asks for no public address on its primary interface" in address.reason
    # A template that names no interface leaves it to the subnet, as a launch would; said so.
    node, subnet = launch(ec2, template_interface=None, map_public=True)
    address = vpc.next_public_address(ec2, node, subnet)
    assert address.public
    assert "names no interface: judged by subnet" in address.reason


@pytest.mark.integration
def test_a_node_with_two_interfaces_gets_no_new_address_and_an_elastic_ip_stays(ec2):
    """AWS, "Public IPv4 addresses": a released public address is not replaced "if there is
    more than one network interface attached to your instance"; an Elastic IP stays
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-instance-addressing.html)."""
    node, subnet = launch(ec2, template_interface={"AssociatePublicIpAddress": True},
                          map_public=True, interfaces=2)  # fmt: skip
    address = vpc.next_public_address(ec2, node, subnet)
    assert not address.public and "it has 2 network interfaces" in address.reason
    node, subnet = launch(ec2, template_interface={"AssociatePublicIpAddress": False},
                          map_public=False)  # fmt: skip
    allocation = ec2.allocate_address(Domain="vpc")
    primary = node["NetworkInterfaces"][0]["NetworkInterfaceId"]
    ec2.associate_address(AllocationId=allocation["AllocationId"], NetworkInterfaceId=primary)
    address = vpc.next_public_address(ec2, node, subnet)
    assert address.public
    elastic = allocation["PublicIp"]
    assert address.reason == f"Elastic IP {elastic} stays on its primary interface {primary}"

"""Network-path proofs (tlops.checks.paths) on hand-built VPCs: each kind of proof, and each
missing link named with the component, the target and what is missing."""

from __future__ import annotations

import pytest

from tlops.checks import paths
from tlops.checks.paths import Network, Placement

REGION = "eu-west-1"
VPC = "vpc-1"
PRIVATE, PUBLIC = "subnet-private", "subnet-public"
ROUTER_SG, NODE_SG, REDIS_SG, ENDPOINT_SG = "sg-router", "sg-node", "sg-redis", "sg-endpoints"


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


# Not in the deployed design (nothing in the VPC calls EC2): an interface endpoint of EC2 with
# private DNS, answering to the router's group only, as an earlier design had it.
EC2_ENDPOINT = {
    "VpcEndpointId": "vpce-ec2",
    "VpcEndpointType": "Interface",
    "ServiceName": f"com.amazonaws.{REGION}.ec2",
    "PrivateDnsEnabled": True,
    "Groups": [{"GroupId": ENDPOINT_SG}],
}


def network(**changes) -> Network:
    """The VPC deploy.yml builds, as the EC2 API describes it; `changes` replace fields."""
    base = Network(
        vpc_id=VPC,
        cidr="10.20.0.0/22",
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
            {"RouteTableId": "rtb-main", "Associations": [{"Main": True}], "Routes": []},
            {
                "RouteTableId": "rtb-public",
                "Associations": [{"SubnetId": PUBLIC}],
                "Routes": [{"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "igw-1"}],
            },
        ],
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
        internet_gateways=("igw-1",),
        nat_gateways=(),
    )
    return base._replace(**changes)


ROUTER = Placement("lambda-vpc", (PRIVATE,), (ROUTER_SG,), False, "a Lambda in a VPC never has one")
NODE = paths.instance_placement(
    {"SubnetId": PUBLIC, "MapPublicIpOnLaunch": True},
    {"SubnetId": PUBLIC, "SecurityGroups": [{"GroupId": NODE_SG}]},
)
ROUTER_NEEDS = {
    "runs_in": "lambda-vpc",
    "reaches": [
        {"target": "redis"},
        {"target": "service:s3"},
        {"target": "public:cognito-idp.eu-west-1.amazonaws.com", "unless_env": "TL_JWKS"},
    ],
}
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


def proofs(component, placement, net, redis=(REDIS_SG,)) -> dict[str, paths.Proof]:
    found = paths.prove("c", component, placement, net, region=REGION, redis_groups=redis)
    return {proof.target: proof for proof in found}


def test_the_deployed_design_proves_every_path_of_the_router_and_the_node():
    router = proofs(ROUTER_NEEDS, ROUTER._replace(env={"TL_JWKS": "{}"}), network())
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


def test_a_nat_gateway_would_be_a_way_out():
    main = {
        "RouteTableId": "rtb-main",
        "Associations": [{"Main": True}],
        "Routes": [{"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-1"}],
    }
    net = network(route_tables=[main, *network().route_tables[1:]], nat_gateways=("nat-1",))
    proof = proofs(ROUTER_NEEDS, ROUTER, net)["public:cognito-idp.eu-west-1.amazonaws.com"]
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
    subnets = {
        **network().subnets,
        PUBLIC: {**network().subnets[PUBLIC], "MapPublicIpOnLaunch": False},
    }
    s3_on_main_only = {**network().endpoints[0], "RouteTableIds": ["rtb-main"]}
    net = network(subnets=subnets, endpoints=[s3_on_main_only])
    node = paths.instance_placement(
        subnets[PUBLIC], {"SubnetId": PUBLIC, "SecurityGroups": [{"GroupId": NODE_SG}]}
    )
    found = proofs(NODE_NEEDS, node, net)
    for target in ("service:s3", "service:ec2", "service:monitoring"):
        assert found[target].status == "missing", found[target]
        assert "but no public address" in found[target].detail
    assert "vpce-s3 is not on the subnet's route table" in found["service:s3"].detail
    assert found["redis"].status == "ok"  # inside the VPC nothing changed


def test_a_running_node_with_an_address_now_still_counts_until_its_next_start():
    node = paths.instance_placement(
        {"MapPublicIpOnLaunch": False},
        {
            "SubnetId": PUBLIC,
            "SecurityGroups": [{"GroupId": NODE_SG}],
            "PublicIpAddress": "203.0.113.7",
        },
    )
    assert node.public_address and "lost on its next stop" in node.public_reason


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
    proof = proofs(ROUTER_NEEDS, ROUTER, network(), redis=None)["redis"]
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

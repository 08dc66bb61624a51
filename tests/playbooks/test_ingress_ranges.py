"""The node's ingress ranges, refused before anything is written when they open it wider
than meant.

A security group rule admits the whole network its CIDR names (VPC User Guide, "Security
group rules": https://docs.aws.amazon.com/vpc/latest/userguide/security-group-rules.html),
and `0.0.0.0/0` is every IPv4 address. A string compare let `203.0.113.7/0` (host bits
on a /0: every address), `0.0.0.0/00` (the same network, spelled otherwise) and two `/1`
halves (together every address) through; each is refused now, by name.
"""

from __future__ import annotations

import pytest

from tests.modules import harness  # puts the repository's collections/ on the import path
from tests.playbooks.role_play import include, play
from tests.playbooks.stand_in import Account
from tlops.local.services import MotoProcess

problems = harness.filter_function("tlops_cidrs", "tlops_ingress_problems")


@pytest.mark.parametrize(
    "cidrs",
    [["203.0.113.7/0"], ["0.0.0.0/00"], ["0.0.0.0/0"], ["0.0.0.0/1", "128.0.0.0/1"],
     ["10.0.0.0/8"], ["203.0.113.7/24"], ["2001:db8::/32"], ["not-a-range"]],
    ids=["host-bits-on-a-slash-0", "slash-00", "everything", "two-halves", "a-slash-8",
         "host-bits", "ipv6", "not-a-range"],
)  # fmt: skip
def test_a_range_wider_than_meant_or_not_a_network_is_refused_by_name(cidrs):
    found = problems(cidrs)
    assert len(found) == len(cidrs), found  # one sentence per refused entry
    assert all(any(c in p for p in found) for c in cidrs), found


def test_narrow_ranges_pass():
    assert problems(["203.0.113.0/24", "198.51.100.7/32", "127.0.0.1/32"]) == []
    assert problems([]) == []


def test_many_narrow_ranges_that_cover_more_than_a_slash_8_together_are_refused():
    slash_16s = [f"{a}.{b}.0.0/16" for a in (11, 12) for b in range(129)]  # 258 /16s of 65536
    (found,) = problems(slash_16s)
    assert "together the ranges open the node to 16908288 addresses" in found


def test_the_network_role_refuses_them_before_any_call(tmp_path):
    """No endpoint at all: the role stops at its preflight, naming each refused entry."""
    ranges = ["203.0.113.7/0", "0.0.0.0/1", "128.0.0.0/1", "203.0.113.0/24"]
    run = play(tmp_path, [include("network", "preflight", network_node_ingress_cidrs=ranges)])
    assert run.rc != 0
    said = " ".join(run.stdout.split())
    for refused in ("'203.0.113.7/0'", "0.0.0.0/1 opens", "128.0.0.0/1 opens"):
        assert refused in said, said[-2000:]
    assert "203.0.113.0/24 opens" not in said


@pytest.mark.integration
def test_verify_finds_a_wide_https_rule_added_by_hand(moto_server, tmp_path):
    """What is deployed is read, not what the inventory says: a tagged group given 443 from
    half the internet in the console fails verify.yml's network check, naming the range; a
    rule on another port, or from a narrow range, does not."""
    MotoProcess.reset_url(moto_server)
    ec2 = Account(moto_server).ec2
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/22")["Vpc"]["VpcId"]
    group = ec2.create_security_group(
        GroupName="tinyllama-node", Description="node", VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group",
                            "Tags": [{"Key": "Project", "Value": "tinyllama"}]}],
    )["GroupId"]  # fmt: skip

    def allow(cidr, low, high):
        ec2.authorize_security_group_ingress(
            GroupId=group,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": low, "ToPort": high,
                            "IpRanges": [{"CidrIp": cidr}]}],
        )  # fmt: skip

    allow("203.0.113.0/24", 443, 443)
    allow("0.0.0.0/0", 22, 22)  # not the node's HTTPS (and the role never writes it)
    verified = play(tmp_path, [include("network", "verify")], endpoint=moto_server)
    assert verified.rc == 0, verified.stdout[-2000:]

    allow("0.0.0.0/1", 400, 500)
    refused = play(tmp_path, [include("network", "verify")], endpoint=moto_server)
    said = " ".join(refused.stdout.split())
    assert refused.rc != 0 and "0.0.0.0/1 opens the node to 2147483648 addresses" in said

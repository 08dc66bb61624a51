"""What control's role may do to the node (access.yml's `control`), judged by the project's
evaluator (tlops.checks.access.allows) on the policy the deploy renders; and the renderer's
list-valued conditions that this needs.

Expected values come from issue 20 (item 3) and AWS's documentation:
- "the two shapes" of the node: a g4dn.xlarge, shrinkable to a t3.small;
- StartInstances and ModifyInstanceAttribute carry ec2:InstanceType, ModifyInstanceAttribute
  ec2:Attribute/${AttributeName} ("filters access by an attribute being set on a resource"):
  https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html
- one attribute per ModifyInstanceAttribute call:
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ModifyInstanceAttribute.html
- a key absent from the request context matches no StringEquals value, and a condition with
  several values holds when the request's value is any of them:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition.html
"""

from __future__ import annotations

import pytest

from tests.checks.test_access import CONTEXT, INSTANCE, NODE_TAGS
from tlops.checks import access
from tlops.contract import resize

NODE = INSTANCE + CONTEXT["instance_id"]
ANOTHER = INSTANCE + "i-0fedcba9876543210"  # tagged like the node, another instance
SHAPES = ("t3.small", "g4dn.xlarge")
START, STOP, MODIFY = "ec2:StartInstances", "ec2:StopInstances", "ec2:ModifyInstanceAttribute"


@pytest.fixture(scope="module")
def control():
    return access.render_policy(access.load()["control"], CONTEXT)


def as_type(instance_type: str) -> dict[str, str]:
    """The keys of a request on the tagged node whose type is `instance_type`."""
    return {**NODE_TAGS, "ec2:InstanceType": instance_type}


def setting(attribute: str, value: str) -> dict[str, str]:
    """The keys of a ModifyInstanceAttribute call on the tagged g4dn node that sets one
    attribute (ec2:Attribute names it, ec2:Attribute/<name> carries its value)."""
    return {
        **as_type("g4dn.xlarge"),
        "ec2:Attribute": attribute,
        f"ec2:Attribute/{attribute}": value,
    }


# --- issue 20, item 3 -----------------------------------------------------------------------
def test_control_starts_the_node_in_either_shape_and_never_as_a_p5(control):
    for shape in SHAPES:
        assert access.allows(control, START, NODE, as_type(shape)), shape
    assert not access.allows(control, START, NODE, as_type("p5.48xlarge"))


def test_control_never_starts_another_instance_tagged_like_the_node(control):
    assert access.allows(control, START, NODE, as_type("g4dn.xlarge"))
    assert not access.allows(control, START, ANOTHER, as_type("g4dn.xlarge"))
    assert not access.allows(control, START, NODE, {"ec2:InstanceType": "g4dn.xlarge"})


def test_control_stops_only_the_node(control):
    assert access.allows(control, STOP, NODE, as_type("p5.48xlarge"))  # a stop costs nothing
    assert not access.allows(control, STOP, ANOTHER, as_type("g4dn.xlarge"))


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("InstanceType", "p5.48xlarge"),
        ("UserData", "IyEvYmluL3NoCmN1cmwgaHR0cDovL2V2aWwuZXhhbXBsZS9yb290IHwgc2gK"),
        ("DisableApiStop", "true"),
        ("DisableApiTermination", "true"),
        ("InstanceInitiatedShutdownBehavior", "terminate"),
    ],
)
def test_control_changes_the_nodes_type_to_a_shape_and_nothing_else(control, attribute, value):
    for shape in SHAPES:
        assert access.allows(control, MODIFY, NODE, setting("InstanceType", shape)), shape
    assert not access.allows(control, MODIFY, NODE, setting(attribute, value))


def test_control_changes_no_other_instances_type(control):
    assert access.allows(control, MODIFY, NODE, setting("InstanceType", "t3.small"))
    assert not access.allows(control, MODIFY, ANOTHER, setting("InstanceType", "t3.small"))


def test_the_shapes_control_may_use_are_those_post_resize_offers():
    """One home for the shapes: the contract's, and both of the policy's conditions agree."""
    assert resize.INSTANCE_TYPES == SHAPES
    found = {}
    for call in access.load()["control"]["calls"]:
        for key, values in (call.get("condition") or {}).items():
            if key in ("ec2:InstanceType", "ec2:Attribute/InstanceType"):
                found[key] = tuple(values)
    assert found == dict.fromkeys(("ec2:InstanceType", "ec2:Attribute/InstanceType"), SHAPES)


# --- the renderer: lists of values, several conditions -------------------------------------
LISTED = {
    "runs_in": "instance",
    "calls": [
        {
            "sid": "Listed",
            "actions": [START],
            "resources": ["arn:aws:ec2:{region}:{account}:instance/{instance_id}"],
            "tags": {"Project": "{project}"},
            "condition": {"ec2:InstanceType": ["t3.small", "g4dn.xlarge", "t3.small"],
                          "ec2:Tenancy": "default"},
            "condition_like": {"ec2:AvailabilityZone": ["{region}a", "{region}b"]},
        }
    ],
}  # fmt: skip


def test_a_list_of_values_renders_as_a_list_and_one_value_as_a_string():
    [statement] = access.render_policy(LISTED, CONTEXT)["Statement"]
    assert statement["Condition"] == {
        "StringEquals": {
            "aws:ResourceTag/Project": "tinyllama",
            "ec2:InstanceType": ["t3.small", "g4dn.xlarge"],
            "ec2:Tenancy": "default",
        },
        "StringLike": {"ec2:AvailabilityZone": ["eu-west-1a", "eu-west-1b"]},
    }


def test_every_condition_must_hold_and_any_listed_value_does():
    policy = access.render_policy(LISTED, CONTEXT)
    keys = {"aws:ResourceTag/Project": "tinyllama", "ec2:InstanceType": "t3.small",
            "ec2:Tenancy": "default", "ec2:AvailabilityZone": "eu-west-1b"}  # fmt: skip
    assert access.allows(policy, START, NODE, keys)
    assert not access.allows(policy, START, NODE, {**keys, "ec2:InstanceType": "p5.48xlarge"})
    assert not access.allows(policy, START, NODE, {**keys, "ec2:Tenancy": "dedicated"})
    assert not access.allows(policy, START, NODE, {**keys, "ec2:AvailabilityZone": "us-east-1a"})
    assert not access.allows(
        policy, START, NODE, {k: v for k, v in keys.items() if k != "ec2:Tenancy"}
    )


def test_a_declared_request_carries_one_value_of_each_listed_key():
    requests = access.declared_requests(LISTED, CONTEXT)
    assert {(r[2]["ec2:InstanceType"], r[2]["ec2:AvailabilityZone"]) for r in requests} == {
        ("t3.small", "eu-west-1a"), ("t3.small", "eu-west-1b"),
        ("g4dn.xlarge", "eu-west-1a"), ("g4dn.xlarge", "eu-west-1b"),
    }  # fmt: skip
    policy = access.render_policy(LISTED, CONTEXT)
    assert all(access.allows(policy, *request) for request in requests)


@pytest.mark.parametrize("bad", [[], {"a": 1}, ["t3.small", 3], 7])
def test_a_condition_value_that_is_no_string_nor_list_of_strings_is_refused_by_name(tmp_path, bad):
    import yaml

    broken = tmp_path / "access.yml"
    call = {"sid": "S", "actions": [START], "resources": ["*"], "condition": {"ec2:Tenancy": bad}}
    component = {"runs_in": "lambda", "calls": [call]}
    broken.write_text(yaml.safe_dump({"access_components": {"x": component}}))
    with pytest.raises(access.AccessError, match=r"x\.calls\[0\]\.condition\.ec2:Tenancy must be"):
        access.load(broken)

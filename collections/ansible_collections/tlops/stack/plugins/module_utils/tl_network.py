# Part of tl_lambda_enis and tl_vpc_delete (plugins/modules/). Apache-2.0.
"""What holds up a VPC's teardown: the network interfaces in it, Lambda's above all.

A function in a VPC reaches it through Hyperplane network interfaces that Lambda makes,
shares between the functions of one subnet and security group, and deletes itself, "up to
20 minutes" after no function (or published version) uses them any more; it deletes them
with the permissions of the function's execution role, so a role deleted first leaves them
behind (Lambda Developer Guide, "VPC networking for Lambda", "Deleting ENIs":
https://docs.aws.amazon.com/lambda/latest/dg/foundation-networking.html#foundation-nw-eni-delete).
They are recognised by their type, `lambda` (DescribeNetworkInterfaces' `interface-type`
filter: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeNetworkInterfaces.html),
or by the description Lambda gives them, "AWS Lambda VPC ENI-<function>..." (the stand-in
can make an interface with that description, not with that type).

Until they are gone, AWS refuses to delete their security group, subnet or VPC with
DependencyViolation ("If you attempt to delete a security group that is associated with
... a network interface ..., the operation fails with DependencyViolation":
https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteSecurityGroup.html; a
subnet or VPC must be emptied first: API_DeleteSubnet.html, API_DeleteVpc.html).
`delete_in_turn` retries those deletes, bounded, and names what still depends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import (
    ClientError,
    Failure,
    carries,
    pages,
)

LAMBDA_TYPE = "lambda"
LAMBDA_DESCRIPTION = "AWS Lambda VPC ENI"
PAUSE = time.sleep  # between looks; tests pass their own


# --- the interfaces ------------------------------------------------------------------------
def interfaces(client: Any, name: str, values: list[str]) -> list[dict[str, Any]]:
    """Every network interface the EC2 filter `name` (group-id, subnet-id, vpc-id) matches."""
    return pages(
        client.describe_network_interfaces,
        "NetworkInterfaces",
        Filters=[{"Name": name, "Values": values}],
        MaxResults=1000,
    )


def is_lambdas(interface: dict[str, Any]) -> bool:
    return interface.get("InterfaceType") == LAMBDA_TYPE or (
        interface.get("Description") or ""
    ).startswith(LAMBDA_DESCRIPTION)


def view(interface: dict[str, Any]) -> dict[str, Any]:
    """What the result shows of an interface."""
    return {
        "id": interface["NetworkInterfaceId"],
        "status": interface.get("Status", ""),
        "interface_type": interface.get("InterfaceType", ""),
        "description": interface.get("Description", ""),
        "subnet_id": interface.get("SubnetId", ""),
        "security_group_ids": sorted(g["GroupId"] for g in interface.get("Groups") or []),
        "attached_to": (interface.get("Attachment") or {}).get("InstanceId", ""),
    }


def in_words(interface: dict[str, Any]) -> str:
    """`eni-1 (lambda, in-use: AWS Lambda VPC ENI-fn)`: which, what and whose."""
    shown = view(interface)
    kind = shown["interface_type"] or "interface"
    what = shown["description"] or (
        f"attached to {shown['attached_to']}" if shown["attached_to"] else ""
    )
    return f"{shown['id']} ({kind}, {shown['status'] or 'status unknown'}" + (
        f": {what})" if what else ")"
    )


def lambdas_in(client: Any, group_ids: list[str]) -> list[dict[str, Any]]:
    """Lambda's interfaces in any of the security groups."""
    return [i for i in interfaces(client, "group-id", group_ids) if is_lambdas(i)]


def looks(wait_timeout: int, delay: float) -> int:
    """How many looks after the first a wait of `wait_timeout` seconds makes."""
    return math.ceil(wait_timeout / delay) if wait_timeout > 0 else 0


def wait_lambdas_gone(client: Any, params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """Look for Lambda's interfaces in the security groups until none is left or the wait is
    over (a number of looks, `delay` apart); a Failure naming those left. Check mode only
    looks: the functions are still there."""
    group_ids, delay = params["security_group_ids"], params["delay"]
    found = lambdas_in(client, group_ids) if group_ids else []
    made, most = 0, 0 if check_mode else looks(params["wait_timeout"], delay)
    while found and made < most:
        PAUSE(delay)
        made += 1
        found = lambdas_in(client, group_ids)
    if found and most:
        raise Failure(
            f"Lambda has not yet deleted {len(found)} network interface(s) of its functions "
            f"after {made * delay:g} s: {'; '.join(in_words(i) for i in found)}. Lambda deletes "
            "them up to 20 minutes (or more) after the last function using them is gone, with "
            "the permissions of the functions' execution roles: keep those roles until then, "
            "and run teardown again later. An interface whose function still exists (its "
            "description names it) stays until that function is deleted or leaves the VPC"
        )
    return {"interfaces": [view(i) for i in found], "looks": made, "waited_s": made * delay}


# --- deleting what they hold up --------------------------------------------------------------
class Kind(NamedTuple):
    what: str  # in messages
    describe: str  # the client's method, and the key of its answer's list
    listed: str
    ids: str  # the describe call's list of ids
    delete: str  # the client's method, and its id field
    id_field: str
    missing: str  # the error code for an id that is not (or no longer) there
    holds: str  # the DescribeNetworkInterfaces filter for what is in it


# The order they are deleted in: groups, then subnets, then VPCs.
KINDS = {
    "security_group_ids": Kind("security group", "describe_security_groups", "SecurityGroups",
                               "GroupIds", "delete_security_group", "GroupId",
                               "InvalidGroup.NotFound", "group-id"),
    "subnet_ids": Kind("subnet", "describe_subnets", "Subnets", "SubnetIds", "delete_subnet",
                       "SubnetId", "InvalidSubnetID.NotFound", "subnet-id"),
    "vpc_ids": Kind("VPC", "describe_vpcs", "Vpcs", "VpcIds", "delete_vpc", "VpcId",
                    "InvalidVpcID.NotFound", "vpc-id"),
}  # fmt: skip


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def find(client: Any, kind: Kind, resource_id: str) -> dict[str, Any] | None:
    """The resource as its describe call gives it; None when it is not there."""
    try:
        answer = getattr(client, kind.describe)(aws_retry=True, **{kind.ids: [resource_id]})
    except ClientError as exc:
        if _code(exc) == kind.missing:
            return None
        raise
    listed = answer.get(kind.listed) or []
    return listed[0] if listed else None


def held_up(client: Any, kind: Kind, resource_id: str, refusal: ClientError, waited: float) -> str:
    """What a resource AWS still refuses to delete depends on, in words."""
    holding = interfaces(client, kind.holds, [resource_id])
    named = "; ".join(in_words(i) for i in holding) or (
        "no network interface: look for what else refers to it (another group's rules, "
        "route tables, gateways, endpoints)"
    )
    lambdas = (
        " Lambda deletes its interfaces up to 20 minutes after the last function using them "
        "is gone, with the functions' roles: run teardown again later."
        if any(is_lambdas(i) for i in holding)
        else ""
    )
    said = refusal.response.get("Error", {}).get("Message", "")
    return (
        f"{kind.what} {resource_id} still has dependents after {waited:g} s of retries "
        f"(AWS: {said}): {named}.{lambdas}"
    )


def delete_retrying(client: Any, kind: Kind, resource_id: str, params: dict[str, Any]) -> None:
    """Delete it, again `delay` apart while AWS answers DependencyViolation, for at most
    `retry_timeout` seconds; then a Failure naming what still depends."""
    delay = params["delay"]
    retries = looks(params["retry_timeout"], delay)
    for made in range(retries + 1):
        try:
            getattr(client, kind.delete)(aws_retry=True, **{kind.id_field: resource_id})
            return
        except ClientError as exc:
            if _code(exc) == kind.missing:
                return  # gone meanwhile
            if _code(exc) != "DependencyViolation":
                raise
            if made == retries:
                raise Failure(held_up(client, kind, resource_id, exc, made * delay), exc) from exc
        PAUSE(delay)


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def delete_in_turn(
    client: Any, params: dict[str, Any], check_mode: bool, warn: Callable[[str], None]
) -> dict[str, Any]:
    """Delete the security groups, then the subnets, then the VPCs given, each only if it
    carries every tag in `tags`; one that is gone already is no change."""
    deleted: list[str] = []
    kept: list[str] = []
    for option, kind in KINDS.items():
        for resource_id in params[option]:
            resource = find(client, kind, resource_id)
            if resource is None:
                continue
            if not carries(tags_of(resource), params["tags"]):
                warn(
                    f"{kind.what} {resource_id} was not deleted: it does not carry "
                    + ", ".join(f"{k}={v}" for k, v in sorted(params["tags"].items()))
                )
                kept.append(resource_id)
                continue
            if not check_mode:
                delete_retrying(client, kind, resource_id, params)
            deleted.append(resource_id)
    return {"changed": bool(deleted), "deleted": deleted, "kept": kept}

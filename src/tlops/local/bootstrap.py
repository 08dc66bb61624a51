"""The few stand-in resources the request path needs, until deploy.yml creates them.

Idempotent: each resource is looked up by name or tag before it is created.
Talks to whatever `tlops.aws` points at; `tlops local up` points it at moto.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from importlib import resources
from typing import Any

from tlops import aws

POOL_NAME = "tinyllama-users"
CLIENT_NAME = "tinyllama-cli"
ADMINS_GROUP = "admins"
NODE_INSTANCE_TYPE = "g4dn.xlarge"


def _tags(role: str, project: str) -> list[dict[str, str]]:
    return [{"Key": "Project", "Value": project}, {"Key": "Role", "Value": role}]


def _user_pool(project: str) -> str:
    idp = aws.client("cognito-idp")
    for page in idp.get_paginator("list_user_pools").paginate(MaxResults=60):
        for pool in page["UserPools"]:
            if pool["Name"] == POOL_NAME:
                return pool["Id"]
    pool = idp.create_user_pool(
        PoolName=POOL_NAME,
        Policies={"PasswordPolicy": {"MinimumLength": 12}},
        UserPoolTags={"Project": project, "Role": "auth"},
    )
    return pool["UserPool"]["Id"]


def _app_client(pool_id: str) -> str:
    idp = aws.client("cognito-idp")
    for client in idp.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]:
        if client["ClientName"] == CLIENT_NAME:
            return client["ClientId"]
    client = idp.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=CLIENT_NAME,
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )
    return client["UserPoolClient"]["ClientId"]


def _admins_group(pool_id: str) -> None:
    idp = aws.client("cognito-idp")
    with contextlib.suppress(idp.exceptions.GroupExistsException):
        idp.create_group(UserPoolId=pool_id, GroupName=ADMINS_GROUP)


def _reply_bucket(project: str) -> str:
    s3 = aws.client("s3")
    name = f"{project}-replies-local"
    try:
        s3.head_bucket(Bucket=name)
    except s3.exceptions.ClientError:
        s3.create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": aws.region()}
        )
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags("storage", project)})
    return name


def _gpu_node(project: str) -> str:
    ec2 = aws.client("ec2")
    found = ec2.describe_instances(
        Filters=[
            {"Name": "tag:Project", "Values": [project]},
            {"Name": "tag:Role", "Values": ["gpu"]},
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            },
        ]
    )
    for reservation in found["Reservations"]:
        for instance in reservation["Instances"]:
            return instance["InstanceId"]
    amis = json.loads(resources.files("tlops.local").joinpath("ubuntu_amis.json").read_text())
    image = next(a["ami_id"] for a in amis if a["architecture"] == "x86_64")
    instance = ec2.run_instances(
        ImageId=image,
        InstanceType=NODE_INSTANCE_TYPE,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [*_tags("gpu", project), {"Key": "Name", "Value": f"{project}-gpu"}],
            }
        ],
    )["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[instance])  # the node is created stopped
    return instance


def ensure(*, project: str) -> dict[str, Any]:
    pool_id = _user_pool(project)
    client_id = _app_client(pool_id)
    _admins_group(pool_id)
    return {
        "user_pool_id": pool_id,
        "client_id": client_id,
        "reply_bucket": _reply_bucket(project),
        "instance_id": _gpu_node(project),
    }


def id_token(*, pool_id: str, client_id: str, username: str) -> str:
    """An ID token for `username`, creating the user on first use.

    The password is random, set for this one sign-in and never stored: the
    token is what the caller keeps (in memory), not a credential on disk.
    """
    idp = aws.client("cognito-idp")
    try:
        idp.admin_get_user(UserPoolId=pool_id, Username=username)
    except idp.exceptions.UserNotFoundException:
        idp.admin_create_user(UserPoolId=pool_id, Username=username, MessageAction="SUPPRESS")
    password = secrets.token_urlsafe(24) + "aA1!"
    idp.admin_set_user_password(
        UserPoolId=pool_id, Username=username, Password=password, Permanent=True
    )
    answer = idp.admin_initiate_auth(
        UserPoolId=pool_id,
        ClientId=client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )
    return answer["AuthenticationResult"]["IdToken"]

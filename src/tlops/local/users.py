"""Stand-in users for the local stack: `tlops token --user NAME [--group admins]`.

The user pool, its app client and its groups are deploy.yml's (the auth role);
this only puts a user in groups and signs it in with the admin password flow,
which the local inventory allows on the app client and a real account's never
does.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from tlops.common import aws


class UnknownGroup(LookupError):
    """The pool has no group of that name."""


def id_token(
    *, pool_id: str, client_id: str, username: str, groups: Iterable[str] = (), idp: Any = None
) -> str:
    """An ID token for `username`, creating the user on first use and adding it to
    `groups` (memberships add up: a user put in `admins` once stays there). `idp`: the
    stand-in's Cognito client (default: the environment's, `aws.client`).

    The password is random, set for this one sign-in and never stored: the
    token is what the caller keeps (in memory), not a credential on disk.
    """
    idp = aws.client("cognito-idp") if idp is None else idp
    try:
        idp.admin_get_user(UserPoolId=pool_id, Username=username)
    except idp.exceptions.UserNotFoundException:
        idp.admin_create_user(UserPoolId=pool_id, Username=username, MessageAction="SUPPRESS")
    for group in groups:
        try:
            idp.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)
        except idp.exceptions.ResourceNotFoundException:
            raise UnknownGroup(f"the user pool {pool_id} has no group {group!r}") from None
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

"""Stand-in users for the local stack: `tlops token --user NAME`.

The user pool and its app client are deploy.yml's (the auth role); this only
signs a user in with the admin password flow, which the local inventory
allows on the app client and a real account's never does.
"""

from __future__ import annotations

import secrets

from tlops import aws


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

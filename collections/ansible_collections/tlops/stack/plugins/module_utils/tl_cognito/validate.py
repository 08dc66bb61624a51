# Part of tl_cognito (plugins/modules/tl_cognito.py). Apache-2.0.
"""The input of tl_cognito, checked: a Failure names the option and what AWS accepts."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure

AUTH_FLOWS = [
    "ALLOW_ADMIN_USER_PASSWORD_AUTH",
    "ALLOW_CUSTOM_AUTH",
    "ALLOW_USER_PASSWORD_AUTH",
    "ALLOW_USER_SRP_AUTH",
    "ALLOW_REFRESH_TOKEN_AUTH",
    "ALLOW_USER_AUTH",
]
DEFAULT_GROUPS = [{"name": "admins", "description": "may call admin routes"}]
NAME_RE = re.compile(r"^[\w\s+=,.@-]{1,128}$")
GROUP_RE = re.compile(r"^\S{1,128}$")
PREFIX_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
RESERVED_IN_PREFIX = ("aws", "amazon", "cognito")
LOOPBACK_CALLBACK_RE = re.compile(r"^http://(?:127\.0\.0\.1|localhost):(\d{1,5})/callback$")
LOOPBACK_ANY_RE = re.compile(r"^http://(?:127\.0\.0\.1|localhost):(\d{1,5})(?:/[^#]*)?$")


def _https_ok(url):
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname) and not parts.fragment


def _loopback_port_ok(match):
    return match is not None and 1 <= int(match.group(1)) <= 65535


def validate(params):
    """Raise Failure naming the option for what AWS (or the stand-in) would take wrongly."""
    if not NAME_RE.match(params["pool_name"] or ""):
        raise Failure("pool_name must be 1-128 letters, digits, spaces or +=,.@_- characters")
    if params["state"] == "absent":
        return  # the tags a deletion needs are checked by refuse_untagged_delete
    if not 6 <= params["password_minimum_length"] <= 99:
        raise Failure("password_minimum_length must be 6-99 (AWS's range)")
    if params["client"] is not None:
        validate_client(params["client"])
    validate_groups(params["groups"])
    if params["domain_prefix"] is not None:
        validate_prefix(params["domain_prefix"])


def validate_client(spec):
    if not NAME_RE.match(spec["name"] or ""):
        raise Failure("client.name must be 1-128 letters, digits, spaces or +=,.@_- characters")
    if not spec["callback_urls"]:
        raise Failure("client.callback_urls needs at least one URL: the code grant returns there")
    for url in spec["callback_urls"]:
        if not (_loopback_port_ok(LOOPBACK_CALLBACK_RE.match(url)) or _https_ok(url)):
            raise Failure(
                f"client.callback_urls: {url!r} is not accepted; use "
                "http://127.0.0.1:<port>/callback, http://localhost:<port>/callback or an "
                "https URL. Cognito matches callback URLs exactly, so a loopback URL needs "
                "its port"
            )
    for url in spec["logout_urls"]:
        if not (_loopback_port_ok(LOOPBACK_ANY_RE.match(url)) or _https_ok(url)):
            raise Failure(
                f"client.logout_urls: {url!r} is not accepted; use an https URL or "
                "http://127.0.0.1:<port>/... or http://localhost:<port>/... (port required: "
                "Cognito matches URLs exactly)"
            )
    if not spec["oauth_scopes"]:
        raise Failure("client.oauth_scopes needs at least one scope (openid for sign-in)")
    unknown = sorted(set(spec["explicit_auth_flows"]) - set(AUTH_FLOWS))
    if unknown:
        raise Failure(
            f"client.explicit_auth_flows: unknown {', '.join(unknown)}; "
            f"AWS accepts {', '.join(AUTH_FLOWS)}"
        )
    if not 5 <= spec["id_token_validity_minutes"] <= 1440:
        raise Failure("client.id_token_validity_minutes must be 5-1440 (AWS's range)")
    if not 1 <= spec["refresh_token_validity_days"] <= 3650:
        raise Failure("client.refresh_token_validity_days must be 1-3650 (AWS's range)")


def validate_groups(groups):
    names = [group["name"] for group in groups]
    for group in groups:
        if not GROUP_RE.match(group["name"] or ""):
            raise Failure(
                f"groups: {group['name']!r} is not a valid group name "
                "(1-128 characters, no white space)"
            )
        if group["precedence"] is not None and group["precedence"] < 0:
            raise Failure(f"groups: precedence of {group['name']} must be 0 or more")
    if len(set(names)) != len(names):
        raise Failure(f"groups: each name once, got {', '.join(names)}")


def validate_prefix(prefix):
    if not PREFIX_RE.match(prefix):
        raise Failure(
            f"domain_prefix {prefix!r}: use 1-63 lower-case letters, digits and hyphens, "
            "not starting or ending with a hyphen"
        )
    reserved = [word for word in RESERVED_IN_PREFIX if word in prefix]
    if reserved:
        raise Failure(
            f"domain_prefix {prefix!r} contains {', '.join(reserved)}; AWS refuses prefixes "
            "containing aws, amazon or cognito"
        )

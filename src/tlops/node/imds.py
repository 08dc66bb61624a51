"""The node's own identity from the instance metadata service, IMDSv2 only.

IMDSv2 is a session: `PUT /latest/api/token` with the token's lifetime in
`X-aws-ec2-metadata-token-ttl-seconds` returns a token, and every read carries
it in `X-aws-ec2-metadata-token`. The launch template requires tokens, so the
v1 way (a plain GET) is refused with 401 on the node. Calls are bounded by one
timeout each: the service is link-local and answers in a millisecond or not at
all.
"""

from __future__ import annotations

import http.client
import re
import urllib.parse

DEFAULT_URL = "http://169.254.169.254"
TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a path, not a secret
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
REGION_PATH = "/latest/meta-data/placement/region"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name, not a secret
TOKEN_TTL_S = 300  # one tick needs seconds; the token lives in memory only


class MetadataUnavailable(Exception):
    """IMDS did not answer, or not with what it must; the message says which."""


def parse_url(text: str) -> str:
    """`text` if it is an http://host[:port] base URL (IMDS is plain HTTP), else ValueError."""
    parsed = urllib.parse.urlsplit(text)
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"must be http://host[:port], got {text!r}") from None
    if parsed.scheme != "http" or not parsed.hostname or parsed.path not in ("", "/"):
        raise ValueError(f"must be http://host[:port], got {text!r}")
    return text.rstrip("/")


class Imds:
    def __init__(self, url: str = DEFAULT_URL, *, timeout_s: float = 1.0):
        parsed = urllib.parse.urlsplit(parse_url(url))
        self.host, self.port = parsed.hostname or "", parsed.port or 80
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, headers: dict[str, str]) -> str:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace").strip()
        except (OSError, http.client.HTTPException) as exc:
            raise MetadataUnavailable(f"IMDS {method} {path} failed: {exc!r}") from exc
        finally:
            conn.close()
        if response.status != 200:
            raise MetadataUnavailable(f"IMDS {method} {path} answered {response.status}")
        return body

    def token(self) -> str:
        token = self._call("PUT", TOKEN_PATH, {TTL_HEADER: str(TOKEN_TTL_S)})
        if not token:
            raise MetadataUnavailable("IMDS answered an empty token")
        return token

    def instance_id(self) -> str:
        """A fresh token, then the instance id it may read."""
        instance_id = self._call("GET", INSTANCE_ID_PATH, {TOKEN_HEADER: self.token()})
        if not instance_id.startswith("i-") or not instance_id[2:].isalnum():
            raise MetadataUnavailable(f"IMDS answered no instance id: {instance_id[:40]!r}")
        return instance_id

    def region(self) -> str:
        """A fresh token, then the region the instance runs in."""
        region = self._call("GET", REGION_PATH, {TOKEN_HEADER: self.token()})
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]", region):
            raise MetadataUnavailable(f"IMDS answered no region: {region[:40]!r}")
        return region

"""The one place boto3 clients are made.

Every client honours `TL_AWS_ENDPOINT_URL` (the local stand-in) and the region
from `TL_AWS_REGION`/`AWS_REGION`, unless its caller passes `Settings`: then
those say where and as whom, and the environment's endpoint is not read (the
CLI's target, `tlops.cli.target`). boto3 is imported on first use only: the
router's warm path never needs it, and importing it costs ~200 ms.
"""

from __future__ import annotations

import dataclasses
import functools
import os

DEFAULT_REGION = "eu-west-1"


def region() -> str:
    return os.environ.get("TL_AWS_REGION") or os.environ.get("AWS_REGION") or DEFAULT_REGION


def endpoint_url() -> str | None:
    return os.environ.get("TL_AWS_ENDPOINT_URL") or None


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where, and as whom, a client talks, given explicitly instead of read from the
    environment. `endpoint_url` None: AWS's own endpoints; `profile` and the keys None:
    boto3's own credential chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...)."""

    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = dataclasses.field(default=None, repr=False)


@functools.cache
def _client(
    service: str,
    region_name: str,
    endpoint: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    settings: Settings | None = None,
):
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        # botocore's own `max_attempts` counts retries only (3 meant 4 calls);
        # `total_max_attempts` counts every call, as ours does
        retries={"mode": "standard", "total_max_attempts": max_attempts},
    )
    if settings is None:
        session = boto3.session.Session()
    else:
        session = boto3.session.Session(
            profile_name=settings.profile,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
        )
    return session.client(service, region_name=region_name, endpoint_url=endpoint, config=config)


def client(
    service: str,
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 5.0,
    max_attempts: int = 3,
    region_name: str | None = None,
    settings: Settings | None = None,
):
    """A cached boto3 client for `service`, pointed at the stand-in when one is configured.

    The timeouts are botocore's, per socket operation; `max_attempts` counts the first
    call too (1: no retries). The defaults suit the operator's tools; a caller with a
    deadline (the router) passes tighter ones. `region_name` overrides the environment's
    region (the node, which learns its own from IMDS). `settings`: the region, endpoint
    and credentials given explicitly; the environment's are then not read.
    """
    if settings is None:
        region_name, endpoint = region_name or region(), endpoint_url()
    else:
        region_name, endpoint = region_name or settings.region, settings.endpoint_url
    return _client(
        service, region_name, endpoint, connect_timeout, read_timeout, max_attempts, settings
    )

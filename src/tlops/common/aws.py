"""The one place boto3 clients are made.

Every client honours `TL_AWS_ENDPOINT_URL` (the local stand-in) and the region
from `TL_AWS_REGION`/`AWS_REGION`. boto3 is imported on first use only: the
router's warm path never needs it, and importing it costs ~200 ms.
"""

from __future__ import annotations

import functools
import os

DEFAULT_REGION = "eu-west-1"


def region() -> str:
    return os.environ.get("TL_AWS_REGION") or os.environ.get("AWS_REGION") or DEFAULT_REGION


def endpoint_url() -> str | None:
    return os.environ.get("TL_AWS_ENDPOINT_URL") or None


@functools.cache
def _client(
    service: str,
    region_name: str,
    endpoint: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
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
    return boto3.session.Session().client(
        service, region_name=region_name, endpoint_url=endpoint, config=config
    )


def client(
    service: str,
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 5.0,
    max_attempts: int = 3,
    region_name: str | None = None,
):
    """A cached boto3 client for `service`, pointed at the stand-in when one is configured.

    The timeouts are botocore's, per socket operation; `max_attempts` counts the first
    call too (1: no retries). The defaults suit the operator's tools; a caller with a
    deadline (the router) passes tighter ones. `region_name` overrides the environment's
    region (the node, which learns its own from IMDS).
    """
    return _client(
        service,
        region_name or region(),
        endpoint_url(),
        connect_timeout,
        read_timeout,
        max_attempts,
    )

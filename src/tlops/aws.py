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
def _client(service: str, region_name: str, endpoint: str | None, timeout: float):
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"mode": "standard", "max_attempts": 3},
    )
    return boto3.session.Session().client(
        service, region_name=region_name, endpoint_url=endpoint, config=config
    )


def client(service: str, *, timeout: float = 5.0):
    """A cached boto3 client for `service`, pointed at the stand-in when one is configured."""
    return _client(service, region(), endpoint_url(), timeout)

"""Fixtures and token helpers for the router's tests, shared by the modules that test it.

Test modules take the fixtures with `from .router_fixtures import *`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.doubles.ec2 import tagged_instance
from tests.support.control_fixtures import only_node, relay
from tlops import contract
from tlops.edge.router import Router, RouterConfig

__all__ = ["gpu_node", "heartbeat", "relay", "router"]  # the fixtures


def router_s3():
    """The bounded S3 client the router reaches the control bucket with, for Stubber: the
    same cached client the router's ControlLink makes on first use."""
    return RouterConfig.from_env().aws_client("s3")


def admin_token(keyset, **claims: Any) -> str:
    """An ID token in the `admins` group, which POST /stop requires."""
    return keyset.token(**{"cognito:groups": ["admins"], **claims})


@pytest.fixture
def router(router_env) -> Router:
    return Router(RouterConfig.from_env())


@pytest.fixture
def gpu_node(aws_stand_in) -> str:
    """The tagged GPU node in moto, created and then stopped (as deploy.yml leaves it)."""
    return only_node(tagged_instance())


@pytest.fixture
def heartbeat(redis_client) -> None:
    """A watcher heartbeat: the node is up, so /infer must not ask control at all."""
    redis_client.set(contract.HEARTBEAT_KEY, "1", ex=60)

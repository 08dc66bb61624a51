"""Fixtures for the custom modules: connection arguments for the stand-in, stubbed clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import boto3
import pytest
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper
from botocore.stub import Stubber

from tlops.local.services import MotoProcess
from tlops.local.stack import STAND_IN_CREDENTIALS as STAND_IN

REGION = "eu-west-1"
ACCOUNT_ID = "123456789012"  # the stand-in's account


@pytest.fixture
def aws_args(moto_server: str) -> dict[str, str]:
    """Module arguments that point a tl_* module at a freshly reset stand-in."""
    MotoProcess.reset_url(moto_server)
    return {
        "endpoint_url": moto_server,
        "region": REGION,
        "access_key": STAND_IN["AWS_ACCESS_KEY_ID"],
        "secret_key": STAND_IN["AWS_SECRET_ACCESS_KEY"],
    }


@pytest.fixture
def aws(aws_args: dict[str, str]) -> Callable[[str], object]:
    """boto3 clients on the same stand-in, for arranging and asserting."""
    session = boto3.Session(
        aws_access_key_id=STAND_IN["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=STAND_IN["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    return lambda service: session.client(service, endpoint_url=aws_args["endpoint_url"])


@pytest.fixture
def stubbed(monkeypatch) -> Iterator[Callable[[str], Stubber]]:
    """`stubbed("lambda")` → an active botocore Stubber whose client the modules will get.

    For what the stand-in cannot show (updates it does not implement, AWS-side
    validation it skips, throttling): each test queues the exact calls and
    answers AWS would give, and the stubber asserts nothing else was called.
    """
    stubbers: dict[str, Stubber] = {}

    def client(self, service, retry_decorator=None, **_):
        if service not in stubbers:
            raise AssertionError(f"module asked for an unstubbed {service} client")
        raw = stubbers[service].client
        return raw if retry_decorator is None else RetryingBotoClientWrapper(raw, retry_decorator)

    monkeypatch.setattr(AnsibleAWSModule, "client", client)

    def make(service: str) -> Stubber:
        raw = boto3.Session(
            aws_access_key_id="x", aws_secret_access_key="x", region_name=REGION
        ).client(service)
        stubbers[service] = Stubber(raw)
        stubbers[service].activate()
        return stubbers[service]

    yield make
    for stubber in stubbers.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


# Not "x": Ansible masks every occurrence of a no_log value in the output.
STUB_ARGS = {"region": REGION, "access_key": "stub-access-key", "secret_key": "stub-secret-key"}

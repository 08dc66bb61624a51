"""What a failed job tells its owner: fixed sentences; AWS's own words stay in the node's log."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.doubles.inference import InferenceDouble
from tests.support.watcher_fixtures import enqueue, settled, wait_for
from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.edge import jobs
from tlops.node.runner import OpenAIRunner
from tlops.node.settings import parse_settings
from tlops.node.watcher import Watcher

pytestmark = pytest.mark.integration

ACCOUNT_ID = "123456789012"
ROLE_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/tinyllama-node/i-0123456789abcdef0"
# The shape of an AccessDenied message, which names the caller's ARN (and so the account id),
# as the IAM guide shows it:
# https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied-authorization-id.html
ACCESS_DENIED = (
    f"User: {ROLE_ARN} is not authorized to perform: s3:PutObject on resource: "
    '"arn:aws:s3:::replies-test/user-a/job.json" because no identity-based policy allows '
    "the s3:PutObject action"
)


class RefusingS3:
    """An S3 client whose every PutObject is refused the way the node's role would be."""

    def put_object(self, **_: Any) -> None:
        error = {"Error": {"Code": "AccessDenied", "Message": ACCESS_DENIED}}
        raise ClientError(error, "PutObject")

    def get_object(self, **_: Any) -> None:
        raise AssertionError("a refused write is not a precondition failure: nothing to read")


@pytest.fixture
def double() -> Iterator[InferenceDouble]:
    with InferenceDouble() as server:
        yield server


def test_a_refused_result_write_fails_the_job_in_fixed_words_and_logs_aws_words(
    redis_url, redis_client, double, tmp_path
):
    settings = parse_settings(["--redis-url", redis_url, "--inference-url", double.url,
                               "--visibility-timeout", "1", "--max-deliveries", "1",
                               "--state-dir", str(tmp_path), "--control-bucket", ""])  # fmt: skip
    log = io.StringIO()
    watcher = Watcher(settings, OpenAIRunner(settings, s3=RefusingS3()),
                      telemetry=Telemetry("watcher", stream=log))  # fmt: skip
    [job_id] = enqueue(redis_url, 1)
    thread = threading.Thread(target=watcher.work, daemon=True)
    thread.start()
    try:
        wait_for(lambda: settled(redis_client, [job_id]), "the job to fail")
    finally:
        watcher.stop()
        thread.join(timeout=30)

    record = redis_client.hgetall(contract.job_key(job_id))
    view = jobs.status_view(job_id, record)
    assert view["status"] == "failed"
    assert view["error"] == "gave up after 1 deliveries: the result could not be stored"
    (_, letter), *_ = redis_client.xrange(contract.DEAD_LETTER_STREAM)
    for public in (view["error"], letter["reason"]):
        assert ACCOUNT_ID not in public
        assert "arn:" not in public
    logged = [json.loads(line) for line in log.getvalue().splitlines()]
    [failed] = [entry for entry in logged if entry.get("message") == "job dead"]
    assert failed["job_id"] == job_id
    assert ROLE_ARN in failed["detail"]
    assert "AccessDenied" in failed["detail"]

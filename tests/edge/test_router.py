"""The router Lambda end to end: real redis-server, real moto server, test-signed tokens.

Every request goes through `Router.handle` (or the Lambda entry point) with an
HTTP API payload-2.0 event; the tests read what the client would read (status,
headers, JSON body) and what the rest of the system would see (the job record
and stream entry in Redis, the request objects in the control bucket, the
instance state in moto once control ran them, the EMF lines on stdout).
"""

from __future__ import annotations

import base64
import copy
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

import tlops.edge.router
from tests.conftest import AUDIENCE, ISSUER, http_event
from tests.doubles.ec2 import tagged_instance
from tests.doubles.silent import SilentServer
from tests.lambdas import LambdaContext, load_handler, sample_event
from tests.support.control_fixtures import outcome
from tests.support.router_fixtures import *  # noqa: F403 - the fixtures
from tests.support.router_fixtures import admin_token, router_s3
from tlops import contract
from tlops.common import aws
from tlops.contract.control import Action
from tlops.edge.router import Router, RouterConfig
from tlops.local.services import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROJECT = "tinyllama"
REPLY_BUCKET = "replies-test"  # what conftest.router_env sets


# --- helpers --------------------------------------------------------------------------
def body(result: dict[str, Any]) -> Any:
    assert result["headers"]["content-type"] == "application/json"
    return json.loads(result["body"])


def stdout_records(capsys) -> list[dict[str, Any]]:
    """Every JSON line the code under test printed (logs and EMF metrics)."""
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def emf(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    found = []
    for record in records:
        if "_aws" not in record:
            continue
        directive = record["_aws"]["CloudWatchMetrics"][0]
        if directive["Metrics"][0]["Name"] == name:
            found.append(record)
    return found


def infer_event(token: str, payload: Any = None, **kwargs: Any) -> dict[str, Any]:
    if payload is None:
        payload = {"prompt": "hello"}
    raw = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    return http_event("POST", "/infer", body=raw, token=token, **kwargs)


def stream_ids(redis_client) -> list[str]:
    return [fields["id"] for _, fields in redis_client.xrange(contract.JOB_STREAM)]


def ec2():
    """The stand-in's EC2 with the operator's defaults, for setting the scene."""
    return aws.client("ec2")


def instance_state(instance_id: str) -> str:
    answer = ec2().describe_instances(InstanceIds=[instance_id])
    return answer["Reservations"][0]["Instances"][0]["State"]["Name"]


def create_instance(tags: dict[str, str], *, stopped: bool = True) -> str:
    return tagged_instance(tags, stopped=stopped)


def describe_answer(state: str, instance_id: str = "i-0123456789abcdef0") -> dict[str, Any]:
    """A DescribeInstances response with one instance in `state` (for states moto lacks)."""
    codes = {"pending": 0, "running": 16, "stopping": 64, "stopped": 80}
    return {
        "Reservations": [
            {
                "ReservationId": "r-0123456789abcdef0",
                "OwnerId": "123456789012",
                "Instances": [
                    {
                        "InstanceId": instance_id,
                        "InstanceType": "g4dn.xlarge",
                        "State": {"Code": codes[state], "Name": state},
                        "Tags": [
                            {"Key": "Project", "Value": PROJECT},
                            {"Key": "Role", "Value": "gpu"},
                        ],
                    }
                ],
            }
        ]
    }


def control_ec2(*states: str) -> Stubber:
    """A Stubber over an EC2 client of control's own, answering DescribeInstances with the
    node in each of `states` in turn (states moto never shows); activate it with `with`."""
    import boto3

    client = boto3.session.Session().client(
        "ec2", region_name=aws.region(), endpoint_url=aws.endpoint_url()
    )
    stubber = Stubber(client)
    for state in states:
        stubber.add_response("describe_instances", describe_answer(state))
    return stubber


def job_fields(redis_client, job_id: str) -> dict[str, str]:
    return redis_client.hgetall(contract.job_key(job_id))


# --- fixtures -------------------------------------------------------------------------
@pytest.fixture
def s3_stub(router_env) -> Iterator[Stubber]:
    """Stubs the cached S3 client the router reaches the control bucket with; any call not
    stubbed raises inside the router."""
    with Stubber(router_s3()) as stubber:
        yield stubber


# The words S3 refuses a write of the router's with, where IAM forbids it (moto's buckets
# do not enforce IAM): the router's log may hold them, never the client's answer.
DENIED = (
    "User: arn:aws:sts::123456789012:assumed-role/tinyllama-router/tinyllama-router is not "
    "authorized to perform: s3:PutObject on resource: "
    "arn:aws:s3:::control-test/requests/wake/minute-29943667.json"
)


# --- 1. cold boot ---------------------------------------------------------------------
def test_infer_with_node_stopped_cold_boots_and_queues(
    router, gpu_node, relay, redis_client, keyset, capsys
):
    sub = f"user-{uuid.uuid4()}"
    event = infer_event(keyset.token(sub=sub), {"prompt": "Why is the sky blue?", "idle": 7})

    result = router.handle(event)

    assert result["statusCode"] == 202
    answer = body(result)
    assert set(answer) == {"status", "eta", "id"}
    assert answer["status"] == "starting"
    assert answer["eta"] == 90
    job_id = answer["id"]
    assert contract.is_job_id(job_id)
    assert result["headers"]["x-gpu-coldboot"] == "true"
    assert result["headers"]["x-request-id"] == event["requestContext"]["requestId"]

    # the router asked control for a wake (one request object), and started nothing itself
    [wake] = relay.requests(Action.WAKE)
    asked = relay.read(wake)
    assert (asked["action"], asked["by"]) == ("wake", "router")
    assert instance_state(gpu_node) == "stopped"
    assert emf(stdout_records(capsys), "EC2Starts") == []

    # control, handed the request as S3 would, starts the node and counts the start
    assert outcome(relay.deliver(), Action.WAKE)["started"] is True
    assert instance_state(gpu_node) in ("pending", "running")
    starts = emf(stdout_records(capsys), "EC2Starts")
    assert len(starts) == 1
    directive = starts[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "TLFIF"
    assert directive["Dimensions"] == [["Reason"]]
    assert starts[0]["Reason"] == "Wake"
    assert starts[0]["EC2Starts"] == 1
    assert starts[0]["service"] == "control"

    record = job_fields(redis_client, job_id)
    assert record["status"] == "queued"
    assert record["sub"] == sub
    assert record["prompt"] == "Why is the sky blue?"
    assert record["idle"] == "7"
    assert record["reply_s3"] == f"s3://{REPLY_BUCKET}/{sub}/{job_id}.json"
    assert record["attempts"] == "0"
    assert record["ts"].isdigit()
    assert abs(int(record["ts"]) - time.time() * 1000) < 60_000
    assert 0 < redis_client.ttl(f"job:{job_id}") <= 300
    assert stream_ids(redis_client) == [job_id]


def test_many_cold_requests_in_a_minute_make_one_wake(router, gpu_node, relay, keyset):
    """Wake requests are named by the minute (written If-None-Match): however many jobs
    arrive while the node is down, control is asked once a minute."""
    results = [router.handle(infer_event(keyset.token())) for _ in range(3)]
    assert [body(r)["status"] for r in results] == ["starting"] * 3
    assert len(relay.requests(Action.WAKE)) in (1, 2)  # 2 only across a minute's turn
    assert len({body(r)["id"] for r in results}) == 3


def test_sample_infer_event_is_served_with_the_tokens_identity(
    router, gpu_node, redis_client, keyset
):
    """The router verifies the token itself; the authorizer claims in the event are not trusted."""
    sub = f"user-{uuid.uuid4()}"
    event = sample_event("infer", token=keyset.token(sub=sub))
    claimed = event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
    assert claimed != sub

    result = router.handle(event)

    assert result["statusCode"] == 202
    assert result["headers"]["x-request-id"] == "UsXvbjTNDoEEMyw="
    job_id = body(result)["id"]
    record = redis_client.hgetall(f"job:{job_id}")
    assert record["sub"] == sub
    assert record["prompt"] == "Write a haiku about idle GPUs."
    assert record["idle"] == "5"


def test_sample_infer_event_with_an_expired_token_is_refused_despite_authorizer_claims(
    router, redis_client, keyset
):
    event = sample_event("infer", token=keyset.token(exp=int(time.time()) - 60))
    result = router.handle(event)
    assert result["statusCode"] == 403
    assert body(result) == {"error": "invalid_token"}
    assert stream_ids(redis_client) == []


def test_cold_boot_eta_and_job_ttl_come_from_the_environment(
    router_env, monkeypatch, gpu_node, redis_client, keyset
):
    monkeypatch.setenv("TL_COLD_BOOT_ETA_S", "120")
    monkeypatch.setenv("TL_JOB_TTL_S", "45")
    router = Router(RouterConfig.from_env())
    result = router.handle(infer_event(keyset.token()))
    assert result["statusCode"] == 202
    assert body(result)["eta"] == 120
    assert 0 < redis_client.ttl(f"job:{body(result)['id']}") <= 45


def test_optional_fields_are_stored_in_the_job_record(router, heartbeat, redis_client, keyset):
    payload = {"prompt": "héllo ✓", "idle": 30, "max_tokens": 256, "temperature": 0.7}
    result = router.handle(infer_event(keyset.token(), payload))
    assert result["statusCode"] == 202
    record = redis_client.hgetall(f"job:{body(result)['id']}")
    assert record["prompt"] == "héllo ✓"
    assert record["idle"] == "30"
    assert record["max_tokens"] == "256"
    assert float(record["temperature"]) == 0.7


# --- 2. node already up ---------------------------------------------------------------
def test_infer_with_node_running_is_queued_without_a_start(
    router, gpu_node, relay, redis_client, keyset, capsys
):
    ec2().start_instances(InstanceIds=[gpu_node])
    assert relay.observe()["node"]["state"] == "running"  # EC2's rule told control
    capsys.readouterr()

    result = router.handle(infer_event(keyset.token()))

    assert result["statusCode"] == 202
    answer = body(result)
    assert answer == {"status": "queued", "id": answer["id"]}
    assert "x-gpu-coldboot" not in result["headers"]
    assert relay.requests(Action.WAKE) == []
    assert stream_ids(redis_client) == [answer["id"]]
    assert redis_client.hget(f"job:{answer['id']}", "status") == "queued"


def test_watcher_heartbeat_skips_control_entirely(
    router, heartbeat, relay, redis_client, keyset, capsys
):
    # Nothing is recorded and no node exists: any read of the state or any wake request
    # would go to the stubbed client, which answers no call at all.
    with Stubber(router_s3()) as stubber:
        result = router.handle(infer_event(keyset.token()))
        stubber.assert_no_pending_responses()

    assert result["statusCode"] == 202
    answer = body(result)
    assert answer == {"status": "queued", "id": answer["id"]}
    assert "x-gpu-coldboot" not in result["headers"]
    assert relay.keys() == []
    assert stream_ids(redis_client) == [answer["id"]]


def test_a_node_seen_running_is_not_looked_up_again_on_the_next_request(
    router, gpu_node, relay, redis_client, keyset
):
    ec2().start_instances(InstanceIds=[gpu_node])
    relay.observe()
    first = router.handle(infer_event(keyset.token()))
    assert body(first)["status"] == "queued"

    with Stubber(router_s3()) as stubber:  # no S3 call may happen now
        second = router.handle(infer_event(keyset.token()))
        stubber.assert_no_pending_responses()
    assert second["statusCode"] == 202
    assert body(second)["status"] == "queued"
    assert len(stream_ids(redis_client)) == 2


def test_instances_not_tagged_as_this_projects_gpu_node_are_ignored(
    router, relay, redis_client, keyset
):
    other_project = create_instance({"Project": "someone-else", "Role": "gpu"})
    other_role = create_instance({"Project": PROJECT, "Role": "web"})

    result = router.handle(infer_event(keyset.token()))
    assert body(result)["status"] == "starting"
    [done] = relay.deliver()

    assert done == {"action": "wake", "outcome": "failed", "reason": "no GPU node is deployed"}
    assert instance_state(other_project) == "stopped"
    assert instance_state(other_role) == "stopped"


def test_a_terminated_gpu_node_does_not_count(router, gpu_node, relay, keyset):
    ec2().terminate_instances(InstanceIds=[gpu_node])
    assert body(router.handle(infer_event(keyset.token())))["status"] == "starting"
    [done] = relay.deliver()
    assert (done["outcome"], done["reason"]) == ("failed", "no GPU node is deployed")
    assert instance_state(gpu_node) == "terminated"


def test_without_a_node_the_job_is_queued_and_control_starts_nothing(
    router, aws_stand_in, relay, redis_client, keyset, capsys
):
    """No "no node deployed" 503 on /infer any more: the router cannot see EC2, so it asks;
    control, which can, refuses the wake and starts nothing."""
    result = router.handle(infer_event(keyset.token()))

    assert result["statusCode"] == 202
    answer = body(result)
    assert answer == {"status": "starting", "eta": 90, "id": answer["id"]}
    assert redis_client.hget(contract.job_key(answer["id"]), "status") == "queued"
    assert len(relay.requests(Action.WAKE)) == 1
    [done] = relay.deliver()
    assert (done["outcome"], done["reason"]) == ("failed", "no GPU node is deployed")
    assert ec2().describe_instances()["Reservations"] == []
    assert emf(stdout_records(capsys), "EC2Starts") == []


# --- 3. pending, stopping -----------------------------------------------------------------
def test_infer_with_node_pending_answers_starting_without_a_second_start(
    router, relay, redis_client, keyset, capsys
):
    relay.record("pending")

    result = router.handle(infer_event(keyset.token()))

    assert result["statusCode"] == 202
    answer = body(result)
    assert answer["status"] == "starting"
    assert answer["eta"] == 90
    assert result["headers"]["x-gpu-coldboot"] == "true"
    assert stream_ids(redis_client) == [answer["id"]]
    assert redis_client.hget(f"job:{answer['id']}", "status") == "queued"
    # control, seeing the node pending (no StartInstances stubbed: a call would raise),
    # starts nothing
    with control_ec2(*["pending"] * 3) as stub:  # control looks three times
        [done] = relay.deliver(relay.control(ec2=stub.client))
        stub.assert_no_pending_responses()
    assert (done["outcome"], done["started"]) == ("awake", False)
    assert emf(stdout_records(capsys), "EC2Starts") == []


def test_a_node_stopping_is_waited_for_then_started(router, relay, redis_client, keyset):
    """EC2 starts an instance only once it has stopped: control waits (bounded), then starts
    it, so the job is not left for a wake nobody asks again."""
    relay.record("stopping")
    result = router.handle(infer_event(keyset.token()))
    assert result["statusCode"] == 202
    answer = body(result)
    assert answer["status"] == "starting"
    assert redis_client.hget(contract.job_key(answer["id"]), "status") == "queued"
    # looked at: stopping; waited: stopping, stopped; looked again: stopped; then started
    with control_ec2("stopping", "stopping", "stopped", "stopped") as stub:
        stub.add_response("start_instances", {"StartingInstances": [{
            "InstanceId": "i-0123456789abcdef0", "CurrentState": {"Code": 0, "Name": "pending"},
            "PreviousState": {"Code": 80, "Name": "stopped"}}]})  # fmt: skip
        for _ in range(2):  # the look after the start, and the one the record takes
            stub.add_response("describe_instances", describe_answer("pending"))
        ran = relay.control(ec2=stub.client)
        ran.sleep = lambda _s: None  # the waits between looks, skipped
        [done] = relay.deliver(ran)
        stub.assert_no_pending_responses()
    assert done["started"] is True


# --- 4. the wake cannot be asked ------------------------------------------------------
def test_a_refused_wake_answers_503_and_marks_the_job_failed(
    router, s3_stub, redis_client, keyset, capsys
):
    s3_stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    s3_stub.add_client_error(
        "put_object",
        service_error_code="AccessDenied",
        service_message=DENIED,
        http_status_code=403,
    )

    result = router.handle(infer_event(keyset.token()))

    s3_stub.assert_no_pending_responses()
    assert result["statusCode"] == 503
    answer = body(result)
    assert set(answer) == {"error", "id", "message"}
    assert answer["error"] == "instance_unavailable"
    assert answer["message"] == "the GPU node could not be woken"
    assert contract.is_job_id(answer["id"])
    record = job_fields(redis_client, answer["id"])
    assert record["status"] == "failed"
    assert record["error"] == "instance_unavailable: the GPU node could not be woken"
    # neither the ARN nor the account id reaches the client or the record; the log has them
    for leaked in ("arn:aws", "123456789012", "AccessDenied"):
        assert leaked not in result["body"]
        assert leaked not in json.dumps(record)
    records = stdout_records(capsys)
    [failure] = [r for r in records if r.get("message") == "wake not asked"]
    assert "123456789012" in failure["reason"]
    assert failure["jobId"] == answer["id"]


def test_a_state_that_cannot_be_read_answers_503(router, s3_stub, redis_client, keyset):
    s3_stub.add_client_error(
        "get_object",
        service_error_code="AccessDenied",
        service_message=DENIED.replace("s3:PutObject", "s3:GetObject"),
        http_status_code=403,
    )
    result = router.handle(infer_event(keyset.token()))
    s3_stub.assert_no_pending_responses()  # and no wake written after the failed read
    assert result["statusCode"] == 503
    answer = body(result)
    assert answer["error"] == "instance_unavailable"
    assert answer["message"] == "the GPU node could not be woken"
    assert "AccessDenied" not in result["body"]
    assert redis_client.hget(f"job:{answer['id']}", "status") == "failed"


def test_failing_to_mark_the_job_failed_still_answers_503(
    router, redis_server, redis_client, monkeypatch, keyset, capsys
):
    from tlops.edge.control_link import BucketUnavailable, ControlLink

    def wake(self, reason: str) -> bool:
        redis_server.stop()  # Redis goes away between the enqueue and the failure mark
        raise BucketUnavailable(f"s3://control-test: {DENIED}")

    monkeypatch.setattr(ControlLink, "wake", wake)
    try:
        result = router.handle(infer_event(keyset.token()))
    finally:
        redis_server.start()

    assert result["statusCode"] == 503
    answer = body(result)
    assert answer["error"] == "instance_unavailable"
    assert answer["message"] == "the GPU node could not be woken"
    logged = [r for r in stdout_records(capsys) if r.get("message") == "could not mark job failed"]
    assert [r["jobId"] for r in logged] == [answer["id"]]


# --- job id collisions ----------------------------------------------------------------
def test_a_job_id_collision_draws_a_new_id_and_leaves_the_old_job_alone(
    router, heartbeat, redis_client, monkeypatch, keyset
):
    taken = str(uuid.uuid4())
    redis_client.hset(f"job:{taken}", mapping={"status": "running", "sub": "first-owner"})
    fresh = str(uuid.uuid4())
    ids = iter([taken, fresh])
    monkeypatch.setattr(contract, "new_job_id", lambda: next(ids))

    result = router.handle(infer_event(keyset.token(sub="second-owner")))

    assert result["statusCode"] == 202
    assert body(result)["id"] == fresh
    assert redis_client.hgetall(f"job:{taken}") == {"status": "running", "sub": "first-owner"}
    assert redis_client.hget(f"job:{fresh}", "sub") == "second-owner"
    assert stream_ids(redis_client) == [fresh]


def test_endless_job_id_collisions_give_up_with_503(
    router, heartbeat, redis_client, monkeypatch, keyset, capsys
):
    taken = str(uuid.uuid4())
    redis_client.hset(f"job:{taken}", mapping={"status": "running"})
    monkeypatch.setattr(contract, "new_job_id", lambda: taken)

    result = router.handle(infer_event(keyset.token()))

    assert result["statusCode"] == 503
    assert body(result) == {"error": "queue_unavailable"}
    assert len(emf(stdout_records(capsys), "RedisEnqueueFail")) == 1
    assert stream_ids(redis_client) == []


# --- 5. Redis down or silent ----------------------------------------------------------
def test_redis_down_answers_503_queue_unavailable(router, redis_server, keyset, heartbeat, capsys):
    token = keyset.token()
    assert router.handle(infer_event(token))["statusCode"] == 202  # a warm connection
    capsys.readouterr()

    redis_server.stop()
    try:
        down = router.handle(infer_event(token))
        again = router.handle(infer_event(token))  # no open connection left at all
    finally:
        redis_server.start()
    captured = capsys.readouterr()

    for result in (down, again):
        assert result["statusCode"] == 503
        assert body(result) == {"error": "queue_unavailable"}
        assert "x-request-id" in result["headers"]
    records = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    failures = emf(records, "RedisEnqueueFail")
    assert len(failures) == 2
    assert failures[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TLFIF"
    assert "Traceback" not in captured.out + captured.err

    # the same warm router recovers once Redis is back (it reconnects, it never retried)
    redis_server.client().set(contract.HEARTBEAT_KEY, "1", ex=60)
    back = router.handle(infer_event(token))
    assert back["statusCode"] == 202
    assert body(back)["status"] == "queued"


def test_a_redis_db_that_cannot_be_selected_never_receives_jobs_elsewhere(
    router_env, monkeypatch, heartbeat, redis_client, keyset
):
    assert router_env["TL_REDIS_URL"].endswith("/0")
    monkeypatch.setenv("TL_REDIS_URL", router_env["TL_REDIS_URL"][:-2] + "/99")  # 16 dbs
    router = Router(RouterConfig.from_env())
    token = keyset.token()

    results = [router.handle(infer_event(token)) for _ in range(2)]

    assert [r["statusCode"] for r in results] == [503, 503]
    assert [body(r) for r in results] == [{"error": "queue_unavailable"}] * 2
    assert stream_ids(redis_client) == []  # nothing may land in db 0


def test_redis_that_never_answers_gives_503_queue_unavailable(router_env, monkeypatch, keyset):
    with SilentServer() as silent:
        monkeypatch.setenv("TL_REDIS_URL", f"redis://127.0.0.1:{silent.port}/0")
        router = Router(RouterConfig.from_env())
        result = router.handle(infer_event(keyset.token()))
    assert result["statusCode"] == 503
    assert body(result) == {"error": "queue_unavailable"}


# --- 6. rate limit --------------------------------------------------------------------
def test_sixth_request_in_a_second_is_rate_limited(router, heartbeat, redis_client, keyset, capsys):
    token = keyset.token(sub="busy-user")
    passed = [router.handle(infer_event(token)) for _ in range(5)]
    limited = router.handle(infer_event(token))

    assert [r["statusCode"] for r in passed] == [202] * 5
    assert limited["statusCode"] == 429
    retry_after = limited["headers"]["retry-after"]
    assert retry_after.isdigit()
    assert int(retry_after) >= 1
    assert body(limited) == {"error": "rate_limited", "retry_after": int(retry_after)}
    breaches = emf(stdout_records(capsys), "ApiRateLimitBreaches")
    assert len(breaches) == 1
    assert breaches[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TLFIF"
    # the refused request enqueued nothing
    assert len(stream_ids(redis_client)) == 5

    other = router.handle(infer_event(keyset.token(sub="another-user")))
    assert other["statusCode"] == 202
    assert len(stream_ids(redis_client)) == 6


def test_twenty_first_request_in_a_minute_is_rate_limited(
    router_env, monkeypatch, heartbeat, redis_client, keyset
):
    monkeypatch.setenv("TL_RATE_BURST", "100")
    router = Router(RouterConfig.from_env())
    assert router.config.limits.burst == 100
    assert router.config.limits.sustained == 20
    token = keyset.token(sub="steady-user")

    passed = [router.handle(infer_event(token)) for _ in range(20)]
    limited = router.handle(infer_event(token))

    assert [r["statusCode"] for r in passed] == [202] * 20
    assert limited["statusCode"] == 429
    assert 1 <= int(limited["headers"]["retry-after"]) <= 60
    assert body(limited)["error"] == "rate_limited"
    assert len(stream_ids(redis_client)) == 20


def test_refused_bodies_do_not_count_against_the_rate_limit(router, heartbeat, keyset):
    token = keyset.token(sub="clumsy-user")
    refused = [router.handle(infer_event(token, "not json")) for _ in range(8)]
    assert {r["statusCode"] for r in refused} == {400}
    passed = [router.handle(infer_event(token)) for _ in range(5)]
    assert [r["statusCode"] for r in passed] == [202] * 5


# --- 7. authentication ----------------------------------------------------------------
def test_infer_without_a_token_is_401(router, redis_client):
    result = router.handle(infer_event(None))
    assert result["statusCode"] == 401
    assert body(result) == {"error": "unauthorized"}
    assert stream_ids(redis_client) == []


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "token-only"])
def test_non_bearer_authorization_is_401(router, value):
    result = router.handle(infer_event(None, headers={"authorization": value}))
    assert result["statusCode"] == 401
    assert body(result) == {"error": "unauthorized"}


def test_authorization_header_name_and_scheme_are_case_insensitive(router, heartbeat, keyset):
    event = infer_event(None, headers={"Authorization": f"bearer {keyset.token()}"})
    result = router.handle(event)
    assert result["statusCode"] == 202


def _tamper(token: str) -> str:
    """The same signature over a payload whose `sub` was changed."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


BAD_TOKENS = {
    "expired": lambda ks: ks.token(exp=int(time.time()) - 60),
    "not yet valid": lambda ks: ks.token(nbf=int(time.time()) + 600),
    "wrong audience": lambda ks: ks.token(aud="some-other-client"),
    "wrong issuer": lambda ks: ks.token(iss=ISSUER + "-other"),
    "access token": lambda ks: ks.token(token_use="access", client_id=AUDIENCE, aud=None),
    "unknown kid": lambda ks: ks.token(kid="kid-1", headers={"kid": "kid-404"}),
    "tampered payload": lambda ks: _tamper(ks.token()),
    "garbage": lambda ks: "not.a.jwt",
    "alg none": lambda ks: (
        base64.urlsafe_b64encode(b'{"alg":"none","kid":"kid-0"}').rstrip(b"=").decode()
        + "."
        + base64.urlsafe_b64encode(
            json.dumps(
                {"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "token_use": "id", "exp": 2**40}
            ).encode()
        )
        .rstrip(b"=")
        .decode()
        + "."
    ),
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_bad_token_is_403_invalid_token(router, redis_client, keyset, kind, capsys):
    result = router.handle(infer_event(BAD_TOKENS[kind](keyset)))
    assert result["statusCode"] == 403
    assert body(result) == {"error": "invalid_token"}
    assert stream_ids(redis_client) == []
    assert "Traceback" not in capsys.readouterr().err


def test_jwks_unreachable_is_503_auth_unavailable(router_env, monkeypatch, redis_client, keyset):
    monkeypatch.setenv("TL_JWKS_URL", f"http://127.0.0.1:{free_port()}/.well-known/jwks.json")
    router = Router(RouterConfig.from_env())
    for event in (infer_event(keyset.token()), sample_event("stop", token=keyset.token())):
        result = router.handle(event)
        assert result["statusCode"] == 503
        assert body(result) == {"error": "auth_unavailable"}
    assert stream_ids(redis_client) == []


# --- 8. bad bodies --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("this is not json", "body"),
        ('["prompt", "hello"]', "body"),
        ('{"idle": 5}', "prompt"),
        ('{"prompt": "hello", "idle": "5"}', "idle"),
        ('{"prompt": "hello", "idle": 3.5}', "idle"),
        ('{"prompt": "hello", "idle": 0}', "idle"),
        ('{"prompt": "hello", "idle": 31}', "idle"),
        ('{"prompt": ""}', "prompt"),
        ('{"prompt": 42}', "prompt"),
        ('{"prompt": "hello", "colour": "red"}', "colour"),
        (json.dumps({"prompt": "x" * (6 * 1024 + 1)}), "prompt"),
    ],
)
def test_bad_body_is_400_naming_the_field(router, redis_client, keyset, raw, field):
    result = router.handle(infer_event(keyset.token(), raw))
    assert result["statusCode"] == 400
    answer = body(result)
    assert answer["error"] == "invalid_request"
    assert answer["field"] == field
    assert isinstance(answer["message"], str) and answer["message"]
    assert stream_ids(redis_client) == []


def test_prompt_limit_is_counted_in_utf8_bytes(router, heartbeat, keyset):
    at_limit = "é" * (3 * 1024)  # 6144 bytes
    assert router.handle(infer_event(keyset.token(), {"prompt": at_limit}))["statusCode"] == 202
    over = router.handle(infer_event(keyset.token(), {"prompt": at_limit + "x"}))
    assert over["statusCode"] == 400
    assert body(over)["field"] == "prompt"


def test_base64_encoded_body_is_decoded(router, heartbeat, redis_client, keyset):
    raw = json.dumps({"prompt": "héllo ✓ 日本", "idle": 2}, ensure_ascii=False).encode()
    event = infer_event(keyset.token(), raw)  # bytes: base64 with isBase64Encoded true
    assert event["isBase64Encoded"] is True

    result = router.handle(event)

    assert result["statusCode"] == 202
    record = redis_client.hgetall(f"job:{body(result)['id']}")
    assert record["prompt"] == "héllo ✓ 日本"
    assert record["idle"] == "2"


def test_invalid_base64_is_400_field_body(router, keyset):
    event = infer_event(keyset.token(), "!!! not base64 !!!")
    event["isBase64Encoded"] = True
    result = router.handle(event)
    assert result["statusCode"] == 400
    assert body(result)["field"] == "body"


@pytest.mark.parametrize("encode", [False, True], ids=["plain", "base64"])
def test_body_over_64_kib_is_413(router, redis_client, keyset, encode):
    raw = json.dumps({"prompt": "x" * (64 * 1024)})
    result = router.handle(infer_event(keyset.token(), raw.encode() if encode else raw))
    assert result["statusCode"] == 413
    assert body(result) == {"error": "payload_too_large", "limit": 65536}
    assert stream_ids(redis_client) == []


def test_body_of_exactly_64_kib_is_parsed_not_refused_for_size(router, keyset):
    raw = '{"prompt": "hello"}'.ljust(64 * 1024)  # trailing whitespace is valid JSON
    assert len(raw) == 64 * 1024
    result = router.handle(infer_event(keyset.token(), raw[:-1] + "!"))
    assert result["statusCode"] == 400  # parsed (trailing garbage), not 413
    assert body(result)["field"] == "body"


ODD_BODIES = [
    pytest.param("", id="empty"),
    pytest.param("   \n\t", id="whitespace"),
    pytest.param("null", id="null"),
    pytest.param("true", id="true"),
    pytest.param("0", id="zero"),
    pytest.param('"a string"', id="string"),
    pytest.param("1e999", id="huge-float"),
    pytest.param("-1e999", id="huge-negative-float"),
    pytest.param("NaN", id="nan"),
    pytest.param('{"prompt": "x", "idle": 1e400}', id="idle-infinite"),
    pytest.param('{"prompt": "x", "idle": NaN}', id="idle-nan"),
    pytest.param('{"prompt": "x", "idle": ' + "9" * 5000 + "}", id="idle-5000-digits"),
    pytest.param('{"prompt": "x", "idle": 99999999999999999999}', id="idle-bigint"),
    pytest.param('{"prompt": "x", "idle": true}', id="idle-bool"),
    pytest.param('{"prompt": "x", "idle": null}', id="idle-null"),
    pytest.param('{"prompt": "x", "temperature": Infinity}', id="temperature-infinity"),
    pytest.param('{"prompt": "x", "temperature": "hot"}', id="temperature-string"),
    pytest.param('{"prompt": "x", "max_tokens": 0}', id="max-tokens-zero"),
    pytest.param('{"prompt": ["x"]}', id="prompt-list"),
    pytest.param('{"prompt": {"text": "x"}}', id="prompt-object"),
    pytest.param('{"prompt": "\\ud800"}', id="prompt-lone-surrogate"),
    pytest.param('{"prompt": "x", "prompt": ""}', id="duplicate-key-last-empty"),
    pytest.param('{"": 1}', id="empty-key"),
    pytest.param('{"prompt": "x"', id="truncated"),
    pytest.param('{"prompt": "x"} trailing', id="trailing-garbage"),
    pytest.param('{"prompt": "a\x00b"}', id="raw-nul-in-string"),
    pytest.param("\x00\x00\x00\x00", id="nul-bytes"),
    pytest.param(b'{"prompt": "\xc3\x28"}', id="invalid-utf8-b64"),
    pytest.param(b'{"prompt": "\xed\xa0\x80"}', id="utf8-surrogate-b64"),
    pytest.param(b"\xff\xfe\x00\x00garbage", id="bom-garbage-b64"),
    pytest.param(b"\x80" * 100, id="high-bytes-b64"),
    pytest.param("x" * (64 * 1024 + 1), id="oversize"),
    pytest.param(
        '{"prompt": "x", "temperature": 1' + "0" * 400 + "}",
        id="temperature-huge-integer",
    ),
    pytest.param(
        "[" * 10000 + "]" * 10000,
        id="nested-arrays-10000",
    ),
    pytest.param(
        '{"a":' * 10000 + "1" + "}" * 10000,
        id="nested-objects-10000",
    ),
]


@pytest.mark.parametrize("raw", ODD_BODIES)
def test_odd_bodies_are_client_errors_never_5xx(router, redis_client, keyset, raw, capsys):
    result = router.handle(infer_event(keyset.token(), raw))
    assert result["statusCode"] in (400, 413)
    answer = body(result)
    assert answer["error"] in ("invalid_request", "payload_too_large")
    if result["statusCode"] == 400:
        assert "field" in answer
    assert stream_ids(redis_client) == []
    assert "Traceback" not in capsys.readouterr().err


# --- 9. ping, health, unknown routes, stop --------------------------------------------
@pytest.mark.parametrize("path", ["/ping", "/health"])
def test_ping_and_health_answer_ok_without_a_token(router, path):
    event = http_event("GET", path)
    result = router.handle(event)
    assert result["statusCode"] == 200
    assert body(result) == {"status": "ok"}
    assert result["headers"]["x-request-id"] == event["requestContext"]["requestId"]


def test_sample_ping_event(router, capsys):
    result = router.handle(sample_event("ping"))
    assert result["statusCode"] == 200
    assert body(result) == {"status": "ok"}
    assert result["headers"]["x-request-id"] == "UsXwYgPyjoEEMdA="
    access = [r for r in stdout_records(capsys) if r.get("message") == "request"]
    assert len(access) == 1
    assert access[0]["route"] == "GET /ping"
    assert access[0]["status"] == 200
    assert access[0]["requestId"] == "UsXwYgPyjoEEMdA="


def test_default_route_key_falls_back_to_method_and_path(router):
    event = http_event("GET", "/health")
    event["routeKey"] = "$default"
    result = router.handle(event)
    assert result["statusCode"] == 200


@pytest.mark.parametrize("method_path", [("GET", "/nowhere"), ("PUT", "/admin/secrets")])
def test_unknown_route_is_404_json(router, method_path):
    method, path = method_path
    result = router.handle(http_event(method, path))
    assert result["statusCode"] == 404
    assert body(result) == {"error": "not_found", "route": f"{method} {path}"}


def test_stop_asks_control_which_stops_a_running_node(router, gpu_node, relay, keyset, capsys):
    ec2().start_instances(InstanceIds=[gpu_node])
    relay.observe()  # EC2's rule told control the node runs

    result = router.handle(sample_event("stop", token=admin_token(keyset, sub="operator")))

    assert result["statusCode"] == 202
    assert body(result) == {"status": "stopping", "instance": gpu_node}
    assert result["headers"]["x-request-id"] == "UsXwJhS0DoEEMbQ="
    # one request, named after the request id (its "=" dropped), saying who asked
    assert relay.requests(Action.STOP) == ["requests/stop/UsXwJhS0DoEEMbQ.json"]
    asked = relay.read("requests/stop/UsXwJhS0DoEEMbQ.json")
    assert (asked["by"], asked["sub"]) == ("router", "operator")
    assert instance_state(gpu_node) == "running"  # the router stops nothing itself
    logged = [r for r in stdout_records(capsys) if r.get("message") == "node stop requested"]
    assert logged[0]["sub"] == "operator"

    [done] = relay.deliver()
    assert (done["action"], done["instance"]) == ("stop", gpu_node)
    assert done["outcome"] in ("stopping", "stopped")  # EC2's answer to StopInstances
    assert instance_state(gpu_node) == "stopped"
    assert relay.state()["node"]["state"] == "stopped"


def test_stop_on_a_stopped_node_is_asked_and_changes_nothing(router, gpu_node, relay, keyset):
    relay.observe()
    result = router.handle(http_event("POST", "/stop", token=admin_token(keyset)))
    assert result["statusCode"] == 202
    assert body(result) == {"status": "stopping", "instance": gpu_node}
    [done] = relay.deliver()
    assert done == {"action": "stop", "outcome": "stopped", "instance": gpu_node}
    assert instance_state(gpu_node) == "stopped"


def test_stop_then_infer_cold_boots_again(router, gpu_node, relay, keyset):
    ec2().start_instances(InstanceIds=[gpu_node])
    relay.observe()
    assert body(router.handle(infer_event(keyset.token())))["status"] == "queued"
    assert (
        router.handle(http_event("POST", "/stop", token=admin_token(keyset)))["statusCode"] == 202
    )
    relay.deliver()
    assert instance_state(gpu_node) == "stopped"

    result = router.handle(infer_event(keyset.token()))

    assert result["statusCode"] == 202
    assert body(result)["status"] == "starting"
    assert len(relay.requests(Action.WAKE)) == 1
    assert outcome(relay.deliver(), Action.WAKE)["started"] is True
    assert instance_state(gpu_node) in ("pending", "running")


def test_stop_without_a_token_is_401(router, gpu_node):
    event = sample_event("stop")
    del event["headers"]["authorization"]
    result = router.handle(event)
    assert result["statusCode"] == 401
    assert body(result) == {"error": "unauthorized"}


def test_stop_with_a_bad_token_is_403(router, gpu_node, relay, keyset):
    ec2().start_instances(InstanceIds=[gpu_node])
    relay.observe()
    result = router.handle(sample_event("stop", token=keyset.token(aud="other")))
    assert result["statusCode"] == 403
    assert relay.requests(Action.STOP) == []
    assert instance_state(gpu_node) == "running"


def test_stop_without_a_node_is_503(router, relay, keyset):
    relay.observe()  # control looked, and found no node
    result = router.handle(sample_event("stop", token=admin_token(keyset)))
    assert result["statusCode"] == 503
    answer = body(result)
    assert answer == {"error": "instance_unavailable", "message": "no GPU node is deployed"}
    assert relay.requests(Action.STOP) == []


def test_a_stop_that_cannot_be_asked_is_503_with_the_detail_logged_not_answered(
    router, s3_stub, keyset, relay, capsys
):
    relay.record("running")
    state = json.dumps(relay.state()).encode()
    s3_stub.add_response("get_object", {"Body": _streaming(state)})
    s3_stub.add_client_error(
        "put_object", service_error_code="AccessDenied", service_message=DENIED,
        http_status_code=403,
    )  # fmt: skip
    result = router.handle(sample_event("stop", token=admin_token(keyset)))
    s3_stub.assert_no_pending_responses()
    assert result["statusCode"] == 503
    answer = body(result)
    assert answer["error"] == "instance_unavailable"
    assert "123456789012" not in result["body"]  # AWS's words stay in the log
    assert "123456789012" in capsys.readouterr().out
    assert relay.requests(Action.STOP) == []


def _streaming(data: bytes):
    from botocore.response import StreamingBody

    return StreamingBody(io.BytesIO(data), len(data))


# --- 10. the Lambda entry point -------------------------------------------------------
def test_lambda_src_router_handler_serves_events_end_to_end(
    router_env, monkeypatch, gpu_node, relay, redis_client, keyset
):
    monkeypatch.setattr(tlops.edge.router, "_router", None)
    handler = load_handler("router")

    ping = handler.lambda_handler(sample_event("ping"), LambdaContext())
    assert ping["statusCode"] == 200
    warm = tlops.edge.router._router
    assert warm is not None

    result = handler.lambda_handler(sample_event("infer", token=keyset.token()), object())
    assert tlops.edge.router._router is warm  # one Router per warm container
    assert result["statusCode"] == 202
    assert body(result)["status"] == "starting"
    assert stream_ids(redis_client) == [body(result)["id"]]
    assert len(relay.requests(Action.WAKE)) == 1
    relay.deliver()
    assert instance_state(gpu_node) in ("pending", "running")


def test_lambda_handler_without_configuration_raises(monkeypatch):
    monkeypatch.setattr(tlops.edge.router, "_router", None)
    for name in FULL_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="TL_REDIS_URL"):
        tlops.edge.router.lambda_handler(http_event("GET", "/ping"))


# --- 11. configuration ----------------------------------------------------------------
FULL_ENV = {
    "TL_REDIS_URL": "redis://127.0.0.1:6379/0",
    "TL_JWT_ISSUER": ISSUER,
    "TL_JWT_AUDIENCE": AUDIENCE,
    "TL_REPLY_BUCKET": "replies",
    "TL_CONTROL_BUCKET": "tinyllama-control-123456789012",
}


def test_config_without_any_variable_names_them_all():
    with pytest.raises(RuntimeError) as raised:
        RouterConfig.from_env({})
    for name in FULL_ENV:
        assert name in str(raised.value)


@pytest.mark.parametrize("missing", list(FULL_ENV))
def test_config_names_exactly_the_missing_variable(missing):
    env = copy.deepcopy(FULL_ENV)
    env[missing] = ""  # set but empty counts as missing
    with pytest.raises(RuntimeError) as raised:
        RouterConfig.from_env(env)
    message = str(raised.value)
    assert missing in message
    for other in set(FULL_ENV) - {missing}:
        assert other not in message


def test_config_jwks_url_defaults_to_the_issuers_well_known_document():
    config = RouterConfig.from_env({**FULL_ENV, "TL_JWT_ISSUER": ISSUER + "/"})
    assert config.issuer == ISSUER
    assert config.jwks_url == f"{ISSUER}/.well-known/jwks.json"


def test_config_reads_overrides():
    config = RouterConfig.from_env(
        {
            **FULL_ENV,
            "TL_JWKS_URL": "http://127.0.0.1:9/jwks.json",
            "TL_PROJECT": "other",
            "TL_RATE_BURST": "7",
            "TL_RATE_PER_MINUTE": "70",
            "TL_COLD_BOOT_ETA_S": "30",
            "TL_WAKE_ETA_S": "300",
            "TL_JOB_TTL_S": "60",
            "TL_QUEUE_CAP_PER_USER": "2",
            "TL_QUEUE_CAP_TOTAL": "9",
        }
    )
    assert config.jwks_url == "http://127.0.0.1:9/jwks.json"
    assert config.project == "other"
    assert (config.limits.burst, config.limits.sustained) == (7, 70)
    assert config.cold_boot_eta_s == 30
    assert config.wake_eta_s == 300
    assert config.job_ttl_s == 60
    assert (config.caps.per_user, config.caps.total) == (2, 9)
    assert config.control_bucket == "tinyllama-control-123456789012"


def test_config_defaults():
    config = RouterConfig.from_env(FULL_ENV)
    assert config.project == "tinyllama"
    assert (config.limits.burst, config.limits.sustained) == (5, 20)
    assert config.cold_boot_eta_s == 90
    assert config.wake_eta_s == 600  # roles/router/defaults: router_wake_eta_s
    assert config.job_ttl_s == 300

"""The boot reporter (`python -m tlops.node.boot`) against real Redis, the IMDSv2 double and
an inference double: the phases in order, what is measured and what is not, and a boot that
does not become ready."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.doubles.inference import InferenceDouble
from tlops import contract
from tlops.contract import boot as record
from tlops.local.imds import ImdsDouble
from tlops.local.services import free_port
from tlops.node import boot, imds

pytestmark = pytest.mark.integration

INSTANCE = "i-0123456789abcdef0"


def redis_now_ms(client) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def settings(redis_url: str, inference_url: str, metadata: str, **more) -> boot.BootSettings:
    env = boot.environment(
        redis_url=redis_url, inference_url=inference_url, imds_url=metadata, model="double-model",
        **more,
    )  # fmt: skip
    return boot.BootSettings.from_env(env)


def test_a_boot_the_router_started_is_measured_phase_by_phase(redis_url, redis_client):
    started = redis_now_ms(redis_client) - 5_000  # the router's StartInstances, 5 s ago
    redis_client.hset(contract.NODE_BOOT_KEY, mapping={
        record.PHASE: "starting instance", record.SINCE_MS: started,
        record.STARTED_MS: started, record.INSTANCE: INSTANCE,
    })  # fmt: skip
    redis_client.lpush(contract.NODE_BOOT_TIMES_KEY, *range(1, 11))  # ten older boots
    redis_client.set(contract.HEARTBEAT_KEY, "1", ex=30)  # the watcher is up
    with ImdsDouble(INSTANCE) as metadata, InferenceDouble() as inference:
        config = settings(redis_url, inference.url, metadata.url)
        worker = boot.Boot(config, boot.redis_py.Redis.from_url(redis_url, decode_responses=True))
        assert worker.run() == 0
        assert inference.completed == 1  # ready means one real completion came back
    # each phase entered in order, each no earlier than the last (ms since the router's start)
    assert list(worker.phases) == ["starting services", "loading model", "ready"]
    elapsed = list(worker.phases.values())
    assert 5_000 <= elapsed[0] <= elapsed[1] <= elapsed[2]
    final = redis_client.hgetall(contract.NODE_BOOT_KEY)
    assert final[record.INSTANCE] == INSTANCE  # from IMDSv2
    assert int(final[record.STARTED_MS]) == started
    times = [int(t) for t in redis_client.lrange(contract.NODE_BOOT_TIMES_KEY, 0, -1)]
    assert len(times) == contract.BOOT_TIMES_KEPT  # the oldest went
    assert 5_000 <= times[0] < 60_000 and times[1:] == list(range(10, 1, -1))


def test_a_boot_nobody_waited_for_is_not_measured(redis_url, redis_client):
    redis_client.set(contract.HEARTBEAT_KEY, "1", ex=30)
    with ImdsDouble(INSTANCE) as metadata, InferenceDouble() as inference:
        config = settings(redis_url, inference.url, metadata.url)
        assert boot.main({**boot.environment(**vars(config))}) == 0
    assert redis_client.hget(contract.NODE_BOOT_KEY, record.PHASE) == "ready"
    assert not redis_client.exists(contract.NODE_BOOT_TIMES_KEY)


def test_a_boot_that_never_gets_ready_says_why_and_exits_1(redis_url, redis_client, capsys):
    redis_client.set(contract.HEARTBEAT_KEY, "1", ex=30)
    nothing = f"http://127.0.0.1:{free_port()}"
    config = settings(redis_url, nothing, nothing, timeout_s=1.5)
    client = boot.redis_py.Redis.from_url(redis_url, decode_responses=True)
    assert boot.Boot(config, client, sleep=lambda _: time.sleep(0.05)).run() == 1
    out = capsys.readouterr().out
    assert "instance id unknown" in out
    assert "no answer from a completion from vLLM within 1.5 s" in out
    assert redis_client.hget(contract.NODE_BOOT_KEY, record.PHASE) == "loading model"


def test_the_tls_listener_is_waited_for_when_given(redis_url, redis_client):
    redis_client.set(contract.HEARTBEAT_KEY, "1", ex=30)
    closed = f"127.0.0.1:{free_port()}"
    with InferenceDouble() as inference:
        config = settings(
            redis_url, inference.url, f"http://{closed}", tls_url=f"https://{closed}", timeout_s=1.0
        )
        client = boot.redis_py.Redis.from_url(redis_url, decode_responses=True)
        assert boot.Boot(config, client, sleep=lambda _: time.sleep(0.05)).run() == 1
    assert redis_client.hget(contract.NODE_BOOT_KEY, record.PHASE) == "starting services"


@pytest.mark.parametrize(
    ("env", "named"),
    [({}, "TL_REDIS_URL"), ({"TL_REDIS_URL": "redis://x", "TL_BOOT_TIMEOUT_S": "soon"},
      "TL_BOOT_TIMEOUT_S"), ({"TL_REDIS_URL": "redis://x", "TL_BOOT_TIMEOUT_S": "0"},
      "TL_BOOT_TIMEOUT_S")],
)  # fmt: skip
def test_bad_settings_exit_2_naming_the_variable(env, named):
    done = subprocess.run(
        [sys.executable, "-m", "tlops.node.boot"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TL_")}, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert named in done.stderr


def test_environment_refuses_what_is_not_a_setting():
    with pytest.raises(TypeError, match="not boot settings: colour"):
        boot.environment(colour="blue")


# --- the IMDSv2 double and the node's client ---------------------------------------------
def test_imdsv2_wants_a_token_and_answers_the_instance_it_is_given(tmp_path):
    import urllib.error
    import urllib.request

    with ImdsDouble(instance_id_file=tmp_path / "instance-id") as metadata:
        with pytest.raises(imds.MetadataUnavailable, match="404"):
            imds.Imds(metadata.url).instance_id()  # no instance yet
        (tmp_path / "instance-id").write_text(INSTANCE + "\n")
        assert imds.Imds(metadata.url).instance_id() == INSTANCE
        with pytest.raises(urllib.error.HTTPError) as plain:  # IMDSv1 is refused
            urllib.request.urlopen(metadata.url + imds.INSTANCE_ID_PATH, timeout=5)
        assert plain.value.code == 401
        no_ttl = urllib.request.Request(metadata.url + imds.TOKEN_PATH, method="PUT")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(no_ttl, timeout=5)
        assert refused.value.code == 400
    with pytest.raises(imds.MetadataUnavailable):
        imds.Imds(metadata.url, timeout_s=0.5).instance_id()  # nothing listens any more
    with pytest.raises(ValueError, match="http://host"):
        imds.Imds("https://169.254.169.254")


# --- a node that boots before its queue ----------------------------------------------------
def test_a_boot_follows_the_queue_to_the_address_control_recorded(
    aws_stand_in, redis_url, redis_client
):
    """The node's environment names the queue the last deploy made; a wake made another one,
    which control recorded in the control bucket's state.json."""
    from tlops.common import aws
    from tlops.common.control_bucket import ControlBucket
    from tlops.contract import control

    s3 = aws.client("s3")
    s3.create_bucket(
        Bucket="control-test", CreateBucketConfiguration={"LocationConstraint": aws.region()}
    )
    queue = {"id": "tinyllama-queue-3", "status": "available", "url": redis_url}
    ControlBucket(s3, "control-test").put_json(
        control.STATE_KEY, {"state": "awake", "queue": queue}
    )
    redis_client.set(contract.HEARTBEAT_KEY, "1", ex=30)
    old = f"redis://127.0.0.1:{free_port()}/0"
    with ImdsDouble(INSTANCE) as metadata, InferenceDouble() as inference:
        config = settings(old, inference.url, metadata.url, control_bucket="control-test",
                          timeout_s=30)  # fmt: skip
        client = boot.redis_py.Redis.from_url(old, decode_responses=True, socket_connect_timeout=1)
        assert boot.Boot(config, client).run() == 0
    assert redis_client.hget(contract.NODE_BOOT_KEY, record.PHASE) == "ready"
    assert redis_client.hget(contract.NODE_BOOT_KEY, record.INSTANCE) == INSTANCE

"""The node learns its deployment at boot: `python -m tlops.node.deployment` against a moto
server over HTTP (the parameter deploy.yml writes) and the IMDSv2 double (the region), and the
file it writes is what the node's programs then run with (the watchdog's tick against a real
redis-server, through the launcher the roles write)."""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from tlops.local.imds import ImdsDouble
from tlops.local.services import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PARAMETER = "/tl-fif/node_settings"
KEY_PARAMETER = "/tl-fif/node_inference_key"
KEY = "k3y-made-by-deploy-yml-0123456789abcdef"
NODE = "i-0123456789abcdef0"
GROUP = grp.getgrgid(os.getgid()).gr_name


@pytest.fixture
def ssm(aws_stand_in):
    """The stand-in's SSM, with the inference key deploy.yml makes (a SecureString)."""
    client = boto3.client("ssm", endpoint_url=aws_stand_in, region_name="eu-west-1")
    put_key(client, KEY)
    return client


@pytest.fixture
def imds_double():
    with ImdsDouble(NODE, region="eu-west-1") as double:
        yield double


def read_settings(env_file: Path, imds_url: str, *extra: str, region: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != "TL_AWS_REGION"}
    if region:
        env["TL_AWS_REGION"] = region
    done = subprocess.run(
        [sys.executable, "-m", "tlops.node.deployment", "--parameter", PARAMETER,
         "--env-file", str(env_file), "--group", GROUP, "--imds-url", imds_url, *extra],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done, lines


def put(ssm, value: str, kind: str = "String") -> None:
    ssm.put_parameter(Name=PARAMETER, Value=value, Type=kind, Overwrite=True)


def put_key(ssm, value: str, kind: str = "SecureString") -> None:
    ssm.put_parameter(Name=KEY_PARAMETER, Value=value, Type=kind, Overwrite=True)


def sourced(env_file: Path) -> dict[str, str]:
    script = f'set -a && . "{env_file}" && env -0'
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, check=True, env={})
    pairs = (item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    return {k: v for k, v in pairs if k.startswith(("TL_", "VLLM_"))}


def test_the_parameter_becomes_the_environment_file(ssm, imds_double, tmp_path):
    settings = {"redis_url": "rediss://queue.example:6379/0", "project": "tinyllama"}
    put(ssm, json.dumps({**settings, "later_key": "x"}))
    env_file = tmp_path / "etc" / "deployment.env"
    done, lines = read_settings(env_file, imds_double.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[-1]["message"] == "deployment settings written"
    assert lines[-1]["region"] == "eu-west-1" and lines[-1]["ignored_keys"] == ["later_key"]
    assert sourced(env_file) == {
        "TL_REDIS_URL": "rediss://queue.example:6379/0",
        "TL_PROJECT": "tinyllama",
        "VLLM_API_KEY": KEY,
        "TL_INFERENCE_API_KEY": KEY,
    }
    mode = env_file.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o640 and mode.st_gid == os.getgid()
    assert [p.name for p in env_file.parent.iterdir()] == ["deployment.env"]  # no temp left

    # A redeploy that changes a value reaches the node at its next boot.
    put(ssm, json.dumps({**settings, "redis_url": "redis://other:6379/0"}))
    assert read_settings(env_file, imds_double.url)[0].returncode == 0
    assert sourced(env_file)["TL_REDIS_URL"] == "redis://other:6379/0"


# --- the queue of the current wake -------------------------------------------------------
CONTROL_BUCKET = "tinyllama-control-123456789012"
DEPLOYED_QUEUE = "rediss://tinyllama-queue-1.abc.euw1.cache.amazonaws.com:6379/0"
WOKEN_QUEUE = "rediss://tinyllama-queue-2.def.euw1.cache.amazonaws.com:6379/0"


def control_bucket(state: dict | None) -> None:
    """The control bucket, with control's state.json when `state` is given."""
    s3 = boto3.client("s3", endpoint_url=os.environ["TL_AWS_ENDPOINT_URL"], region_name="eu-west-1")
    s3.create_bucket(
        Bucket=CONTROL_BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    if state is not None:
        s3.put_object(Bucket=CONTROL_BUCKET, Key="state.json", Body=json.dumps(state).encode())


def with_bucket() -> str:
    return json.dumps(
        {"redis_url": DEPLOYED_QUEUE, "project": "tinyllama", "control_bucket": CONTROL_BUCKET}
    )


def test_the_queue_control_recorded_wins_over_the_parameters(ssm, imds_double, tmp_path):
    """A wake made a new queue (a new address); deploy.yml's parameter names the first one."""
    put(ssm, with_bucket())
    woken = {"id": "tinyllama-queue-2", "status": "available", "url": WOKEN_QUEUE}
    control_bucket({"state": "awake", "queue": woken})
    env_file = tmp_path / "deployment.env"
    done, lines = read_settings(env_file, imds_double.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sourced(env_file) == {
        "TL_REDIS_URL": WOKEN_QUEUE,
        "TL_PROJECT": "tinyllama",
        "TL_CONTROL_BUCKET": CONTROL_BUCKET,
        "VLLM_API_KEY": KEY,
        "TL_INFERENCE_API_KEY": KEY,
    }
    assert "ignored_keys" not in lines[-1]  # control_bucket is a setting, not a stray key


@pytest.mark.parametrize(
    "state",
    [
        None,  # control has recorded nothing yet
        {"state": "asleep", "queue": None},
        {"state": "waking", "queue": {"id": "tinyllama-queue-2", "status": "creating", "url": ""}},
        {"state": "awake", "queue": {"id": "q-2", "status": "available", "url": "http://q:1"}},
    ],
    ids=["no-state", "asleep", "creating", "not-a-redis-url"],
)
def test_without_a_queue_up_the_parameters_url_is_kept(ssm, imds_double, tmp_path, state):
    put(ssm, with_bucket())
    control_bucket(state)
    env_file = tmp_path / "deployment.env"
    done, lines = read_settings(env_file, imds_double.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sourced(env_file)["TL_REDIS_URL"] == DEPLOYED_QUEUE
    assert sourced(env_file)["TL_CONTROL_BUCKET"] == CONTROL_BUCKET
    assert any(line["message"] == "no queue up yet: the programs look again once they start"
               for line in lines)  # fmt: skip


def test_an_unreadable_control_bucket_keeps_the_parameters_url_and_says_so(
    ssm, imds_double, tmp_path
):
    put(ssm, with_bucket())  # the bucket was never made
    env_file = tmp_path / "deployment.env"
    done, lines = read_settings(env_file, imds_double.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sourced(env_file)["TL_REDIS_URL"] == DEPLOYED_QUEUE
    [warned] = [line for line in lines if line["message"] == "queue from the parameter"]
    assert warned["level"] == "WARNING" and "NoSuchBucket" in warned["reason"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not json", "is not JSON"),
        ('["redis://q:6379"]', "must hold a JSON object"),
        ('{"project": "tinyllama"}', "lacks redis_url"),
        ('{"redis_url": "http://q:6379", "project": "tinyllama"}', "redis_url must be a redis://"),
        ('{"redis_url": "redis://:pw@q:6379", "project": "tinyllama"}', "without credentials"),
        ('{"redis_url": "redis://q:6379", "project": "two words"}', "project must be a tag"),
        (
            '{"redis_url": "redis://q:6379", "project": "tinyllama", "control_bucket": "Not_One"}',
            "control_bucket must be a bucket name",
        ),
    ],
)
def test_a_garbled_parameter_leaves_no_file_and_says_why(ssm, imds_double, tmp_path, value, reason):
    env_file = tmp_path / "deployment.env"
    env_file.write_text("TL_REDIS_URL='redis://last-boot:6379/0'\n")  # a previous boot's
    put(ssm, value)
    done, lines = read_settings(env_file, imds_double.url)
    assert done.returncode == 1
    assert lines[-1]["level"] == "ERROR" and lines[-1]["message"] == "no deployment settings"
    assert reason in lines[-1]["reason"] and PARAMETER in lines[-1]["reason"]
    assert not env_file.exists()


# --- the inference key ---------------------------------------------------------------------
SETTINGS = '{"redis_url": "redis://q:6379/0", "project": "tinyllama"}'


def test_the_key_is_read_decrypted_and_never_logged(ssm, imds_double, tmp_path):
    put(ssm, SETTINGS)
    done, _ = read_settings(tmp_path / "deployment.env", imds_double.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sourced(tmp_path / "deployment.env")["VLLM_API_KEY"] == KEY
    assert KEY not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("stored", "kind", "reason"),
    [
        (None, None, f"SSM parameter {KEY_PARAMETER} does not exist in eu-west-1: run deploy.yml"),
        (KEY, "String", f"{KEY_PARAMETER} is a String, not a SecureString"),
        ("short", "SecureString", f"{KEY_PARAMETER} must hold 32 to 512 visible ASCII"),
        ("two words " + "x" * 40, "SecureString", "visible ASCII"),
    ],
    ids=["missing", "plain-string", "short", "whitespace"],
)
def test_without_a_usable_key_no_program_gets_settings(
    ssm, imds_double, tmp_path, stored, kind, reason
):
    """Fail closed: no file, so vLLM (and every program that needs the deployment) does not
    start, rather than serve without a key."""
    put(ssm, SETTINGS)
    if stored is None:
        ssm.delete_parameter(Name=KEY_PARAMETER)
    else:
        put_key(ssm, stored, kind)
    env_file = tmp_path / "deployment.env"
    env_file.write_text(f"VLLM_API_KEY='{KEY}'\n")  # a previous boot's
    done, lines = read_settings(env_file, imds_double.url)
    assert done.returncode == 1
    assert lines[-1]["message"] == "no deployment settings" and reason in lines[-1]["reason"]
    assert not env_file.exists()


def test_the_file_with_the_key_lives_on_a_tmpfs_that_systemd_makes_at_each_start():
    defaults = yaml.safe_load((ROOT / "roles/supervisor/defaults/main.yml").read_text())
    written = Path(defaults["supervisor_deployment_env_file"])
    assert written.parts[1] == "run"  # /run is a tmpfs: RAM, empty at every boot
    assert str(written.parent) in defaults["supervisor_runtime_directories"]
    watchdog = yaml.safe_load((ROOT / "roles/idle_watchdog/defaults/main.yml").read_text())
    assert watchdog["idle_watchdog_deployment_env_file"] == str(written)


def test_a_missing_parameter_says_to_deploy(aws_stand_in, imds_double, tmp_path):
    done, lines = read_settings(tmp_path / "deployment.env", imds_double.url)
    assert done.returncode == 1
    assert "does not exist in eu-west-1: run deploy.yml" in lines[-1]["reason"]
    assert not (tmp_path / "deployment.env").exists()


def test_a_secure_string_is_not_taken_for_plain_settings(ssm, imds_double, tmp_path):
    put(ssm, '{"redis_url": "redis://q:6379", "project": "tinyllama"}', kind="SecureString")
    done, lines = read_settings(tmp_path / "deployment.env", imds_double.url)
    assert done.returncode == 1 and "is a SecureString, not a String" in lines[-1]["reason"]


def test_without_imds_the_baked_region_is_used_and_said(ssm, tmp_path):
    put(ssm, '{"redis_url": "redis://q:6379/0", "project": "tinyllama"}')
    nobody = f"http://127.0.0.1:{free_port()}"
    done, lines = read_settings(tmp_path / "d.env", nobody, region="eu-west-1")
    assert done.returncode == 0, done.stdout
    assert lines[0]["message"] == "region from the image" and lines[0]["region"] == "eu-west-1"
    done, lines = read_settings(tmp_path / "d.env", nobody)
    assert done.returncode == 1 and "no region" in lines[-1]["reason"]


def test_an_unreachable_ssm_is_retried_then_given_up(imds_double, tmp_path, monkeypatch):
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "standin-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "standin-secret")
    done, lines = read_settings(tmp_path / "d.env", imds_double.url, "--timeout-s", "2")
    assert done.returncode == 1 and "gave up after 2 s" in lines[-1]["reason"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--parameter", "no-slash"), ("--env-file", "relative.env"), ("--timeout-s", "0"),
     ("--imds-url", "https://169.254.169.254"), ("--key-parameter", "/tl-fif/node_settings")],
)  # fmt: skip
def test_a_bad_flag_exits_2_naming_it(tmp_path, flag, value):
    args = {"--env-file": str(tmp_path / "d.env"), flag: value}
    argv = [x for pair in args.items() for x in pair]
    done = subprocess.run(
        [sys.executable, "-m", "tlops.node.deployment", *argv],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and flag in done.stderr


def launcher(role: str, name: str) -> str:
    return yaml.safe_load((ROOT / "roles" / role / "vars" / "main.yml").read_text())[name]


def test_the_launcher_runs_a_program_with_the_settings_and_refuses_without(tmp_path):
    own = tmp_path / "watcher.env"
    own.write_text("TL_MODEL='m'\n")
    deployment = tmp_path / "deployment.env"
    deployment.write_text("TL_REDIS_URL='redis://q:6379/0'\nTL_PROJECT='tinyllama'\n")
    script = launcher("supervisor", "_supervisor_env_launcher_deployment")
    show = ["/bin/sh", "-c", 'echo "$TL_MODEL $TL_REDIS_URL $TL_PROJECT"']
    done = subprocess.run(
        ["/bin/sh", "-c", script, str(own), str(deployment), *show],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.split() == ["m", "redis://q:6379/0", "tinyllama"]
    deployment.unlink()
    done = subprocess.run(
        ["/bin/sh", "-c", script, str(own), str(deployment), *show],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 78 and done.stdout == ""
    said = json.loads(done.stderr)
    assert said["message"] == "no deployment settings" and said["env_file"] == str(deployment)


def test_the_watchdog_tick_runs_on_the_settings_and_stops_nothing_without(
    ssm, imds_double, redis_url, redis_client, tmp_path
):
    """The cron line's launcher: with the file the tick decides from the real queue (a job
    waits: busy); without it, it logs `cannot decide` and exits 1, stopping nothing."""
    redis_client.xadd("jobs", {"id": "a-job"})
    put(ssm, json.dumps({"redis_url": redis_url, "project": "tinyllama"}))
    deployment = tmp_path / "deployment.env"
    assert read_settings(deployment, imds_double.url)[0].returncode == 0
    own = tmp_path / "idle-watchdog.env"
    state = tmp_path / "watcher"
    state.mkdir()
    own.write_text(
        f"TL_WATCHER_STATE_DIR='{state}'\nTL_WATCHDOG_IMDS_URL='{imds_double.url}'\n"
        f"TL_WATCHDOG_IDLE_MINUTES='30'\nPYTHONPATH='{ROOT / 'src'}'\n"
    )
    script = launcher("idle_watchdog", "_idle_watchdog_launcher_deployment")
    tick = [sys.executable, "-m", "tlops.node.watchdog", "tick"]
    done = subprocess.run(
        ["/bin/sh", "-c", script, str(own), str(deployment), *tick],
        capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ),
    )  # fmt: skip
    decided = json.loads(done.stdout.splitlines()[-1])
    assert done.returncode == 0, done.stdout + done.stderr
    assert decided["message"] == "busy" and decided["project"] == "tinyllama"
    deployment.unlink()
    done = subprocess.run(
        ["/bin/sh", "-c", script, str(own), str(deployment), *tick],
        capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ),
    )  # fmt: skip
    said = json.loads(done.stdout)
    assert done.returncode == 1 and said["decision"] == "cannot decide"
    assert "nothing is stopped" in said["reason"]

"""The node's GPU emitter (`python -m tlops.node.gpu_metrics`) against the stand-in's
CloudWatch, with a stand-in `nvidia-smi` (a script printing what the real one prints)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tlops.common import aws
from tlops.common.telemetry import NAMESPACE
from tlops.node import gpu_metrics

pytestmark = pytest.mark.integration

# What `nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total
# --format=csv,noheader,nounits` prints on a g4dn.xlarge (one T4) serving a small model.
T4 = "37, 3072, 15360\n"


def fake_nvidia_smi(tmp_path: Path, output: str, code: int = 0) -> str:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {code}\n")
    script.chmod(0o755)
    return str(script)


def emitter(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tlops.node.gpu_metrics", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def stand_in_env(aws_stand_in) -> dict[str, str]:
    return {"TL_AWS_ENDPOINT_URL": aws_stand_in, "TL_AWS_REGION": "eu-west-1"}


def test_parse_reads_each_gpu_and_skips_what_is_not_a_number():
    text = "37, 3072, 15360\n[N/A], 10, 100\n5, 1, 2\ngarbage\n"
    assert gpu_metrics.parse(text) == [
        gpu_metrics.Reading(37.0, 3072.0, 15360.0),
        gpu_metrics.Reading(5.0, 1.0, 2.0),
    ]


def test_several_gpus_are_averaged_and_every_metric_is_sent():
    data = gpu_metrics.metric_data(
        [gpu_metrics.Reading(40, 1000, 10000), gpu_metrics.Reading(60, 3000, 10000)]
    )
    assert {d["MetricName"]: d["Value"] for d in data} == {
        "GPUUtilization": 50.0,
        "GPUMemoryUtilization": 20.0,
        "GPUMemoryUsed": 2000.0,
    }
    assert [d["MetricName"] for d in data] == list(gpu_metrics.METRICS)


def test_one_round_lands_in_the_projects_namespace(tmp_path, stand_in_env):
    done = emitter("--once", "--nvidia-smi", fake_nvidia_smi(tmp_path, T4), env=stand_in_env)
    _, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    cloudwatch = aws.client("cloudwatch")
    listed = cloudwatch.list_metrics(Namespace=NAMESPACE)["Metrics"]
    assert {m["MetricName"] for m in listed} == set(gpu_metrics.METRICS)
    stats = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName="GPUMemoryUtilization",
        StartTime=time.time() - 600,
        EndTime=time.time() + 60,
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert [round(p["Maximum"], 2) for p in stats] == [20.0]


def test_without_a_gpu_once_exits_2_saying_why(tmp_path, stand_in_env):
    missing = emitter("--once", "--nvidia-smi", str(tmp_path / "absent"), env=stand_in_env)
    _, err = missing.communicate(timeout=60)
    assert missing.returncode == 2 and "could not run" in err
    failing = fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed", code=9)
    broken = emitter("--once", "--nvidia-smi", failing, env=stand_in_env)
    _, err = broken.communicate(timeout=60)
    assert broken.returncode == 2 and "exited 9" in err


def test_the_loop_survives_a_missing_gpu_and_stops_on_sigterm(tmp_path, stand_in_env):
    loop = emitter(
        "--interval", "0.1", "--nvidia-smi", str(tmp_path / "absent"), "--print",
        env=stand_in_env,
    )  # fmt: skip
    time.sleep(1.5)
    assert loop.poll() is None, "the emitter died without a GPU"
    loop.send_signal(signal.SIGTERM)
    out, _ = loop.communicate(timeout=10)
    assert loop.returncode == 0
    warnings = [line for line in out.splitlines() if "no GPU to report on" in line]
    assert len(warnings) == 1, out  # said once, not every round


def test_a_bad_interval_is_refused_by_name():
    with pytest.raises(SystemExit) as exited:
        gpu_metrics.main(["--interval", "0"])
    assert exited.value.code == 2

"""The GPU node's own metrics: what `nvidia-smi` says, sent to CloudWatch every minute.

    python -m tlops.node.gpu_metrics [--interval 60] [--once] [--print]

Each round reads utilisation and memory of every GPU with one `nvidia-smi --query-gpu`
call and sends them with one `PutMetricData` to the project's namespace (TLFIF),
which is the only namespace the node's role may write (access.yml). With several
GPUs the values are averaged (a g4dn.xlarge has one T4). A node without a GPU (the
t3.small shape) has nothing to say: the emitter says so once and keeps looking, so a
supervisor does not see it die.

Why not the CloudWatch agent (its `nvidia_gpu` section reads the same tool): the
agent is another daemon with its own configuration and updates on the AMI, for two
numbers; this emitter is 150 lines, runs and is tested on a machine without a GPU
(`--nvidia-smi` names a stand-in), and the metric names it sends are `METRICS`
below, which the dashboard test reads. What the agent would add (host memory, disk)
the stack does not chart.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from tlops.common.telemetry import NAMESPACE, Telemetry

# metric name → (unit, how it is computed from one GPU's reading)
METRICS: dict[str, str] = {
    "GPUUtilization": "Percent",  # utilization.gpu
    "GPUMemoryUtilization": "Percent",  # memory.used / memory.total
    "GPUMemoryUsed": "Megabytes",  # memory.used (MiB, as nvidia-smi counts them)
}
QUERY = "utilization.gpu,memory.used,memory.total"
DEFAULT_INTERVAL_S = 60.0

telemetry = Telemetry("gpu_metrics")


class NoGpu(Exception):
    """nvidia-smi is missing, failed, or lists no GPU."""


class Reading(NamedTuple):
    utilization: float  # percent
    memory_used_mib: float
    memory_total_mib: float


def parse(text: str) -> list[Reading]:
    """One Reading per line of `nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits`.

    A GPU whose fields are not numbers (`[N/A]`, `[Not Supported]`) is skipped."""
    readings = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 3:
            continue
        try:
            utilization, used, total = (float(part) for part in parts)
        except ValueError:
            continue
        readings.append(Reading(utilization, used, total))
    return readings


def read(nvidia_smi: str = "nvidia-smi", timeout: float = 10.0) -> list[Reading]:
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv, no shell
            [nvidia_smi, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NoGpu(f"{nvidia_smi} could not run: {exc}") from None
    if done.returncode != 0:
        raise NoGpu(f"{nvidia_smi} exited {done.returncode}: {done.stderr.strip()[:200]}")
    readings = parse(done.stdout)
    if not readings:
        raise NoGpu(f"{nvidia_smi} listed no GPU with numeric readings")
    return readings


def metric_data(readings: Sequence[Reading]) -> list[dict[str, Any]]:
    """The PutMetricData entries for one round: each metric averaged over the GPUs."""
    count = len(readings)
    values = {
        "GPUUtilization": sum(r.utilization for r in readings) / count,
        "GPUMemoryUtilization": sum(
            100.0 * r.memory_used_mib / r.memory_total_mib if r.memory_total_mib else 0.0
            for r in readings
        )
        / count,
        "GPUMemoryUsed": sum(r.memory_used_mib for r in readings) / count,
    }
    return [
        {"MetricName": name, "Unit": METRICS[name], "Value": round(values[name], 2)}
        for name in METRICS
    ]


def emit_once(cloudwatch: Any, nvidia_smi: str, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Read the GPUs and send one round; returns what was sent (raises NoGpu)."""
    data = metric_data(read(nvidia_smi))
    if dry_run:
        print(f"{NAMESPACE} {data}", flush=True)
    else:
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data)
    return data


def run(
    cloudwatch: Callable[[], Any],
    *,
    nvidia_smi: str,
    interval_s: float,
    stop: threading.Event,
    dry_run: bool = False,
) -> None:
    """Emit every `interval_s` until `stop` is set; failures are logged, never fatal."""
    from botocore.exceptions import BotoCoreError, ClientError

    said_no_gpu = False
    while not stop.is_set():
        try:
            emit_once(None if dry_run else cloudwatch(), nvidia_smi, dry_run=dry_run)
            said_no_gpu = False
        except NoGpu as exc:
            if not said_no_gpu:
                telemetry.log("WARNING", "no GPU to report on", reason=str(exc))
                said_no_gpu = True
        except (BotoCoreError, ClientError) as exc:  # CloudWatch unreachable: next round
            telemetry.log("ERROR", "PutMetricData failed", reason=repr(exc))
        stop.wait(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tlops.node.gpu_metrics", description=__doc__)
    parser.add_argument(
        "--interval", type=float, default=DEFAULT_INTERVAL_S, help="seconds between rounds"
    )
    parser.add_argument("--once", action="store_true", help="one round, then exit (2: no GPU)")
    parser.add_argument(
        "--print", dest="dry_run", action="store_true", help="print the round, send nothing"
    )
    parser.add_argument("--nvidia-smi", default="nvidia-smi", help="the nvidia-smi to run")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error(f"--interval must be greater than 0, got {args.interval:g}")

    def cloudwatch() -> Any:
        from tlops.common import aws

        return aws.client("cloudwatch", connect_timeout=2.0, read_timeout=5.0)

    if args.once:
        try:
            emit_once(None if args.dry_run else cloudwatch(), args.nvidia_smi, dry_run=args.dry_run)
        except NoGpu as exc:
            print(f"gpu_metrics: {exc}", file=sys.stderr)
            return 2
        return 0
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(
        cloudwatch,
        nvidia_smi=args.nvidia_smi,
        interval_s=args.interval,
        stop=stop,
        dry_run=args.dry_run,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

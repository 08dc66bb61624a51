"""Helpers shared by the watcher and chaos tests: enqueue jobs, run the watcher as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from tlops import contract
from tlops.common import aws
from tlops.contract import new_job_id, records
from tlops.contract.request import InferRequest
from tlops.edge.admission import RateLimits, admit
from tlops.edge.resp import RespClient

BUCKET = "replies-test"
NO_LIMITS = RateLimits(burst=10**9, sustained=10**9)


def enqueue(
    redis_url: str,
    count: int,
    *,
    sub: str = "user-a",
    prompt: Callable[[int], str] = lambda i: f"prompt number {i}",
    job_ttl_s: int = contract.QUEUED_TTL_SECONDS,
    idle: int = contract.IDLE_DEFAULT_MINUTES,
) -> list[str]:
    """Admit `count` jobs the way the router does (same script); returns their ids in order."""
    client = RespClient(redis_url, timeout=2.0)
    ids = []
    try:
        for index in range(count):
            job_id = new_job_id()
            fields = records.queued(
                InferRequest(prompt=prompt(index), idle=idle),
                sub=sub,
                job_id=job_id,
                reply_bucket=BUCKET,
            )
            result = admit(
                client,
                sub=sub,
                job_id=job_id,
                job_fields=fields,
                limits=NO_LIMITS,
                job_ttl_s=job_ttl_s,
                within_s=1.0,  # half the client's reply timeout, as the router does
            )
            assert result.outcome == "queued"
            ids.append(job_id)
    finally:
        client.close()
    return ids


def make_bucket(*, versioned: bool = False) -> None:
    """The reply bucket; versioning lets a test count how many times a key was written."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region()})
    if versioned:
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})


def result_of(job_id: str, sub: str = "user-a") -> dict:
    body = aws.client("s3").get_object(Bucket=BUCKET, Key=f"{sub}/{job_id}.json")["Body"].read()
    return json.loads(body)


def write_count(job_id: str, sub: str = "user-a") -> int:
    """How many versions of the job's result exist (bucket made with versioned=True)."""
    reply = aws.client("s3").list_object_versions(Bucket=BUCKET, Prefix=f"{sub}/{job_id}.json")
    return len(reply.get("Versions", []))


def statuses(redis_client, ids: Iterable[str]) -> dict[str, str | None]:
    pipe = redis_client.pipeline(transaction=False)
    ids = list(ids)
    for job_id in ids:
        pipe.hget(contract.job_key(job_id), "status")
    return dict(zip(ids, pipe.execute(), strict=True))


def settled(redis_client, ids: Iterable[str]) -> bool:
    finished = {contract.JobStatus.DONE, contract.JobStatus.FAILED, contract.JobStatus.EXPIRED}
    return all(status in finished for status in statuses(redis_client, ids).values())


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll until `check()`; the timeout only bounds a failing test, nothing is timed."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def dead_letters(redis_client) -> dict[str, dict[str, str]]:
    return {f["id"]: f for _, f in redis_client.xrange(contract.DEAD_LETTER_STREAM)}


def pending_count(redis_client) -> int:
    return redis_client.xpending(contract.JOB_STREAM, contract.CONSUMER_GROUP)["pending"]


class WatcherProcess:
    """`python -m tlops.node.watcher` as a real child process, its JSON log kept in a file."""

    def __init__(self, log_dir: Path, redis_url: str, inference_url: str, *args: str):
        self.log_path = log_dir / f"watcher-{time.monotonic_ns()}.log"
        self.state_dir = log_dir / "state"
        self.argv = [
            sys.executable,
            "-m",
            "tlops.node.watcher",
            "--redis-url",
            redis_url,
            "--inference-url",
            inference_url,
            "--state-dir",
            str(self.state_dir),
            *args,
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> WatcherProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
            )
        return self

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logs(self) -> list[dict]:
        lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                records.append({"message": line})
        return records

    def stop(self) -> None:
        """SIGTERM (it drains and exits, writing its coverage data), SIGKILL if it lingers."""
        if self.alive:
            self.signal(signal.SIGTERM)
            try:
                self.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.wait()

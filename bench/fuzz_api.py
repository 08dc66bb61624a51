"""The API against its description: schemathesis runs of openapi.yaml on a local stack.

`make fuzz-api` (minutes, so by hand and never in `make test` or CI). A local stack is
brought up and deployed (`deploy.yml`, as the tests' stacks are), with a watcher on the
inference double, so jobs really run; schemathesis (from its own venv, requirements/fuzz.in)
then generates requests from openapi.yaml against the gateway, three times:

1. an ordinary user's ID token (the `/stop` and `/resize` routes answer it 403);
2. a token of the `admins` group, so the admin routes are reached too;
3. the watcher stopped (its heartbeat gone: the node is not awake), a third user: the
   synchronous /v1 routes must answer the documented 503 with `Retry-After` at most 30 s.

Each run checks `not_a_server_error`, `status_code_conformance`,
`content_type_conformance`, `response_schema_conformance` and
`response_headers_conformance`: every answer is one the description lists, in the shape
and with the headers it gives. 503 is let through schemathesis' `not_a_server_error`
(the API documents it) and judged here from the run's HAR log instead: a 5xx counts as
documented only as a 503 with a whole `Retry-After` of 1 to 30 seconds; any other 5xx
fails the run, and the third run fails unless a synchronous route answered
`node_not_awake` at least once (else the node was not really asleep).

The runs read a copy of openapi.yaml in which the requests' `model` is the one id
`GET /v1/models` lists: the description cannot name it (each deployment serves its own),
and with any other id every /v1 request is 400 `model_not_found` before it reaches a
queue, a wait or the node, which would leave those paths untried.

Left out on purpose: `positive_data_acceptance` and `negative_data_rejection`. They
judge the router's validation against what the schema can say, and the router knows
more than a schema can: a `cursor` is opaque (only a `next_cursor` the list gave is
one; any other string is 400), the `model` must be the served one (see above), and a
conversation whose texts are all empty is refused (a sum over the messages no JSON
Schema expresses). Those are refusals with a 4xx naming the field, as the API promises,
not divergences to fix.

    make fuzz-api [FUZZ_ARGS="--max-examples 60 --seed 1"]
    PYTHONPATH=. .venv/bin/python bench/fuzz_api.py --schemathesis .venv-fuzz/bin/st

Prints one line per run (cases generated, failures, 5xx answers other than the
documented 503) and exits 1 when any run failed; the stack is torn down on any exit.
Each run's schemathesis output and HAR log stay in the folder printed at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis
import yaml

from tests.doubles.inference import InferenceDouble
from tlops import contract
from tlops.cli import playbooks
from tlops.local import users
from tlops.local.services import free_port
from tlops.local.stack import LocalStack

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "openapi.yaml"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)
# openapi.yaml: "This 503 is the one documented 5xx of the API" (OpenAIUnavailable), and
# POST /infer's queue_full; both with a Retry-After of at most 30 s.
CONFIG = '[checks.not_a_server_error]\nexpected-statuses = ["2xx", "3xx", "4xx", "503"]\n'
RETRY_AFTER_MAX_S = 30
SYNC_ROUTES = {("POST", "/v1/chat/completions"), ("POST", "/v1/responses")}
NOT_AWAKE = "node_not_awake"
# The request bodies whose `model` must be the served id.
MODEL_REQUESTS = ("ResponseRequest", "ChatCompletionRequest")


@dataclass
class Outcome:
    """What one schemathesis run found."""

    name: str
    returncode: int
    cases: int
    failures: int
    undocumented_5xx: list[str] = field(default_factory=list)
    not_awake_503s: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.undocumented_5xx and not self.problems

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        extra = "".join(f"; {problem}" for problem in self.problems)
        return (
            f"{self.name}: {verdict}: {self.cases} cases generated, {self.failures} failures, "
            f"{len(self.undocumented_5xx)} undocumented 5xx, "
            f"{self.not_awake_503s} sync {NOT_AWAKE} 503s{extra}"
        )


def header(headers: list[dict[str, str]], name: str) -> str | None:
    return next((h["value"] for h in headers if h["name"].lower() == name.lower()), None)


def judge_server_errors(har: Path, base_url: str) -> tuple[list[str], int]:
    """The 5xx answers of a HAR log that are not the documented 503 (as `METHOD path
    status`), and how many synchronous /v1 requests were answered `node_not_awake`."""
    undocumented: list[str] = []
    not_awake = 0
    base_path = urlsplit(base_url).path.rstrip("/")
    for entry in json.loads(har.read_text())["log"]["entries"]:
        status = entry["response"]["status"]
        if status < 500:
            continue
        method = entry["request"]["method"]
        path = urlsplit(entry["request"]["url"]).path.removeprefix(base_path)
        retry_after = header(entry["response"]["headers"], "Retry-After") or ""
        documented = (
            status == 503 and retry_after.isdigit() and 1 <= int(retry_after) <= RETRY_AFTER_MAX_S
        )
        if not documented:
            undocumented.append(f"{method} {path} {status} (Retry-After {retry_after!r})")
            continue
        body = entry["response"].get("content", {}).get("text") or "{}"
        try:
            code = (json.loads(body).get("error") or {}).get("code")
        except (ValueError, AttributeError):
            code = None
        if (method, path) in SYNC_ROUTES and code == NOT_AWAKE:
            not_awake += 1
    return undocumented, not_awake


def served_model(base_url: str, token: str) -> str:
    """The model id the /v1 routes answer to, as `GET /v1/models` lists it."""
    request = urllib.request.Request(
        f"{base_url}/v1/models", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)["data"][0]["id"]


def spec_for(model: str, logs: Path) -> Path:
    """openapi.yaml as JSON, the requests' `model` narrowed to the served id."""
    spec = yaml.safe_load(SPEC.read_text())
    for request in MODEL_REQUESTS:
        spec["components"]["schemas"][request]["properties"]["model"]["enum"] = [model]
    path = logs / "openapi.json"
    path.write_text(json.dumps(spec, indent=1))
    return path


def count(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    return int(found[1]) if found else 0


def run_schemathesis(
    name: str, *, spec: Path, token: str, base_url: str, logs: Path, args: argparse.Namespace
) -> Outcome:
    """One `st run` of `spec` as the token's user; its output and HAR log under `logs`."""
    config = logs / "schemathesis.toml"
    config.write_text(CONFIG)
    har = logs / f"{name}.har"
    argv = [
        str(args.schemathesis), "--config-file", str(config), "--no-color", "run", str(spec),
        "--url", base_url,
        "--header", f"Authorization: Bearer {token}",
        "--checks", CHECKS,
        "--max-examples", str(args.max_examples),
        "--report", "har", "--report-har-path", str(har),
        "--request-timeout", "60",
    ]  # fmt: skip
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    done = subprocess.run(argv, cwd=logs, capture_output=True, text=True, check=False)
    (logs / f"{name}.log").write_text(done.stdout + done.stderr)
    outcome = Outcome(
        name,
        done.returncode,
        cases=count(r"(\d+) generated", done.stdout),
        failures=count(r"(\d+) unique failures?", done.stdout),
    )
    if har.exists():
        outcome.undocumented_5xx, outcome.not_awake_503s = judge_server_errors(har, base_url)
    else:
        outcome.problems.append(f"no HAR log (schemathesis exited {done.returncode})")
    return outcome


def start_watcher(stack: LocalStack, double: InferenceDouble) -> subprocess.Popen:
    argv = [
        sys.executable, "-m", "tlops.node.watcher", "--redis-url", stack.redis_url,
        "--inference-url", double.url, "--concurrency", "4",
    ]  # fmt: skip
    return subprocess.Popen(
        argv,
        env={**os.environ, **stack.env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_watcher(watcher: subprocess.Popen, stack: LocalStack) -> None:
    """SIGTERM: the watcher drains and deletes its heartbeat; wait until the key is gone
    (it expires on its own within the TTL should the delete be lost)."""
    watcher.terminate()
    watcher.wait(timeout=60)
    client = redis.Redis.from_url(stack.redis_url)
    deadline = time.monotonic() + contract.HEARTBEAT_TTL_SECONDS + 5
    while client.exists(contract.HEARTBEAT_KEY) and time.monotonic() < deadline:
        time.sleep(0.5)
    client.close()


def fuzz(args: argparse.Namespace, logs: Path) -> list[Outcome]:
    state_dir = Path(tempfile.mkdtemp(prefix="tlops-fuzz-"))
    ports = {name: free_port() for name in ("moto", "redis", "gateway", "inference")}
    stack = LocalStack(state_dir=state_dir, ports=ports, inference=False)
    os.environ["TLOPS_STATE_DIR"] = str(state_dir)
    double = watcher = None
    try:
        stack.up()
        outputs = playbooks.deploy_local(stack)
        os.environ.update(stack.env())
        double = InferenceDouble(latency=0.05, cap=8).start()
        watcher = start_watcher(stack, double)
        pool = {"pool_id": outputs["user_pool_id"], "client_id": outputs["client_id"]}
        runs = [
            ("user", users.id_token(**pool, username="fuzz-user")),
            ("admin", users.id_token(**pool, username="fuzz-admin", groups=["admins"])),
        ]
        spec = spec_for(served_model(stack.api_url, runs[0][1]), logs)
        outcomes = []
        for name, token in runs:
            outcome = run_schemathesis(
                name, spec=spec, token=token, base_url=stack.api_url, logs=logs,
                args=args,
            )  # fmt: skip
            print(outcome.line(), flush=True)
            outcomes.append(outcome)
        stop_watcher(watcher, stack)
        token = users.id_token(**pool, username="fuzz-asleep")
        asleep = run_schemathesis(
            "asleep", spec=spec, token=token, base_url=stack.api_url, logs=logs,
            args=args,
        )  # fmt: skip
        if not asleep.not_awake_503s:
            asleep.problems.append(f"no synchronous /v1 request was answered {NOT_AWAKE}")
        print(asleep.line(), flush=True)
        return [*outcomes, asleep]
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        if double is not None:
            double.stop()
        stack.down()
        shutil.rmtree(state_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--schemathesis", type=Path, default=REPO / ".venv-fuzz/bin/st", help="the st command"
    )
    parser.add_argument("--max-examples", type=int, default=60, help="cases per operation")
    parser.add_argument("--seed", type=int, help="schemathesis' seed, to repeat a run")
    args = parser.parse_args()
    args.schemathesis = args.schemathesis.resolve()  # each run's folder is its cwd
    if not args.schemathesis.exists():
        parser.error(f"no schemathesis at {args.schemathesis}: run `make fuzz-api`")
    logs = Path(tempfile.mkdtemp(prefix="tlops-fuzz-logs-"))
    print(f"schemathesis output and HAR logs: {logs}", flush=True)
    started = time.monotonic()
    outcomes = fuzz(args, logs)
    print(f"{len(outcomes)} runs in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if all(outcome.ok for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

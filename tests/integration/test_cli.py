"""`tlops` as the operator types it: `local up|down|status|env`, `token --user`, `demo`.

`tlops.cli.main` runs in-process with capsys. Its stacks use the default ports
(`DEFAULT_PORTS`), which are patched to free ports here so the tests never
collide with a stack someone runs on 5055/6390/8787.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tlops.local.stack
from tlops import contract
from tlops.cli import main
from tlops.local.stack import LocalStack, free_port
from tlops.testing import InferenceDouble

from .gateway_fixtures import jwt_claims, post_json
from .stack_fixtures import deploy
from .watcher_fixtures import WatcherProcess

pytestmark = pytest.mark.integration

VENV_BIN = Path(sys.executable).parent


def free_ports() -> dict[str, int]:
    return {name: free_port() for name in ("moto", "redis", "gateway", "inference")}


def patch_stack_env(mp: pytest.MonkeyPatch, state_dir: Path) -> dict[str, int]:
    """Point `LocalStack()` at `state_dir` and free ports; whatever `up` and `token` put in
    os.environ (the stand-in's endpoint and dummy keys) is undone with `mp`."""
    ports = free_ports()
    mp.setattr(tlops.local.stack, "DEFAULT_PORTS", ports)
    mp.setenv("TLOPS_STATE_DIR", str(state_dir))
    for name, value in LocalStack(state_dir=state_dir, ports=ports).aws_env().items():
        mp.setenv(name, value)
    return ports


def exports(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        assert line.startswith("export "), line
        name, _, value = line.removeprefix("export ").partition("=")
        [found[name]] = shlex.split(value) or [""]
    return found


def pid_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def no_stack(tmp_path, monkeypatch) -> Path:
    """An empty state directory: no stack has ever run here."""
    patch_stack_env(monkeypatch, tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def cli_stack(tmp_path_factory) -> Iterator[LocalStack]:
    """A stack brought up with `tlops local up` (and down with `tlops local down`)."""
    state_dir = tmp_path_factory.mktemp("cli-stack")
    with pytest.MonkeyPatch.context() as mp:
        ports = patch_stack_env(mp, state_dir)
        try:
            assert main(["local", "up", "--no-inference"]) == 0
            stack = LocalStack(state_dir=state_dir, ports=ports)
            deploy(stack)
            yield stack
        finally:
            pids = LocalStack(state_dir=state_dir).load().get("pids", {})
            assert main(["local", "down"]) == 0
            for pid in pids.values():
                assert pid_gone(pid)


# --- without a stack ----------------------------------------------------------------------
def test_local_env_prints_shell_exports(no_stack, capsys):
    assert main(["local", "env"]) == 0
    env = exports(capsys.readouterr().out)
    ports = tlops.local.stack.DEFAULT_PORTS
    assert env["TL_API_URL"] == f"http://127.0.0.1:{ports['gateway']}"
    assert env["TL_AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{ports['moto']}"
    assert env["TL_REDIS_URL"] == f"redis://127.0.0.1:{ports['redis']}/0"
    assert "TL_JWT_ISSUER" not in env  # no user pool yet


def test_token_without_a_stack_is_exit_2_and_says_what_to_do(no_stack, capsys):
    assert main(["token", "--user", "alice"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "tlops local up" in err


def test_status_without_a_stack_is_exit_3(no_stack, capsys):
    assert main(["local", "status"]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["moto", "down"],
        ["redis", "down"],
        ["gateway", "down"],
        ["supervisor", "down"],
        ["deployed", "nothing:"],
    ]


def test_token_before_any_deploy_says_to_deploy(no_stack, capsys):
    LocalStack(state_dir=no_stack).save({"pids": {"moto": os.getpid()}})  # up, nothing deployed
    assert main(["token", "--user", "alice"]) == 2
    assert "run ansible-playbook playbooks/deploy.yml" in capsys.readouterr().err


def test_down_without_a_stack_is_harmless(no_stack, capsys):
    assert main(["local", "down"]) == 0
    assert capsys.readouterr().out.strip() == "stopped: nothing was running"


def test_the_console_script_is_installed(tmp_path):
    env = {**os.environ, "TLOPS_STATE_DIR": str(tmp_path)}
    done = subprocess.run(
        [str(VENV_BIN / "tlops"), "local", "status"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3  # nothing runs under an empty state dir
    assert b"moto" in done.stdout


@pytest.mark.parametrize("argv", [[], ["local"], ["local", "sideways"], ["token"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: tlops" in capsys.readouterr().err


# --- with a stack -------------------------------------------------------------------------
def test_status_with_the_stack_up_is_exit_0(cli_stack, capsys):
    assert main(["local", "status"]) == 0
    out = capsys.readouterr().out
    for name in ("moto", "redis", "gateway"):  # brought up with --no-inference
        port = cli_stack.ports[name]
        assert re.search(rf"^{name}\s+up\s+port {port}\s+pid \d+$", out, re.MULTILINE), out
    assert re.search(r"^user_pool_id\s+eu-west-1_\w+$", out, re.MULTILINE), out


def test_up_again_keeps_the_processes(cli_stack, capsys):
    before = cli_stack.load()["pids"]
    assert main(["local", "up", "--no-inference"]) == 0
    assert cli_stack.load()["pids"] == before
    assert "down" not in capsys.readouterr().out


def test_env_with_the_stack_up_can_be_sourced(cli_stack, capsys):
    assert main(["local", "env"]) == 0
    out = capsys.readouterr().out
    env = exports(out)
    assert env == cli_stack.env()
    for name in (
        "TL_API_URL",
        "TL_AWS_ENDPOINT_URL",
        "TL_REDIS_URL",
        "TL_JWT_ISSUER",
        "TL_JWKS_URL",
    ):
        assert env[name]
    sourced = subprocess.run(
        ["bash", "-c", 'eval "$(cat)"; printf %s "$TL_JWT_ISSUER"'],
        input=out.encode(),
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert sourced.stdout.decode() == env["TL_JWT_ISSUER"]


def test_token_is_a_jwt_with_a_stable_sub_per_user(cli_stack, capsys):
    tokens = {}
    for user in ("alice", "alice", "bob"):
        assert main(["token", "--user", user]) == 0
        token = capsys.readouterr().out.strip()
        assert len(token.split(".")) == 3 and all(token.split("."))
        tokens.setdefault(user, []).append(token)
    alice_1, alice_2 = (jwt_claims(t) for t in tokens["alice"])
    [bob] = (jwt_claims(t) for t in tokens["bob"])
    assert alice_1["sub"] == alice_2["sub"]
    assert bob["sub"] != alice_1["sub"]
    env = cli_stack.env()
    assert alice_1["iss"] == env["TL_JWT_ISSUER"]
    assert alice_1["aud"] == env["TL_JWT_AUDIENCE"]
    assert alice_1["token_use"] == "id"
    # the printed token is accepted by the stack's gateway
    status, _, body = post_json(env["TL_API_URL"] + "/infer", {"prompt": "hi"}, tokens["bob"][0])
    assert status == 202, body
    # and it was never written down
    for path in cli_stack.state_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(t.encode() in data for ts in tokens.values() for t in ts), path


# --- the demo -----------------------------------------------------------------------------
def test_demo_runs_end_to_end_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    patch_stack_env(monkeypatch, tmp_path)
    assert main(["demo", "--prompt", "Count to three."]) == 0
    out = capsys.readouterr().out
    assert "POST /infer -> 202" in out
    assert "x-request-id:" in out
    assert re.search(r"^== GET /jobs/[0-9a-f-]+ -> done$", out, re.MULTILINE), out
    completion = re.search(
        r"^== completion from tlops-tiny-llama \((\d+) tokens", out, re.MULTILINE
    )
    assert completion and int(completion.group(1)) >= 1, out
    assert "== bringing the local stack down" in out
    pids = [int(p) for p in re.findall(r"pid (\d+)$", out, re.MULTILINE)]
    assert len(pids) == 4  # moto, redis, gateway, supervisor (vLLM and the watcher)
    for pid in pids:
        assert pid_gone(pid), pid
    assert not (tmp_path / "stack.json").exists()


def test_the_client_returns_refusals_instead_of_raising(cli_stack):
    status, headers, body = post_json(cli_stack.api_url + "/infer", {"prompt": "hi"}, "a.b.c")
    assert (status, body) == (403, {"error": "invalid_token"})
    assert "apigw-requestid" in {k.lower() for k in headers}


# --- infer and status ---------------------------------------------------------------------
@pytest.fixture
def answering(cli_stack, tmp_path) -> Iterator[InferenceDouble]:
    """A watcher on the stack's queue, in front of an inference double (the node's part)."""
    with InferenceDouble(latency=0.02, max_prompt_chars=40) as double:
        watcher = WatcherProcess(
            tmp_path, cli_stack.redis_url, double.url, "--visibility-timeout", "2"
        )
        watcher.start()
        try:
            yield double
        finally:
            watcher.stop()


def test_infer_prints_the_completion(answering, capsys):
    assert main(["infer", "Say hi", "--user", "carol", "--max-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(" reply ")  # what the double generates
    assert answering.completed >= 1  # earlier tests left jobs queued too


def test_infer_json_is_the_finished_job(answering, capsys):
    assert main(["infer", "Say hi", "--user", "carol", "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["status"] == "done"
    assert contract.is_job_id(view["id"])
    assert view["output"].startswith(" reply ")
    assert view["usage"]["completion_tokens"] >= 1


def test_infer_reports_a_refused_prompt_and_exits_1(answering, capsys):
    assert main(["infer", "x" * 60, "--user", "carol"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "failed" in err and "inference refused the prompt" in err


def test_infer_refused_input_names_the_field(cli_stack, capsys):
    assert main(["infer", "hi", "--idle", "31", "--user", "carol"]) == 1
    assert "idle" in capsys.readouterr().err


def test_infer_times_out_with_exit_3_when_nothing_answers(cli_stack, capsys):
    assert main(["infer", "hi", "--user", "dave", "--timeout", "0.5"]) == 3
    err = capsys.readouterr().err
    assert "still" in err and "GET /jobs/" in err


def test_infer_with_a_refused_token_says_to_log_in(cli_stack, capsys):
    assert main(["infer", "hi", "--token", "a.b.c"]) == 1
    assert "tlops login" in capsys.readouterr().err


def test_infer_without_a_stack_or_settings_is_exit_2(no_stack, capsys, monkeypatch):
    for name in ("TL_API_URL", "TL_TOKEN", "TL_HOSTED_UI_URL", "TL_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    assert main(["infer", "hi"]) == 2
    assert "TL_API_URL" in capsys.readouterr().err
    monkeypatch.setenv("TL_API_URL", "http://127.0.0.1:9")
    assert main(["infer", "hi"]) == 2
    assert "no way to get a token" in capsys.readouterr().err


def test_status_shows_node_queue_and_watcher(answering, cli_stack, capsys):
    assert main(["status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["node"]["state"] in ("stopped", "running")
    assert report["node"]["instance"].startswith("i-")
    assert report["queue"]["deadLetters"] == 0
    wait_until = time.monotonic() + 15
    while report["queue"]["watcher"] is None and time.monotonic() < wait_until:
        time.sleep(0.2)
        assert main(["status", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
    assert report["queue"]["watcher"]["heartbeatAgeMs"] >= 0
    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^node\s+(stopped|running) i-\w+$", text, re.MULTILINE), text
    assert re.search(r"^heartbeat\s+[\d.]+ s ago$", text, re.MULTILINE), text


def test_status_with_redis_unreachable_is_exit_3(no_stack, capsys, monkeypatch):
    monkeypatch.setenv("TL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert main(["status"]) == 3
    assert re.search(r"^queue\s+unknown: Redis at ", capsys.readouterr().out, re.MULTILINE)

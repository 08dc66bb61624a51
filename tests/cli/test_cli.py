"""`tlops` as the operator types it: `local up|down|status|env`, `token --user`, `infer`,
`status`, `smoke`, `job`, `stop` (`demo` has a module of its own: test_demo.py).

`tlops.cli.main` runs in-process with capsys. Its stacks use the default ports
(`DEFAULT_PORTS`), which are patched to free ports here so the tests never
collide with a stack someone runs on 5055/6390/8787.
"""

from __future__ import annotations

import io
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
from tests.doubles.edge_api import EdgeApiDouble
from tests.doubles.inference import InferenceDouble
from tests.support.gateway_fixtures import jwt_claims, post_json
from tests.support.stack_fixtures import patch_stack_env, pid_gone
from tests.support.watcher_fixtures import WatcherProcess
from tlops import contract
from tlops.cli import main
from tlops.cli.exits import ExitCode
from tlops.cli.playbooks import deploy_local
from tlops.local.stack import LocalStack, free_port

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=4)]

VENV_BIN = Path(sys.executable).parent


def exports(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        assert line.startswith("export "), line
        name, _, value = line.removeprefix("export ").partition("=")
        [found[name]] = shlex.split(value) or [""]
    return found


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
            deploy_local(stack)
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


def test_token_without_a_stack_is_exit_6_and_says_what_to_do(no_stack, capsys):
    assert main(["token", "--user", "alice"]) == ExitCode.SETUP
    out, err = capsys.readouterr()
    assert out == ""
    assert "tlops local up" in err


def test_status_without_a_stack_is_exit_3(no_stack, capsys):
    assert main(["local", "status"]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["moto", "down"],
        ["queue", "down"],
        ["gateway", "down"],
        ["relay", "down"],
        ["node", "down"],
        ["deployed", "nothing:"],
    ]


def test_token_before_any_deploy_says_to_deploy(no_stack, capsys):
    LocalStack(state_dir=no_stack).save({"pids": {"moto": os.getpid()}})  # up, nothing deployed
    assert main(["token", "--user", "alice"]) == ExitCode.SETUP
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


# bare `tlops` prints its help instead (tests/cli/test_cli_native.py, issue 22)
@pytest.mark.parametrize("argv", [["local"], ["local", "sideways"], ["token"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: tlops" in capsys.readouterr().err


# --- with a stack -------------------------------------------------------------------------
def test_status_with_the_stack_up_is_exit_0(cli_stack, capsys):
    assert main(["local", "status"]) == 0
    out = capsys.readouterr().out
    for name, port_name in (("moto", "moto"), ("queue", "redis"), ("gateway", "gateway")):
        port = cli_stack.ports[port_name]  # brought up with --no-inference
        assert re.search(rf"^{name}\s+up\s+port {port}\s+pid \d+$", out, re.MULTILINE), out
    assert re.search(r"^relay\s+up\s+pid \d+$", out, re.MULTILINE), out
    assert re.search(r"^  redis-server pid \d+ serves queue tinyllama-queue-\d+$", out, re.M), out
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


@pytest.fixture
def streaming(cli_stack, tmp_path) -> Iterator[InferenceDouble]:
    """A watcher that publishes the text so far at each token, in front of a double that
    streams eight tokens a quarter of a second apart."""
    with InferenceDouble(tokens=8, token_delay=0.25) as double:
        watcher = WatcherProcess(tmp_path, cli_stack.redis_url, double.url, "--partial-tokens", "1")
        watcher.start()
        try:
            yield double
        finally:
            watcher.stop()


class Terminal(io.StringIO):
    """stdout as a terminal, keeping what was written."""

    def isatty(self) -> bool:
        return True


def test_infer_on_a_terminal_shows_the_text_so_far_and_the_output_once(
    streaming, capsys, monkeypatch
):
    """Through the router and a real watcher: the text the node publishes grows into the
    final output, so the terminal ends with that output exactly once."""
    terminal = Terminal()
    shown: list[str] = []
    with monkeypatch.context() as patch:
        patch.setattr(terminal, "flush", lambda: shown.append(terminal.getvalue()))
        patch.setattr("sys.stdout", terminal)
        assert main(["infer", "Say hi", "--user", "judy"]) == 0
    assert main(["jobs", "--user", "judy", "--json"]) == 0
    [job] = json.loads(capsys.readouterr().out)["jobs"]
    assert main(["job", job["id"], "--user", "judy", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)["output"]
    assert terminal.getvalue() == output + "\n"
    assert any(0 < len(text) < len(output) for text in shown), shown  # text before the end


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
    assert "failed" in err and "refused the prompt" in err


def test_infer_refused_input_names_the_field(cli_stack, capsys):
    assert main(["infer", "hi", "--idle", "31", "--user", "carol"]) == 1
    assert "idle" in capsys.readouterr().err


def test_infer_times_out_with_exit_5_when_nothing_answers(cli_stack, capsys):
    assert main(["infer", "hi", "--user", "dave", "--timeout", "0.5"]) == ExitCode.TIMEOUT
    err = capsys.readouterr().err
    assert re.search(r"still queued .*: tlops job [0-9a-f-]{36} --wait$", err.strip()), err


def test_infer_with_a_refused_token_says_to_log_in(cli_stack, capsys):
    assert main(["infer", "hi", "--token", "a.b.c"]) == 1
    assert "tlops login" in capsys.readouterr().err


def test_infer_without_a_stack_or_settings_is_exit_6(no_stack, capsys, monkeypatch):
    for name in ("TL_API_URL", "TL_TOKEN", "TL_HOSTED_UI_URL", "TL_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    assert main(["infer", "hi"]) == ExitCode.SETUP
    assert "TL_API_URL" in capsys.readouterr().err
    monkeypatch.setenv("TL_API_URL", "http://127.0.0.1:9")
    assert main(["infer", "hi"]) == ExitCode.SETUP
    assert "no token for http://127.0.0.1:9: log in with `tlops login" in capsys.readouterr().err


def test_status_shows_node_queue_and_watcher(answering, cli_stack, capsys):
    assert main(["status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == f"api {cli_stack.api_url}"  # GET /status, not Redis itself
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
    assert re.search(r"^node\s+(stopped|running) i-\w+ \(\S+\)$", text, re.MULTILINE), text
    assert re.search(r"^heartbeat\s+[\d.]+ s ago$", text, re.MULTILINE), text


def test_status_with_redis_unreachable_is_exit_3(no_stack, capsys, monkeypatch):
    monkeypatch.setenv("TL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert main(["status"]) == 3
    assert re.search(r"^queue\s+unknown: Redis at ", capsys.readouterr().out, re.MULTILINE)


# --- smoke: the deploy proven, leg by leg -------------------------------------------------
def test_smoke_passes_and_times_each_leg(answering, cli_stack, capsys):
    assert main(["smoke", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["error"] is None and report["warning"] is None
    assert [leg["name"] for leg in report["legs"]] == ["ping", "token", "submit", "result"]
    assert all(leg["seconds"] >= 0 for leg in report["legs"])
    assert report["legs"][3]["detail"].startswith("done,")
    assert report["api_url"] == cli_stack.api_url
    assert main(["smoke"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^result\s+[\d.]+ s\s+done, \d+ tokens", out, re.MULTILINE), out
    assert re.search(r"^total\s+[\d.]+ s\s+passed$", out, re.MULTILINE), out


def test_smoke_yml_runs_the_same_legs(answering, cli_stack):
    from tlops.cli import playbooks

    done = playbooks.run("smoke.yml", env=cli_stack.env(), capture=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1500:]
    assert re.search(r"- result  [\d.]+  done, \d+ tokens", done.stdout), done.stdout[-3000:]
    assert "The whole path answered in" in done.stdout


def test_smoke_without_a_watcher_fails_at_the_result_leg(cli_stack, capsys, monkeypatch):
    import tlops.cli.smoke

    monkeypatch.setattr(tlops.cli.smoke, "FAIL_AFTER_S", 2.0)
    assert main(["smoke"]) == 1
    out, err = capsys.readouterr()
    assert re.search(r"^submit\s+[\d.]+ s\s+202 ", out, re.MULTILINE), out
    assert "tlops smoke: result: job" in err and "was still" in err


def test_smoke_against_an_unreachable_api_is_a_clear_failure(cli_stack, capsys):
    closed = f"http://127.0.0.1:{free_port()}"
    assert main(["smoke", "--api-url", closed]) == 1
    assert f"ping: cannot reach the API at {closed}" in capsys.readouterr().err


def test_smoke_yml_against_an_unreachable_api_fails_without_a_traceback(cli_stack):
    from tlops.cli import playbooks

    closed = f"http://127.0.0.1:{free_port()}"
    done = playbooks.run(
        "smoke.yml", env=cli_stack.env(), extra_vars={"smoke_api_url": closed}, capture=True
    )
    assert done.returncode != 0
    assert f"The smoke test failed at ping: cannot reach the API at {closed}" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_smoke_without_an_api_url_is_exit_6(no_stack, capsys, monkeypatch):
    monkeypatch.delenv("TL_API_URL", raising=False)
    assert main(["smoke"]) == ExitCode.SETUP
    assert "no API URL" in capsys.readouterr().err


# --- job, stop, tokens that stay home ----------------------------------------------------
def test_job_shows_a_job_and_waits_for_it(answering, capsys):
    assert main(["infer", "Say hi", "--user", "erin", "--json"]) == 0
    job_id = json.loads(capsys.readouterr().out)["id"]
    assert main(["job", job_id, "--user", "erin", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "done"
    assert main(["job", job_id, "--user", "erin", "--wait"]) == 0
    assert capsys.readouterr().out.startswith(" reply ")
    # someone else's job is not found, and says so
    assert main(["job", job_id, "--user", "frank"]) == ExitCode.FAILED
    assert "404" in capsys.readouterr().err
    # the owner's list holds it, the owner's cancel leaves it done, anyone else's is a 404
    assert main(["jobs", "--user", "erin", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(j["id"], j["status"]) for j in listed["jobs"]] == [(job_id, "done")]
    assert main(["job", job_id, "--user", "erin", "--cancel"]) == 0
    assert capsys.readouterr().out.startswith(f"job {job_id} done: finished before the cancel")
    assert main(["job", job_id, "--user", "frank", "--cancel"]) == ExitCode.FAILED
    assert "no such job of yours (404)" in capsys.readouterr().err


def test_stop_is_for_admins_and_says_so(cli_stack, capsys):
    assert main(["token", "--user", "grace"]) == 0
    not_admin = capsys.readouterr().out.strip()
    assert main(["stop", "--token", not_admin]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert "forbidden (403): this route is for the admins group" in err
    assert "--group admins" in err
    assert main(["stop", "--json"]) == 0  # the local stack: as the stand-in admin
    answer = json.loads(capsys.readouterr().out)
    assert answer["status"] == "stopping" and answer["instance"].startswith("i-")


def test_a_stand_in_token_never_goes_to_another_api(cli_stack, capsys, monkeypatch):
    """The stack is up and deployed; TL_API_URL points elsewhere: no stand-in token."""
    for name in ("TL_TOKEN", "TL_HOSTED_UI_URL", "TL_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    with EdgeApiDouble() as elsewhere:
        for url in (elsewhere.url, "https://api.example.invalid"):
            monkeypatch.setenv("TL_API_URL", url)
            assert main(["infer", "hi"]) == ExitCode.SETUP
            err = capsys.readouterr().err
            assert f"no token for {url}: log in with `tlops login --env NAME`" in err
        assert elsewhere.requests == []
    monkeypatch.setenv("TL_API_URL", cli_stack.api_url + "/")  # the stack's own: a token
    assert main(["status"]) == 0


def test_env_local_reads_the_stacks_deploy_outputs(cli_stack, capsys, monkeypatch):
    monkeypatch.delenv("TL_API_URL", raising=False)
    assert main(["status", "--env", "local", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == f"api {cli_stack.api_url}"


def test_a_running_stack_that_nothing_names_is_not_used(cli_stack, capsys, monkeypatch):
    """Up and deployed, but the shell names neither it nor anything else: no command
    adopts it. Named by --env local, it is used (above)."""
    for name in ("TL_AWS_ENDPOINT_URL", "TL_API_URL", "TL_TOKEN", "TL_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    for argv in (["infer", "hi"], ["status"], ["smoke"]):
        assert main(argv) == ExitCode.SETUP, argv
        err = capsys.readouterr().err
        assert "no API URL" in err and cli_stack.api_url not in err, err
    assert main(["status", "--api-url", cli_stack.api_url, "--json"]) == 0  # a loopback flag
    assert json.loads(capsys.readouterr().out)["source"] == f"api {cli_stack.api_url}"


REMOTE_INFER = """
import json, sys
from tlops.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore")
                or m == "tlops.local" or m.startswith("tlops.local."))
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["infer", "--help"], ["infer", "hi"], ["job", "--help"]])
def test_remote_commands_load_neither_the_stand_in_nor_boto3(argv, tmp_path):
    with EdgeApiDouble() as remote:
        shell = {k: v for k, v in os.environ.items() if k != "TL_AWS_ENDPOINT_URL"}  # no stand-in
        env = {**shell, "TLOPS_STATE_DIR": str(tmp_path), "TL_API_URL": remote.url,
               "TL_TOKEN": "header.payload.signature"}  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", REMOTE_INFER, *argv],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    if "--help" in argv:
        assert done.returncode == 0 and "usage: tlops" in done.stdout
        return
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}, done.stderr
    assert done.stdout.strip() == "a remote reply"
    assert [(m, auth) for m, _, auth in remote.requests][:1] == [
        ("POST", "Bearer header.payload.signature")
    ]


# --- a stack up with nothing deployed; a hung service of its own --------------------------
def listener(port: int) -> subprocess.Popen:
    """A real process that accepts on `port` and never answers (a hung service)."""
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(8); print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    assert process.stdout.readline().strip() == b"ready"
    return process


def test_up_restarts_a_hung_service_of_its_own_then_says_to_deploy(tmp_path, monkeypatch, capsys):
    ports = patch_stack_env(monkeypatch, tmp_path)
    monkeypatch.delenv("TL_API_URL", raising=False)
    monkeypatch.delenv("TL_TOKEN", raising=False)
    hung = listener(ports["gateway"])
    # a gateway of this stack (its pid in this state dir) that hangs
    LocalStack(state_dir=tmp_path, ports=ports).save(
        {"pids": {"gateway": hung.pid}, "ports": ports}
    )
    try:
        assert main(["local", "up", "--no-inference"]) == 0
        assert hung.wait(timeout=15) is not None  # ended, not blamed on another stack
        pids = LocalStack(state_dir=tmp_path).load()["pids"]
        assert pids["gateway"] != hung.pid
        capsys.readouterr()
        # up, nothing deployed: infer says to deploy; status reads the parts, labelled; as
        # after `eval "$(tlops local env)"`, TL_API_URL names the stack's gateway
        monkeypatch.setenv("TL_API_URL", f"http://127.0.0.1:{ports['gateway']}")
        assert main(["infer", "hi"]) == ExitCode.SETUP
        assert (
            "run ansible-playbook playbooks/deploy.yml (or `tlops demo`" in capsys.readouterr().err
        )
        assert main(["status"]) == 0  # no queue is no fault when nothing is deployed
        out = capsys.readouterr().out
        assert out.startswith("state: not deployed\n"), out
        assert "source      direct: the local stack's parts (nothing deployed" in out
        assert re.search(r"^node\s+absent$", out, re.MULTILINE), out
        assert "queue       none: nothing is deployed" in out
    finally:
        if hung.poll() is None:
            hung.kill()
        main(["local", "down"])


def test_up_blames_another_stack_only_for_a_port_it_does_not_own(tmp_path, monkeypatch, capsys):
    ports = patch_stack_env(monkeypatch, tmp_path)
    other = listener(ports["redis"])  # not in this stack's state
    try:
        assert main(["local", "up", "--no-inference"]) == ExitCode.SETUP
        err = capsys.readouterr().err
        assert f"queue cannot start: port {ports['redis']} on 127.0.0.1 is already in use" in err
        assert f"by pid {other.pid} (" in err and "which is not this stack's" in err
        assert other.poll() is None  # left alone
    finally:
        other.kill()
        other.wait()
        main(["local", "down"])

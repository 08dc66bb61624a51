"""The local node's cold boot with real parts: node.yml configures the node, a prompt
makes the router start its instance, the node agent boots it, vLLM answers, and `down`
leaves nothing running.

A module of its own beside test_local_stack.py, so that the test workers run the two
side by side (each brings a whole stack up).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from tests.support.gateway_fixtures import post_json
from tests.support.stack_fixtures import new_stack, pid_gone, stack_env
from tlops import contract
from tlops.cli import main as cli_main
from tlops.cli import playbooks
from tlops.cli.playbooks import deploy_local
from tlops.common import aws
from tlops.contract import boot
from tlops.local import services, tiny_model, users
from tlops.local.stack import SERVICES, LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.long_pole(minutes=5)]


# --- the node part: the node roles, its agent, a cold boot ---------------------------------
# The launcher shell of a program, and the agent (its command line names supervisord.pid).
NOT_PROGRAMS = (b"/bin/sh -c", f"{sys.executable} -m tlops.local.node_agent".encode())


def node_pids(prefix: Path) -> dict[str, int]:
    """The node's processes by program: those whose command line or environment names the
    node's prefix (every program's configuration lives there), told apart by command line."""
    found = {}
    markers = (("vllm", b"vllm.entrypoints"), ("watcher", b"tlops.node.watcher"),
               ("supervisord", b"supervisord"), ("nginx", b"nginx"))  # fmt: skip
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            ours = str(prefix).encode() in cmdline + (proc / "environ").read_bytes()
            for name, marker in markers:
                if ours and marker in cmdline and not cmdline.startswith(NOT_PROGRAMS):
                    found.setdefault(name, int(proc.name))
                    break
    return found


def listening_on(port: int) -> set[str]:
    """The local addresses with a listening socket on `port` (Linux /proc/net/tcp{,6})."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                addresses.add(
                    ".".join(str(b) for b in reversed(bytes.fromhex(address)))
                    if len(address) == 8
                    else address
                )
    return addresses


def test_up_without_the_vllm_venv_says_so_before_starting_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("TLOPS_VLLM_PYTHON", str(tmp_path / "no-venv" / "bin" / "python"))
    local = new_stack(tmp_path / "state", inference=True)
    with pytest.raises(services.ServiceError, match=r"no vLLM interpreter .* run `make vllm`"):
        local.up()
    assert local.load() == {}


def wait_for(check, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def get_job(local: LocalStack, token: str, job_id: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{local.api_url}/jobs/{job_id}", headers={"authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def test_a_prompt_to_the_stopped_node_waits_for_a_real_boot(tmp_path):
    """The whole local path with real parts, the node's boot included: node.yml configures
    the node, which stays down while its instance is stopped; a prompt makes the router
    start the instance, the agent boots the node, the boot reporter writes each phase
    (GET /jobs shows them), vLLM serves the job, the boot's length becomes the next ETA;
    POST /stop stops the node's services; `down` leaves no process behind."""
    local = new_stack(tmp_path, inference=True)
    with stack_env(local):
        try:
            state = local.up()
            assert set(state["pids"]) == set(SERVICES)
            node = local.status()["services"]["node"]
            assert node["up"] and node["port"] == local.ports["imds"]
            assert node["programs"] == {}  # configured, not running: there is no instance
            assert (local.node.supervisor_config).is_file()
            assert not local.node.supervisor_pidfile.exists()
            env = local.env()
            assert env["TL_INFERENCE_URL"] == f"http://127.0.0.1:{local.ports['inference']}"
            assert env["TL_MODEL"] == tiny_model.MODEL_NAME
            assert env["TL_INFERENCE_API_KEY"] == local.node.inference_key()  # a watcher's too
            assert local.node.inference_key_file.stat().st_mode & 0o777 == 0o600

            outputs = deploy_local(local)
            # deploy.yml launches the node and stops it (as on AWS): the agent follows both
            wait_for(lambda: not node_pids(local.node.prefix), "the node to stay down", 90)
            token = users.id_token(
                pool_id=outputs["user_pool_id"], client_id=outputs["client_id"], username="g"
            )
            code, _, body = post_json(local.api_url + "/infer", {"prompt": "Tell"}, token)
            assert code == 202, body
            assert body["status"] == "starting" and body["eta"] == 90  # nothing measured yet
            client = redis_py.Redis.from_url(local.redis_url, decode_responses=True)
            job_key = contract.job_key(body["id"])
            seen_phases, shown = [], set()
            deadline = time.monotonic() + 240
            while (record := client.hgetall(job_key)).get("status") not in ("done", "failed"):
                assert time.monotonic() < deadline, (seen_phases, record)
                phase = client.hget(contract.NODE_BOOT_KEY, boot.PHASE)
                if phase and (not seen_phases or seen_phases[-1] != phase):
                    seen_phases.append(phase)
                if view := get_job(local, token, body["id"]):
                    shown.add(view.get("boot_phase"))
                time.sleep(0.1)
            assert record["status"] == "done", record
            assert seen_phases[0] == "starting instance"
            assert {"starting services", "loading model"} <= set(seen_phases)  # in between
            wait_for(lambda: client.hget(contract.NODE_BOOT_KEY, boot.PHASE) == "ready", "ready")
            assert {"starting instance", "loading model"} & shown  # GET /jobs said how far
            [measured] = [int(t) for t in client.lrange(contract.NODE_BOOT_TIMES_KEY, 0, -1)]
            assert 1_000 < measured < 240_000
            bucket, _, key = record["reply_s3"].removeprefix("s3://").partition("/")
            stored = json.loads(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
            assert stored["model"] == tiny_model.MODEL_NAME
            assert stored["usage"]["completion_tokens"] >= 1

            # every program of the node runs; vLLM and nginx listen on loopback only
            # (a program is STARTING until its startsecs have passed: vLLM's are 30)
            def node_programs_running() -> bool:
                programs = local.status()["services"]["node"]["programs"]
                return {programs[p] for p in ("vllm", "nginx", "watcher")} == {"RUNNING"}

            wait_for(node_programs_running, "the node's programs RUNNING", timeout=60)
            assert listening_on(local.ports["inference"]) == {"127.0.0.1"}
            assert listening_on(local.ports["tls"]) == {"127.0.0.1"}
            context = ssl._create_unverified_context()  # the node's self-signed certificate
            models = f"https://127.0.0.1:{local.ports['tls']}/v1/models"
            key = {"authorization": f"Bearer {local.node.inference_key()}"}
            with urllib.request.urlopen(
                urllib.request.Request(models, headers=key), timeout=10, context=context
            ) as answer:
                assert json.load(answer)["data"][0]["id"] == tiny_model.MODEL_NAME
            # nginx refuses an unauthenticated completion, and vLLM a wrong key (issue 20)
            completion = json.dumps({"model": tiny_model.MODEL_NAME, "prompt": "hi"}).encode()
            for headers in ({}, {"authorization": "Bearer " + "x" * 48}):
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(
                        urllib.request.Request(
                            models.replace("models", "completions"), data=completion,
                            headers={"content-type": "application/json", **headers},
                        ),
                        timeout=10, context=context,
                    )  # fmt: skip
                assert refused.value.code in (401, 403)
            running = node_pids(local.node.prefix)
            assert {"vllm", "watcher", "nginx", "supervisord"} <= set(running)

            # playbooks/smoke.yml proves the same path with real vLLM, each leg timed
            smoke = playbooks.run("smoke.yml", env=local.env(), capture=True, timeout=300)
            assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-1500:]
            assert "The whole path answered in" in smoke.stdout
            assert re.search(r"- result  [\d.]+  done, \d+ tokens from tlops-tiny-llama",
                             smoke.stdout), smoke.stdout[-3000:]  # fmt: skip

            # supervisord brings a watcher killed with SIGKILL back; vLLM is left alone
            os.kill(running["watcher"], signal.SIGKILL)
            assert pid_gone(running["watcher"])
            restarted = wait_for(
                lambda: (p := node_pids(local.node.prefix)).get("watcher") and p,
                "supervisord to restart the watcher",
                timeout=30,
            )
            assert restarted["watcher"] != running["watcher"]
            assert restarted["vllm"] == running["vllm"]

            # POST /stop: the instance stops, and with it the node's services
            admin = users.id_token(
                pool_id=outputs["user_pool_id"], client_id=outputs["client_id"],
                username="root", groups=("admins",),
            )  # fmt: skip
            code, _, stopped = post_json(local.api_url + "/stop", {}, admin)
            assert code == 202 and stopped["status"] == "stopping", stopped
            for pid in running.values():
                assert pid_gone(pid, timeout=90), f"node process {pid} survived the stop"
            assert client.hget(contract.NODE_BOOT_KEY, boot.PHASE) == "stopped"
            # the agent polls: the stand-in answers `stopping` first, `stopped` after
            wait_for(
                lambda: local.status()["services"]["node"]["instance_state"] == "stopped",
                "the node agent to see the instance stopped",
                timeout=30,
            )
            client.close()

            # napping → asleep: the sleep's handshake, at once; the queue goes
            assert cli_main(["ops", "sleep", "--deep"]) == 0
            wait_for(lambda: local.status()["services"]["queue"]["queue"] == "absent",
                     "the queue agent to stop serving the deleted group", timeout=30)  # fmt: skip

            # a prompt while asleep: held, the stack woken, then run; its phases shown
            code, _, again = post_json(local.api_url + "/infer", {"prompt": "Again"}, token)
            assert code == 202 and again["status"] == "waking", again
            assert again["eta"] == -(-measured // 1000)  # the boot measured before the sleep
            phases = []
            deadline = time.monotonic() + 300
            while (view := get_job(local, token, again["id"]) or {}).get("status") != "done":
                assert time.monotonic() < deadline, (phases, view)
                assert view.get("status") in ("queued", "running"), view
                if view.get("boot_phase") and (not phases or phases[-1] != view["boot_phase"]):
                    phases.append(view["boot_phase"])
                time.sleep(0.2)
            assert phases[0] == "waking the queue", phases
            assert view["output"], view
            recorded = json.loads(aws.client("s3").get_object(
                Bucket=outputs["control_bucket"], Key="state.json")["Body"].read())  # fmt: skip
            assert recorded["state"] == "awake"
            assert recorded["queue"]["id"] == "tinyllama-queue-2"  # a fresh id after the sleep

            stopped_services = local.down()
            assert sorted(stopped_services) == sorted(SERVICES)
            for pid in state["pids"].values():
                assert pid_gone(pid, timeout=5), f"pid {pid} survived `down`"
            assert not node_pids(local.node.prefix), "a node process survived `down`"
            assert not (tmp_path / "node" / "vllm").exists()
        finally:
            local.down()

"""The local node agent against the moto stand-in and a real supervisord: the node's
services follow the instance, and the IMDSv2 double answers for it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doubles.ec2 import tagged_instance
from tlops.common import aws
from tlops.local import node_agent, services
from tlops.local.imds import ImdsDouble
from tlops.local.services import free_port, pid_alive, wait_until
from tlops.node import imds

pytestmark = pytest.mark.integration


def supervisord_config(tmp_path: Path) -> tuple[Path, Path]:
    """A supervisord of the node's shape with one stand-in program (the roles write the real
    one; the agent only starts and stops whatever the file says)."""
    pidfile = tmp_path / "supervisord.pid"
    config = tmp_path / "supervisord.conf"
    config.write_text(
        f"[unix_http_server]\nfile={tmp_path}/s.sock\n[supervisord]\nlogfile={tmp_path}/sd.log\n"
        f"pidfile={pidfile}\n[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
        f"supervisor.rpcinterface:make_main_rpcinterface\n[supervisorctl]\n"
        f"serverurl=unix://{tmp_path}/s.sock\n[program:program]\n"
        f"command={sys.executable} -c 'import time; time.sleep(600)'\nstartsecs=0\n"
    )
    return config, pidfile


def program_pid(supervisord_pid: int) -> int:
    from tlops.local.services import child_pids

    [pid] = child_pids(supervisord_pid)
    return pid


def alive(pid: int) -> bool:
    return pid_alive(pid)


@pytest.fixture
def agent(tmp_path, aws_stand_in):
    config, pidfile = supervisord_config(tmp_path)
    metadata = ImdsDouble(instance_id_file=tmp_path / "node-instance-id").start()
    made = node_agent.NodeAgent(
        "tinyllama", node_agent.Supervisord(config, pidfile), metadata, tmp_path / "agent.json"
    )
    yield made
    made.supervisord.shutdown(timeout=10)
    metadata.stop()


def test_the_node_follows_its_instance(agent, tmp_path):
    agent.step()  # no instance at all: the node stays down
    assert not agent.supervisord.running
    assert services.read_agent_state(tmp_path / "agent.json")["services"] == "stopped"

    instance = tagged_instance(stopped=False)
    agent.step()  # running: supervisord and its program start, IMDS answers for the instance
    pid = agent.supervisord.pid()
    assert pid and alive(pid)
    wait_until(lambda: program_pid(pid), "supervisord's program", timeout=10)
    program = program_pid(pid)
    assert imds.Imds(agent.imds.url).instance_id() == instance
    state = services.read_agent_state(tmp_path / "agent.json")
    assert (state["instance"], state["instance_state"], state["services"]) == (
        instance, "running", "running",
    )  # fmt: skip
    agent.step()  # nothing changed: nothing is restarted
    assert agent.supervisord.pid() == pid

    aws.client("ec2").stop_instances(InstanceIds=[instance])
    agent.step()  # stopped: supervisord shuts down, its program with it
    assert not agent.supervisord.running
    assert not alive(pid) and not alive(program)
    aws.client("ec2").terminate_instances(InstanceIds=[instance])
    agent.step()
    with pytest.raises(imds.MetadataUnavailable, match="404"):
        imds.Imds(agent.imds.url).instance_id()


def test_a_stand_in_that_does_not_answer_changes_nothing(agent, monkeypatch, capsys):
    tagged_instance(stopped=False)
    agent.step()
    pid = agent.supervisord.pid()
    monkeypatch.setenv("TL_AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    agent._ec2 = None  # a new client, for the endpoint that went away
    agent.step()
    agent.step()
    assert agent.supervisord.pid() == pid  # the node keeps running on the last known state
    assert capsys.readouterr().out.count("instance lookup failed") == 1  # said once


def test_the_agent_process_powers_off_the_node_on_sigterm(tmp_path, aws_stand_in):
    config, pidfile = supervisord_config(tmp_path)
    tagged_instance(stopped=False)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tlops.local.node_agent", "--project", "tinyllama",
         "--supervisor-config", str(config), "--supervisor-pidfile", str(pidfile),
         "--imds-port", str(port), "--state-file", str(tmp_path / "agent.json"), "--poll", "0.2"],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    supervisord = node_agent.Supervisord(config, pidfile)
    try:
        wait_until(lambda: supervisord.running, "the agent to start supervisord", timeout=30)
        pid = supervisord.pid()
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        assert not alive(pid)
        assert "node agent stopped" in out
        assert json.loads((tmp_path / "agent.json").read_text())["services"] == "stopped"
    finally:
        if process.poll() is None:
            process.kill()
        supervisord.shutdown(timeout=10)

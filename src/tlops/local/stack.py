"""`tlops local up | down | status | env`: the AWS stand-in, the queue, the gateway, the relay
and the node.

The queue is a replication group in the stand-in, as on an account (deploy.yml's
queue role makes it); the queue agent (service `queue`, `tlops.local.queue_agent`)
runs a real redis-server on the stack's queue port while that group exists, so
the stack's sleep really deletes the queue and a wake really brings it back. The
relay (service `relay`, `tlops.local.relay`) delivers what the stand-in only
stores: the control bucket's event notifications and the EC2 state-change rule,
to control's handler in-process.

The node part is the node roles applied to this machine (`playbooks/node.yml`,
see `tlops.local.node`): one supervisord running vLLM's OpenAI server (CPU
build, serving a tiny Llama the project builds itself, see `tiny_model`),
nginx on a loopback TLS port, the watcher, the boot reporter and the idle
watchdog. It follows the stand-in's instance through the node agent (service
`node`): stopped while the instance is stopped, booted when it starts. It is
the slow part (the playbook takes tens of seconds, vLLM tens more at each
boot and about 3 GB of memory), so `LocalStack(inference=False)` / `tlops
local up --no-inference` leaves it out for work that only needs the edge and
the queue.

Each service is a real process started in its own session (so `down` can end
it and everything it spawned), with its pid, port and log under the state
directory (`TLOPS_STATE_DIR`, default `~/.local/state/tlops/local`). `up` is
idempotent: a service whose pid is alive and whose port answers is kept.

`up` creates no AWS resources: `ansible-playbook playbooks/deploy.yml` does,
in the stand-in, and writes their ids to `outputs.json` in the state
directory, which `env()` and `tlops token` read. The stand-in holds no state
across restarts, so those outputs are dropped whenever moto is (re)started.

Nothing secret is written: the only credentials are the stand-in's dummy keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tlops.contract import names
from tlops.contract.states import NODE_UP_STATES
from tlops.local import services, vllm
from tlops.local.node import LocalNode
from tlops.local.services import free_port

__all__ = ["DEFAULT_PORTS", "LocalStack", "StackError", "free_port"]

# inference: vLLM; tls: nginx in front of it; imds: the node agent's metadata double.
DEFAULT_PORTS = {
    "moto": 5055,
    "redis": 6390,
    "gateway": 8787,
    "inference": 8800,
    "tls": 8443,
    "imds": 8169,
}
REGION = "eu-west-1"
PROJECT = names.PROJECT
# The stand-in accepts any key; these are placeholders, not credentials.
# Not words that occur in output: Ansible masks a no_log value wherever it appears
# ("local" would turn every "localhost" into "********host").
STAND_IN_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "standin-key-id",
    "AWS_SECRET_ACCESS_KEY": "standin-secret",
}
EDGE_SERVICES = ("moto", "queue", "gateway", "relay")
# The node agent: the node's supervisord follows the stand-in's instance through it.
SERVICES = (*EDGE_SERVICES, "node")
# The port each service is found on (the queue agent's redis-server serves the queue's; the
# node agent serves the node's metadata double; the relay listens on none).
SERVICE_PORT = {"moto": "moto", "queue": "redis", "gateway": "gateway", "node": "imds"}
# Seconds from a queue group's creation in the stand-in until the queue agent serves it: it
# stands for ElastiCache's minutes (TL_LOCAL_QUEUE_DELAY_S sets it).
QUEUE_DELAY_S = 3.0
QUEUE_ID_PREFIX = f"{PROJECT}-queue"  # the queue role's default id prefix
NODE_STOP_TIMEOUT_S = 120.0  # the agent shuts supervisord down, which waits for vLLM
READY_TIMEOUT_S = 30.0
# What `tlops local status` shows of the deploy outputs.
DEPLOYED_SHOWN = ("user_pool_id", "client_id", "reply_bucket")


class StackError(services.ServiceError):
    """Something the operator must fix; the message says what."""


def default_state_dir() -> Path:
    if configured := os.environ.get("TLOPS_STATE_DIR"):
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "tlops" / "local"


@dataclasses.dataclass
class LocalStack:
    state_dir: Path = dataclasses.field(default_factory=default_state_dir)
    ports: dict[str, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_PORTS))
    region: str = REGION
    inference: bool = True

    def __post_init__(self) -> None:
        self.ports = {**DEFAULT_PORTS, **self.ports}

    @property
    def services(self) -> tuple[str, ...]:
        return SERVICES if self.inference else EDGE_SERVICES

    # --- state ----------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    def load(self) -> dict[str, Any]:
        """stack.json, with `pids.redis` as the queue agent last wrote it: the redis-server
        that serves the queue now (none while the stack sleeps)."""
        try:
            state = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        pids = state.setdefault("pids", {})
        pids.pop("redis", None)
        if services.pid_alive(pids.get("queue")):
            redis_pid = services.read_agent_state(self.queue_state_file).get("redis_pid")
            if services.pid_alive(redis_pid):
                pids["redis"] = redis_pid
        return state

    def save(self, state: dict[str, Any]) -> None:
        state = {**state, "pids": {k: v for k, v in state.get("pids", {}).items() if k != "redis"}}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    def _adopt_ports(self, state: dict[str, Any]) -> None:
        """A running stack keeps the ports it was started on."""
        for name, port in state.get("ports", {}).items():
            if services.pid_alive(state.get("pids", {}).get(name)):
                self.ports[name] = port

    # --- endpoints --------------------------------------------------------
    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['moto']}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/0"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['inference']}"

    @property
    def node(self) -> LocalNode:
        return LocalNode(self.state_dir, self.ports, self.redis_url)

    @property
    def model_name(self) -> str:
        from tlops.local import tiny_model

        return tiny_model.MODEL_NAME

    def aws_env(self) -> dict[str, str]:
        return {
            "TL_AWS_ENDPOINT_URL": self.moto_url,
            "TL_AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            **STAND_IN_CREDENTIALS,
        }

    @property
    def queue_state_file(self) -> Path:
        return self.state_dir / "queue-agent.json"

    @property
    def relay_state_file(self) -> Path:
        return self.state_dir / "relay.json"

    @property
    def outputs_file(self) -> Path:
        return self.state_dir / "outputs.json"

    def outputs(self) -> dict[str, Any]:
        """What deploy.yml wrote about the stand-in's resources; {} before a deploy."""
        try:
            return json.loads(self.outputs_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def env(self, state: dict[str, Any] | None = None) -> dict[str, str]:
        """Everything a script (or the gateway) needs to talk to this stack."""
        state = self.load() if state is None else state
        deployed = self.outputs()
        out = {
            "TLOPS_STATE_DIR": str(self.state_dir),  # deploy.yml writes its outputs here
            "TL_API_URL": self.api_url,
            "TL_REDIS_URL": self.redis_url,
            "TL_PROJECT": PROJECT,
            **self.aws_env(),
        }
        if "node" in state.get("pids", {}):
            out |= {"TL_INFERENCE_URL": self.inference_url, "TL_MODEL": self.model_name}
            if self.node.inference_key_file.exists():  # what vLLM asks of every /v1 request
                out["TL_INFERENCE_API_KEY"] = self.node.inference_key()
        if pool := deployed.get("user_pool_id"):
            out |= {
                "TL_USER_POOL_ID": pool,
                "TL_CLIENT_ID": deployed["client_id"],
                "TL_JWT_ISSUER": deployed["issuer"],
                "TL_JWT_AUDIENCE": deployed["client_id"],
                # moto signs with the real issuer name but serves the keys itself
                "TL_JWKS_URL": f"{self.moto_url}/{pool}/.well-known/jwks.json",
                "TL_REPLY_BUCKET": deployed["reply_bucket"],
            }
        return out

    # --- processes -------------------------------------------------------
    def _command(self, name: str) -> list[str]:
        if name == "moto":
            return services.moto_command(self.ports["moto"])
        if name == "queue":
            delay = os.environ.get("TL_LOCAL_QUEUE_DELAY_S", str(QUEUE_DELAY_S))
            return [
                sys.executable, "-m", "tlops.local.queue_agent", "--project", PROJECT,
                "--prefix", QUEUE_ID_PREFIX, "--port", str(self.ports["redis"]),
                "--data-root", str(self.state_dir / "queue"),
                "--state-file", str(self.queue_state_file), "--delay", delay,
            ]  # fmt: skip
        if name == "relay":
            return [sys.executable, "-m", "tlops.local.relay", "--project", PROJECT,
                    "--state-file", str(self.relay_state_file)]  # fmt: skip
        if name == "node":
            return self.node.agent_command()
        return [sys.executable, "-m", "tlops.local.gateway", "--port", str(self.ports["gateway"])]

    def _service_env(self, name: str, state: dict[str, Any]) -> dict[str, str]:
        if name == "moto":
            return services.moto_env(self.state_dir)
        return {**os.environ, **self.env(state)}

    def _ready(self, name: str) -> bool:
        if name in ("queue", "relay"):  # each writes its state file as soon as it runs
            path = self.queue_state_file if name == "queue" else self.relay_state_file
            written = services.read_agent_state(path).get("ts_ms", 0)
            return time.time_ns() // 1_000_000 - written < 5_000
        if name == "redis":
            return services.redis_answers(self.redis_url)
        if name == "moto":
            return services.http_ok(self.moto_url + "/moto-api/")
        if name == "node":  # the agent serves the node's metadata double
            return services.http_status(self.node.imds_url + "/latest/meta-data/") == 401
        # 200 once deployed (429 when /ping's throttling is used up); before that the
        # gateway answers 503 "run deploy.yml"
        return services.http_status(self.api_url + "/ping") in (200, 429, 503)

    def _ours(self, pid: int, state: dict[str, Any]) -> bool:
        """Whether `pid` belongs to one of this stack's services: it is one, or it is in the
        process group one was started in (each service leads its own session)."""
        ours = {p for p in state.get("pids", {}).values() if p}
        try:
            return pid in ours or os.getpgid(pid) in ours
        except ProcessLookupError:
            return False

    def _free_port_of_ours(self, name: str, port: int, state: dict[str, Any]) -> None:
        """Before starting `name`: a process of ours left on its port is ended; anyone
        else's is refused, named (checked before starting: otherwise the readiness probe
        could be answered by whatever holds the port while our process dies on bind)."""
        if not services.port_in_use(port):
            return
        owner = services.port_owner(port)
        if owner is not None and self._ours(owner, state):
            self._terminate(os.getpgid(owner))
            if not services.port_in_use(port):
                return
        held = f"by {services.describe_pid(owner)}" if owner is not None else "by another user"
        raise StackError(
            f"{name} cannot start: port {port} on 127.0.0.1 is already in use, {held}, "
            f"which is not this stack's (state dir {self.state_dir}): another local stack? "
            "stop that one (`tlops local down` with its TLOPS_STATE_DIR), or pick other ports"
        )

    def _start(self, name: str, state: dict[str, Any]) -> int:
        port = self.ports.get(SERVICE_PORT.get(name, ""), 0)
        if port:
            self._free_port_of_ours(name, port, state)
        log = (self.state_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            self._command(name),
            env=self._service_env(name, state),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if self._ready(name):
                return process.pid
            time.sleep(0.1)
        self._terminate(process.pid)
        tail = (self.state_dir / f"{name}.log").read_text(errors="replace")[-1500:]
        where = f"on port {port} (is the port taken?)" if port else "(its state file)"
        raise StackError(f"{name} did not become ready {where}. Last log lines:\n{tail}")

    @staticmethod
    def _terminate(pid: int, timeout: float = 10.0) -> None:
        """End a service's process group; then any child that left the group (supervisord's
        programs each lead their own), so nothing outlives `down`."""
        children = services.child_pids(pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
            os.killpg(pid, signal.SIGCONT)  # a stopped (hung) process takes its SIGTERM now
        services.wait_gone(pid, timeout)
        for group in (pid, *children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        services.wait_gone(pid, 5.0)  # gone, not only signalled: its port is free after this

    # --- the verbs --------------------------------------------------------
    def _instance_running(self) -> bool:
        """Whether the stand-in's instance for the node is pending or running (no instance,
        or a stand-in that does not answer: not running)."""
        from tlops.common import aws
        from tlops.control import node as gpu_node

        try:
            ec2 = aws.client("ec2", connect_timeout=1, read_timeout=5, max_attempts=1)
            found = gpu_node.find(ec2, PROJECT)
        except gpu_node.NodeUnavailable:
            return False
        return found is not None and found.state in NODE_UP_STATES

    def up(self) -> dict[str, Any]:
        if self.inference:
            vllm.vllm_python()  # a missing vLLM venv is said before anything starts
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = self.load()
        self._adopt_ports(state)
        pids = state.setdefault("pids", {})
        state["ports"] = dict(self.ports)
        os.environ.update(self.aws_env())  # this process talks to the stand-in from here on
        moto_restarted = False
        for name in self.services:
            alive = services.pid_alive(pids.get(name))
            if alive and name == "gateway" and moto_restarted:
                self._terminate(pids[name])  # it holds the old stand-in's pool and client ids
            elif alive and name == "node":
                # kept; the node's configuration is applied again (idempotent: no change)
                self.node.configure(self.env(state), running=self._instance_running())
                continue
            elif alive and self._ready(name):
                continue
            elif alive:
                # ours (its pid is in our state file) but not answering: hung; restart it
                self._terminate(pids[name])
            if name == "moto":
                moto_restarted = True
                self.outputs_file.unlink(missing_ok=True)  # a fresh stand-in holds none of it
            if name == "node":
                # configured as the stand-in's instance is now; the agent then follows it
                self.node.configure(self.env(state), running=self._instance_running())
            pids[name] = self._start(name, state)
            self.save(state)
        self._recover_queue(state)
        return state

    def _recover_queue(self, state: dict[str, Any]) -> None:
        """A redis-server of the queue agent's that does not answer (hung) is ended; the agent
        starts it again on the same data, as it does one that died."""
        redis_pid = self.load().get("pids", {}).get("redis")
        if redis_pid and not self._ready("redis"):
            self._terminate(redis_pid)

    def down(self) -> list[str]:
        state = self.load()
        stopped = []
        for name in reversed(SERVICES):
            pid = state.get("pids", {}).get(name)
            if services.pid_alive(pid):
                # the node agent shuts supervisord down (vLLM first) before it exits itself
                self._terminate(pid, timeout=NODE_STOP_TIMEOUT_S if name == "node" else 10.0)
                stopped.append(name)
        node = self.node
        from tlops.local.node_agent import Supervisord

        Supervisord(node.supervisor_config, node.supervisor_pidfile).shutdown()  # if left
        node.cleanup()
        self.state_file.unlink(missing_ok=True)
        self.outputs_file.unlink(missing_ok=True)  # the stand-in's resources went with it
        shutil.rmtree(self.state_dir / "queue", ignore_errors=True)  # gone with the stand-in
        for path in (self.queue_state_file, self.relay_state_file):
            path.unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, Any]:
        state = self.load()
        self._adopt_ports(state)
        report: dict[str, dict[str, Any]] = {}
        # What was started, whichever LocalStack asks; a stack never started shows its own plan.
        names = [name for name in SERVICES if name in state.get("pids", {})] or self.services
        for name in names:
            pid = state.get("pids", {}).get(name)
            alive = services.pid_alive(pid)
            report[name] = {
                "pid": pid if alive else None,
                "port": self.ports.get(SERVICE_PORT.get(name, "")),
                "up": alive and self._ready(name),
            }
            if name == "queue" and alive:
                seen = services.read_agent_state(self.queue_state_file)
                # absent: no group (the stack sleeps, or nothing is deployed): not a fault
                report[name]["queue"] = seen.get("status", "absent")
                report[name]["group"] = seen.get("group")
                report[name]["redis_pid"] = state.get("pids", {}).get("redis")
                if seen.get("status") == "serving":
                    report[name]["up"] = report[name]["up"] and self._ready("redis")
            if name == "node" and alive:
                seen = self.node.agent_state()
                report[name]["instance"] = seen.get("instance")
                report[name]["instance_state"] = seen.get("instance_state")
                report[name]["programs"] = self.node.programs()
        deployed = {k: v for k, v in self.outputs().items() if k in DEPLOYED_SHOWN}
        return {"services": report, "deployed": deployed}

"""The local node: the node roles applied to this machine, and how the stack drives it.

`tlops local up` configures the node with `ansible-playbook playbooks/node.yml`
(inventory `inventories/local`, host `local-node`): every path under
`<state dir>/node`, vLLM's CPU build from the checkout's `.venv-vllm`, nginx on
a loopback TLS port, the watcher, the boot reporter and the idle watchdog
under one supervisord, no root. The stack passes its own ports and paths as
extra variables (`node_vars`), written to `node-vars.json` in the state dir.

The node is configured, not powered: whether supervisord runs follows the
stand-in's instance, through the node agent (`tlops.local.node_agent`), which
the stack starts after the playbook. `supervisor_running` tells the playbook
what the instance says right now, so the two never disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tlops import checkout
from tlops.contract import names
from tlops.local import supervisor, vllm
from tlops.local.services import ServiceError

PLAYBOOK = "playbooks/node.yml"
# AF_UNIX paths hold 108 bytes; vLLM binds TMPDIR/<uuid4> (37 more bytes).
MAX_SOCKET_PATH = 100
MAX_VLLM_TMP = 70
PLAYBOOK_TIMEOUT_S = 900.0


class LocalNode:
    def __init__(self, state_dir: Path, ports: dict[str, int], redis_url: str):
        self.state_dir = state_dir
        self.ports = ports
        self.redis_url = redis_url

    # --- where things are ----------------------------------------------------------
    @property
    def prefix(self) -> Path:
        return self.state_dir / "node"

    @property
    def supervisor_config(self) -> Path:
        return self.prefix / "etc" / "supervisord.conf"

    @property
    def supervisor_pidfile(self) -> Path:
        return self.prefix / "run" / "supervisord.pid"

    @property
    def log_dir(self) -> Path:
        return self.prefix / "log"

    @property
    def inference_key_file(self) -> Path:
        """The key vLLM asks for, made by node.yml once (inventories/local: beside the prefix,
        0600). On an instance it is read from SSM into /run at each boot; here it stays on disk."""
        return self.state_dir / "node-inference.key"

    def inference_key(self) -> str:
        return self.inference_key_file.read_text().strip()

    @property
    def agent_state_file(self) -> Path:
        return self.state_dir / "node-agent.json"

    @property
    def vars_file(self) -> Path:
        return self.state_dir / "node-vars.json"

    def _short(self, name: str) -> Path:
        """A short path in the system's temp dir, the same for the same state dir."""
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"tlops-{digest}-{name}"

    @property
    def supervisor_socket(self) -> Path:
        socket = self.prefix / "run" / "supervisor.sock"
        return socket if len(str(socket)) <= MAX_SOCKET_PATH else self._short("supervisor.sock")

    @property
    def vllm_tmp_dir(self) -> Path:
        tmp = self.prefix / "vllm" / "tmp"
        return tmp if len(str(tmp)) <= MAX_VLLM_TMP else self._short("vllm-tmp")

    @property
    def tls_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['tls']}"

    @property
    def imds_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['imds']}"

    # --- configuring ---------------------------------------------------------------
    def node_vars(self, *, running: bool) -> dict[str, Any]:
        """The playbook's extra variables: this stack's ports and paths."""
        from tlops.local import tiny_model

        python = vllm.vllm_python()
        return {
            "node_prefix": str(self.prefix),
            "node_imds_url": self.imds_url,
            "node_redis_url": self.redis_url,
            "vllm_port": self.ports["inference"],
            "vllm_venv_dir": str(python.parent.parent),
            "vllm_model_dir": str(vllm.model_cache_dir() / tiny_model.MODEL_NAME),
            "vllm_tmp_dir": str(self.vllm_tmp_dir),
            "nginx_tls_https_port": self.ports["tls"],
            "supervisor_socket": str(self.supervisor_socket),
            "supervisor_running": running,
        }

    def configure(self, env: dict[str, str], *, running: bool) -> None:
        """`ansible-playbook playbooks/node.yml` for this stack; raises ServiceError with the
        end of its output when it fails."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.vars_file.write_text(json.dumps(self.node_vars(running=running), indent=2))
        binary = Path(sys.executable).with_name("ansible-playbook")
        if not binary.exists():
            raise ServiceError(f"{binary} is missing: run `make setup` (it installs ansible)")
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        log = self.state_dir / "node-playbook.log"
        with log.open("w") as out:
            done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [str(binary), PLAYBOOK, "-e", f"@{self.vars_file}"],
                cwd=checkout.ROOT,
                env={**os.environ, **env, "PATH": path},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=PLAYBOOK_TIMEOUT_S,
                check=False,
            )
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise ServiceError(f"configuring the local node failed (node.yml):\n{tail}")

    # --- looking at it ----------------------------------------------------------------
    def programs(self) -> dict[str, str]:
        """Each supervisord program's state; {} while supervisord is down."""
        if not self.supervisor_config.exists():
            return {}
        return supervisor.supervisor_states(self.supervisor_config)

    def agent_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.agent_state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def agent_command(self) -> list[str]:
        return [
            sys.executable, "-m", "tlops.local.node_agent",
            "--project", names.PROJECT,
            "--supervisor-config", str(self.supervisor_config),
            "--supervisor-pidfile", str(self.supervisor_pidfile),
            "--imds-port", str(self.ports["imds"]),
            "--state-file", str(self.agent_state_file),
        ]  # fmt: skip

    def cleanup(self) -> None:
        """What `down` removes: the short socket and vLLM's scratch dirs (sockets it leaves)."""
        import shutil

        for path in (self._short("supervisor.sock"),):
            path.unlink(missing_ok=True)
        shutil.rmtree(self._short("vllm-tmp"), ignore_errors=True)
        shutil.rmtree(self.prefix / "vllm", ignore_errors=True)

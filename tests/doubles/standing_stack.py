"""A local stack as the CLI finds one, without starting it: its state files (a live pid for
each service, the ports it was started on, deploy.yml's outputs) and, on loopback, a
gateway that answers /ping and an AWS endpoint (a recording one, or a real moto server).

It is everything the CLI once took for a running stack and adopted when nothing named
it: pids in `stack.json`, a gateway that answers, a user pool in `outputs.json`. Each
request its own endpoints get is recorded, so a test can tell that nothing asked them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

OUTPUTS = {
    "project": "tinyllama",
    "region": "eu-west-1",
    "api_url": "https://standin.execute-api.eu-west-1.amazonaws.com",
    "user_pool_id": "eu-west-1_standin",
    "client_id": "standinclient",
    "hosted_ui_url": "https://tinyllama-k3jd8s9f2q.auth.eu-west-1.amazoncognito.com",
    "issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_standin",
    "reply_bucket": "tinyllama-replies-k3jd8s9f2q",
}


class _Recording:
    """An HTTP endpoint on loopback that answers 200 {"status": "ok"} and records each
    request as (method, path)."""

    def __init__(self, requests: list[tuple[str, str, str]], name: str):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                """Quiet."""

            def _serve(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                requests.append((name, self.command, self.path))
                body = b'{"status": "ok"}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


class StandingStack:
    """Its state in `state_dir`; `moto_port`: a real stand-in's port (default: a recording
    endpoint of its own); `outputs`: deploy.yml's (default: a deployed stack's)."""

    def __init__(
        self, state_dir: Path, *, moto_port: int | None = None, outputs: dict | None = None
    ):
        self.state_dir = state_dir
        self.requests: list[tuple[str, str, str]] = []
        self._servers = [_Recording(self.requests, "gateway")]
        if moto_port is None:
            self._servers.append(_Recording(self.requests, "moto"))
            moto_port = self._servers[-1].port
        # a live process for each pid (never this one: a `down` would end it)
        self._sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        pid = self._sleeper.pid
        self.ports = {"gateway": self._servers[0].port, "moto": moto_port}
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "stack.json").write_text(
            json.dumps({"pids": {"moto": pid, "gateway": pid}, "ports": self.ports})
        )
        (state_dir / "outputs.json").write_text(json.dumps(OUTPUTS if outputs is None else outputs))

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['moto']}"

    def adopted_by_the_old_cli(self) -> bool:
        """What the CLI checked before it adopted a stack nothing named: pids, a gateway
        that answers, a user pool deployed (the probes it makes are forgotten after)."""
        from tlops.local.stack import LocalStack

        stack = LocalStack(state_dir=self.state_dir, ports=dict(self.ports))
        up = bool(stack.load().get("pids")) and stack.status()["services"]["gateway"]["up"]
        self.requests.clear()
        return up and bool(stack.outputs().get("user_pool_id"))

    def close(self) -> None:
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
        self._sleeper.kill()
        self._sleeper.wait()
        (self.state_dir / "stack.json").unlink(missing_ok=True)

    def __enter__(self) -> StandingStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

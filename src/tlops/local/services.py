"""How the local stand-in's processes start: one definition for the stack, tests and benches."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any


class ServiceError(RuntimeError):
    """A service could not be started; the message says what to fix."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already accepts connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll `check` until it returns True; exceptions count as 'not yet'."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not become ready within {timeout:g} s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def http_status(url: str) -> int | None:
    """The HTTP status `url` answers with (errors included), or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


def redis_command(port: int, data_dir: Path, *, persist: bool) -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server is not installed: run `make setup`")
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if persist else "no",
        "--appendfsync", "everysec",
        "--daemonize", "no",
    ]  # fmt: skip


def moto_command(port: int) -> list[str]:
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        raise ServiceError(f"{binary} is missing: run `make setup` to install moto[server]")
    return [str(binary), "-H", "127.0.0.1", "-p", str(port)]


def moto_env(state_dir: Path) -> dict[str, str]:
    """moto with Ubuntu 22.04 images and AWS-like validation of instance types and AMIs."""
    amis = state_dir / "ubuntu_amis.json"
    state_dir.mkdir(parents=True, exist_ok=True)
    amis.write_text(resources.files("tlops.local").joinpath("ubuntu_amis.json").read_text())
    return {
        **os.environ,
        "MOTO_AMIS_PATH": str(amis),
        "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
        "MOTO_ENABLE_AMI_VALIDATION": "true",
    }


def pid_alive(pid: int | None) -> bool:
    """Whether `pid` names a live process; a zombie child of ours is reaped and counts as
    gone, and one we may not signal (another user's) as alive."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `pid` to end; whether it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    return not pid_alive(pid)


def read_agent_state(state_file: Path) -> dict[str, Any]:
    """What a local agent (node, queue, relay) last wrote to its state file; {} when it
    never ran or is writing it now."""
    try:
        return json.loads(state_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def write_agent_state(state_file: Path, report: dict[str, Any]) -> None:
    """Replace an agent's state file in one step with `report`, stamped `ts_ms` (the stack
    takes an agent whose stamp is fresh for a running one)."""
    temporary = state_file.with_suffix(".tmp")
    stamped = {**report, "ts_ms": time.time_ns() // 1_000_000}
    temporary.write_text(json.dumps(stamped, sort_keys=True))
    temporary.replace(state_file)


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """Whether a redis-server at `url` answers PING within `timeout` seconds."""
    from tlops.edge.resp import RedisUnavailable, RespClient

    client = RespClient(url, connect_timeout=timeout, timeout=timeout)
    try:
        return client.ping()
    except RedisUnavailable:
        return False
    finally:
        client.close()


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RedisProcess:
    """A real redis-server on a loopback port that can be stopped and started again."""

    def __init__(self, data_dir: Path, port: int | None = None, *, persist: bool = False):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        from tlops.edge.resp import RespClient

        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            redis_command(self.port, self.data_dir, persist=self.persist),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: RespClient(self.url).ping(), f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


class MotoProcess:
    """A real moto server (the AWS stand-in) on a loopback port; `settings` are moto's own
    environment switches (e.g. INITIAL_NO_AUTH_ACTION_COUNT, which turns on its IAM)."""

    def __init__(
        self, state_dir: Path, port: int | None = None, settings: dict[str, str] | None = None
    ):
        self.state_dir = state_dir
        self.port = port or free_port()
        self.settings = dict(settings or {})
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**moto_env(self.state_dir), **self.settings}
        with (self.state_dir / "moto.log").open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                moto_command(self.port), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        wait_until(lambda: http_ok(self.url + "/moto-api/"), f"moto server on port {self.port}")

    def reset(self) -> None:
        self.reset_url(self.url)

    @staticmethod
    def reset_url(url: str) -> None:
        """Wipe a moto server's state (POST /moto-api/reset)."""
        request = urllib.request.Request(url + "/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(request, timeout=5).close()  # noqa: S310 - loopback only

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def port_owner(port: int, host: str = "127.0.0.1") -> int | None:
    """The pid of the process listening on host:port (Linux /proc), None when no process of
    this user's can be seen holding it."""
    wanted = f"{''.join(reversed([f'{int(p):02X}' for p in host.split('.')]))}:{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                any_host = local.split(":")[0].strip("0") == ""
                if state == "0A" and (
                    local == wanted or (any_host and local.endswith(wanted[-5:]))
                ):
                    inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(fd_dir.parent.name)
    return None


def describe_pid(pid: int) -> str:
    """`pid N (its command line)`, for messages."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        command = " ".join(part.decode(errors="replace") for part in argv if part)[:120]
    except OSError:
        command = "?"
    return f"pid {pid} ({command})"


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc), for making sure none outlives its parent."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # the command name is in parentheses and may hold spaces: split after it
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                children.append(int(stat.parent.name))
    return children

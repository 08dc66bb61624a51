"""How the local stand-in's processes start: one definition for the stack, tests and benches."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import NamedTuple


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
        from tlops.resp import RespClient

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
    """A real moto server (the AWS stand-in) on a loopback port."""

    def __init__(self, state_dir: Path, port: int | None = None):
        self.state_dir = state_dir
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = moto_env(self.state_dir)
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


# --- vLLM (the inference server) ----------------------------------------------
VLLM_READY_TIMEOUT_S = 240.0
# The repository root, when tlops runs from a checkout (an editable install).
_CHECKOUT = Path(__file__).resolve().parents[3]


def vllm_python() -> Path:
    """The vLLM venv's interpreter: `TLOPS_VLLM_PYTHON`, else the checkout's `.venv-vllm`."""
    configured = os.environ.get("TLOPS_VLLM_PYTHON")
    python = Path(configured) if configured else _CHECKOUT / ".venv-vllm" / "bin" / "python"
    if not python.exists():
        where = "TLOPS_VLLM_PYTHON" if configured else "the checkout"
        raise ServiceError(
            f"no vLLM interpreter at {python} (from {where}): run `make vllm`, "
            "or bring the stack up without inference (`tlops local up --no-inference`)"
        )
    return python


def model_cache_dir() -> Path:
    """Where built models are kept across runs (`TLOPS_MODEL_CACHE`, else the user's cache)."""
    if configured := os.environ.get("TLOPS_MODEL_CACHE"):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tlops" / "models"


def build_tiny_model(python: Path, out: Path | None = None) -> Path:
    """Build (or find cached) the tiny Llama with the vLLM venv's interpreter; return its dir.

    The builder needs torch and transformers, which live only in that venv, so it
    runs there as a module of this very package (put on its path explicitly).
    """
    from tlops.local import tiny_model

    out = out or model_cache_dir() / tiny_model.MODEL_NAME
    if tiny_model.is_built(out):
        return out  # the common case, without paying for a torch import
    package_root = Path(tiny_model.__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(package_root), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [str(python), "-m", "tlops.local.tiny_model", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ServiceError(f"building the tiny model failed:\n{done.stderr[-2000:]}")
    return out


def vllm_command(python: Path, model_dir: Path, port: int, served_name: str) -> list[str]:
    """vLLM's OpenAI server on loopback, with the flags its CPU build needs for this model."""
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--model", str(model_dir),
        "--served-model-name", served_name,
        "--enforce-eager",
        "--dtype", "float32",
        "--max-model-len", "256",
        "--disable-log-stats",
    ]  # fmt: skip


# vLLM binds unix sockets named TMPDIR/<uuid4>; sun_path holds 107 bytes.
_MAX_SOCKET_DIR = 107 - 1 - 36


def vllm_env(run_dir: Path) -> dict[str, str]:
    """Offline, single-process, 1 GiB of KV cache; scratch dirs of its own.

    vLLM leaves socket and cache files in TMPDIR and its cache root, so each run
    gets them under `run_dir`, which `remove_run_dir` removes afterwards. When
    `run_dir` is too deep for a socket path, TMPDIR is a short directory in the
    system's temp dir instead, linked from `run_dir/tmp` so it is found again.
    """
    dirs = {name: run_dir / name for name in ("tmp", "cache", "hf")}
    for name in ("cache", "hf"):
        dirs[name].mkdir(parents=True, exist_ok=True)
    if len(str(dirs["tmp"])) > _MAX_SOCKET_DIR:
        remove_short_tmp(run_dir)
        short = Path(tempfile.mkdtemp(prefix="tlops-vllm-"))
        dirs["tmp"].symlink_to(short)
        dirs["tmp"] = short
    else:
        dirs["tmp"].mkdir(exist_ok=True)
    return {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TMPDIR": str(dirs["tmp"]),
        "VLLM_CACHE_ROOT": str(dirs["cache"]),
        "HF_HOME": str(dirs["hf"]),
    }


def remove_short_tmp(run_dir: Path) -> None:
    """Remove the short TMPDIR that `run_dir/tmp` may link to, and the link."""
    link = run_dir / "tmp"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
        link.unlink()


def remove_run_dir(run_dir: Path) -> None:
    """Remove a vLLM run's scratch dirs, the short TMPDIR they may link to included."""
    remove_short_tmp(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)


def post_completion(base_url: str, model: str, prompt: str, max_tokens: int = 4) -> dict:
    """One real `/v1/completions` call; raises on anything but a 200."""
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback only
        base_url + "/v1/completions",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def completion_ok(base_url: str, model: str) -> bool:
    """Ready means a completion came back: /health answers before the first request can fail."""
    if not http_ok(base_url + "/health"):
        return False
    try:
        answer = post_completion(base_url, model, "Hello")
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return bool(answer.get("choices"))


class VllmProcess:
    """vLLM's OpenAI server on a free loopback port, without supervisord (for tests).

    `start` tries twice: a free port can be taken by someone else between the
    check and vLLM's bind, and a first start on a cold disk can run out of time.
    """

    def __init__(self, run_dir: Path, model_dir: Path, python: Path, served_name: str):
        self.run_dir = run_dir
        self.model_dir = model_dir
        self.python = python
        self.model = served_name
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.run_dir / "vllm.log"

    def start(self, attempts: int = 2, timeout: float = VLLM_READY_TIMEOUT_S) -> None:
        for attempt in range(1, attempts + 1):
            self.port = free_port()
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                    vllm_command(self.python, self.model_dir, self.port, self.model),
                    env={**os.environ, **vllm_env(self.run_dir)},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                if completion_ok(self.url, self.model):
                    return
                time.sleep(0.5)
            self.stop()
            if attempt == attempts:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise ServiceError(
                    f"vLLM did not answer a completion after {attempts} starts. Log tail:\n{tail}"
                )

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.process = None
        remove_short_tmp(self.run_dir)


# --- supervisord (runs the inference server and the watcher) -----------------
SUPERVISOR_PROGRAMS = ("inference", "watcher")


class Program(NamedTuple):
    """One supervisord program. `startsecs`: how long it must stay up to count as started;
    a crash sooner is a failed start, and after `startretries` of those supervisord gives
    up (FATAL) instead of restarting it forever."""

    argv: list[str]
    env: dict[str, str]
    startsecs: int = 2


def supervisord_binary() -> str:
    binary = shutil.which("supervisord") or shutil.which("supervisord", path="/usr/bin")
    if binary is None:
        raise ServiceError("supervisord is not installed: run `make setup`")
    return binary


def _ini_value(text: str) -> str:
    """supervisord expands %(name)s in every value, so a literal % is doubled."""
    return text.replace("%", "%%")


def _env_item(program: str, key: str, value: str) -> str:
    """KEY="value" as supervisord's `environment=` reads it.

    supervisord splits that line with a non-POSIX shlex: a quoted value ends at
    the next quote of its kind, backslashes escape nothing, and quote characters
    at either end are stripped. So a value is quoted with whichever quote it
    does not hold, and one that cannot be carried that way is refused.
    """
    text = _ini_value(value)
    quote = "'" if '"' in text else '"'
    if quote in text or (text[:1] in ("'", '"') and text) or (text[-1:] in ("'", '"') and text):
        raise ServiceError(
            f"program {program}: environment variable {key} mixes both quote characters "
            "or starts or ends with one, which supervisord cannot carry"
        )
    return f"{key}={quote}{text}{quote}"


def supervisord_config(state_dir: Path, programs: dict[str, Program]) -> str:
    """A supervisord config of our own: socket, logs and pid under `state_dir`, no root.

    It runs in the foreground (the stack starts it like its other services and
    ends it by its pid); each program gets its own process group, stopped and
    killed as a group, so vLLM's helpers go with it.
    """
    sock = state_dir / "supervisor.sock"
    if len(str(sock)) > 100:  # AF_UNIX paths are limited to 108 bytes
        raise ServiceError(
            f"state directory too long for supervisord's unix socket ({sock}): "
            "set TLOPS_STATE_DIR to a shorter path"
        )
    lines = [
        "[unix_http_server]",
        f"file={_ini_value(str(sock))}",
        "chmod=0700",
        "",
        "[supervisord]",
        "nodaemon=true",
        f"logfile={_ini_value(str(state_dir / 'supervisord.log'))}",
        f"pidfile={_ini_value(str(state_dir / 'supervisord.pid'))}",
        f"childlogdir={_ini_value(str(state_dir))}",
        f"directory={_ini_value(str(state_dir))}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_ini_value(str(sock))}",
    ]
    for name, (argv, env, startsecs) in programs.items():
        if any("\n" in part for part in (*argv, *env.values())):
            raise ServiceError(f"program {name}: a newline in its command or environment")
        environment = ",".join(_env_item(name, k, v) for k, v in sorted(env.items()))
        lines += [
            "",
            f"[program:{name}]",
            f"command={_ini_value(shlex.join(argv))}",
            f"environment={environment}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={startsecs}",
            "startretries=3",
            "stopsignal=TERM",
            "stopwaitsecs=30",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_ini_value(str(state_dir / f'{name}.log'))}",
            "stdout_logfile_maxbytes=10MB",
            "stdout_logfile_backups=2",
        ]
    return "\n".join(lines) + "\n"


def supervisor_states(config: Path) -> dict[str, str]:
    """Each program's state (RUNNING, STARTING, BACKOFF, ...) as supervisorctl reports it."""
    binary = shutil.which("supervisorctl") or shutil.which("supervisorctl", path="/usr/bin")
    if binary is None:
        return {}
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [binary, "-c", str(config), "status"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {}
    states = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in SUPERVISOR_PROGRAMS:
            states[parts[0]] = parts[1]
    return states


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

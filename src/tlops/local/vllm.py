"""vLLM's OpenAI server on the CPU, the tiny model it serves, and how readiness is judged."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tlops import checkout
from tlops.local.services import ServiceError, free_port, http_ok

VLLM_READY_TIMEOUT_S = 240.0
# The repository root, when tlops runs from a checkout (an editable install).


def vllm_python() -> Path:
    """The vLLM venv's interpreter: `TLOPS_VLLM_PYTHON`, else the checkout's `.venv-vllm`."""
    configured = os.environ.get("TLOPS_VLLM_PYTHON")
    python = Path(configured) if configured else checkout.ROOT / ".venv-vllm" / "bin" / "python"
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

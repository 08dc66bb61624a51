"""`python -m tlops.node.boot`: the node's boot phases, reported in Redis, then it exits.

supervisord starts it with the node's other programs (a oneshot: it runs once
per start of supervisord, that is once per boot of the instance). It writes
`node:boot` (`tlops.contract.boot`) as the boot goes:

1. `starting services`: supervisord has started the programs;
2. `loading model`: the watcher's heartbeat is in Redis and nginx answers over
   TLS (when a TLS URL is given), so only vLLM is left;
3. `ready`: vLLM answered one real completion.

The boot's start is the router's `starting instance` when it wrote one for
this instance (the router started the node), else this program's own start.
Only boots the router started are measured into `node:boot_times` (from its
StartInstances to ready, in Redis' clock): those are what a client waits for,
and their median is the next cold boot's ETA.

Configured by environment variables (`environment()` writes them; the
watcher role puts them in its environment file). A boot that is not ready
within its timeout logs why and exits 1, leaving the phase where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import redis as redis_py

from tlops import contract
from tlops.common.telemetry import Telemetry
from tlops.contract import BootPhase
from tlops.contract import boot as record
from tlops.node import imds
from tlops.node.backoff import Backoff
from tlops.node.queue_address import QueueAddress
from tlops.node.settings import DEFAULT_INFERENCE_URL

# field → (environment variable, default; None: optional, "" : required)
VARIABLES: dict[str, tuple[str, Any]] = {
    "redis_url": ("TL_REDIS_URL", ""),
    "inference_url": ("TL_INFERENCE_URL", DEFAULT_INFERENCE_URL),
    "model": ("TL_MODEL", None),
    "tls_url": ("TL_BOOT_TLS_URL", None),
    "imds_url": ("TL_BOOT_IMDS_URL", imds.DEFAULT_URL),
    "timeout_s": ("TL_BOOT_TIMEOUT_S", 900.0),
    "control_bucket": ("TL_CONTROL_BUCKET", None),
    "inference_api_key": ("TL_INFERENCE_API_KEY", None),
}
POLL_S = 0.25


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class BootSettings:
    redis_url: str
    inference_url: str = DEFAULT_INFERENCE_URL
    model: str | None = None
    tls_url: str | None = None
    imds_url: str = imds.DEFAULT_URL
    timeout_s: float = 900.0
    control_bucket: str | None = None  # where to learn a queue that moved (a wake's new one)
    # vLLM's key (its VLLM_API_KEY guards every /v1 route); never shown in a repr or a log
    inference_api_key: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BootSettings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field, (name, default) in VARIABLES.items():
            given = env.get(name) or None
            if given is None and default == "":
                raise ConfigError(f"{name} is required")
            values[field] = default if given is None else given
        try:
            values["timeout_s"] = float(values["timeout_s"])
        except ValueError:
            raise ConfigError("TL_BOOT_TIMEOUT_S must be a number of seconds") from None
        if not values["timeout_s"] > 0:
            raise ConfigError("TL_BOOT_TIMEOUT_S must be greater than 0")
        return cls(**values)


def environment(**values: Any) -> dict[str, str]:
    """The environment that configures the boot reporter with `values`; unset left out."""
    unknown = sorted(set(values) - set(VARIABLES))
    if unknown:
        raise TypeError(f"not boot settings: {', '.join(unknown)}")
    return {VARIABLES[k][0]: str(v) for k, v in values.items() if v is not None}


# --- what the phases wait for ----------------------------------------------------------
def _headers(settings: BootSettings) -> dict[str, str]:
    key = settings.inference_api_key
    return {"authorization": f"Bearer {key}"} if key else {}


def _post_json(url: str, body: dict[str, Any], headers: dict[str, str], timeout=30.0) -> Any:
    request = urllib.request.Request(  # noqa: S310 - the node's own loopback server
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
        return json.loads(answer.read())


def _model(settings: BootSettings) -> str:
    if settings.model:
        return settings.model
    request = urllib.request.Request(  # noqa: S310 - the node's own loopback server
        settings.inference_url + "/v1/models", headers=_headers(settings)
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
        return json.loads(answer.read())["data"][0]["id"]


def completion_ok(settings: BootSettings) -> bool:
    """vLLM answered one real completion (its /health answers before a request can fail)."""
    try:
        answer = _post_json(
            settings.inference_url + "/v1/completions",
            {"model": _model(settings), "prompt": "Hello", "max_tokens": 1},
            _headers(settings),
        )
    except (OSError, ValueError, KeyError, IndexError, urllib.error.URLError):
        return False
    return bool(isinstance(answer, dict) and answer.get("choices"))


def tls_answers(url: str) -> bool:
    """nginx answered over TLS, whatever the status (vLLM behind it may still be loading).
    The certificate is not checked: this is the node's own loopback listener."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # our own listener on loopback
    try:
        with urllib.request.urlopen(url, timeout=2, context=context):  # noqa: S310
            return True
    except urllib.error.HTTPError:
        return True  # an HTTP answer over TLS: nginx is up
    except (OSError, urllib.error.URLError):
        return False


class Boot:
    def __init__(
        self,
        settings: BootSettings,
        redis_client: redis_py.Redis,
        *,
        telemetry: Telemetry | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self.redis = redis_client
        self.log = telemetry or Telemetry("boot")
        self.clock, self.sleep = clock, sleep
        self.deadline = clock() + settings.timeout_s
        self.instance = "unknown"
        self.started_ms = 0
        self.measured = False
        self.phases: dict[str, int] = {}
        self.queue_address = QueueAddress.from_bucket_name(
            settings.control_bucket or "", telemetry=self.log
        )

    def run(self) -> int:
        self.instance = self._instance_id()
        if not self._wait("Redis", self._redis_up):
            return 1
        self._begin()
        self._enter(BootPhase.STARTING_SERVICES)
        if not self._wait("the watcher and nginx", self._services_up):
            return 1
        self._enter(BootPhase.LOADING_MODEL)
        if not self._wait("a completion from vLLM", lambda: completion_ok(self.settings)):
            return 1
        self._enter(BootPhase.READY)
        return 0

    # --- steps ----------------------------------------------------------------------
    def _instance_id(self) -> str:
        backoff = Backoff(base=0.2, cap=2.0)
        for _ in range(5):
            try:
                return imds.Imds(self.settings.imds_url).instance_id()
            except (imds.MetadataUnavailable, ValueError) as exc:
                reason = str(exc)
                self.sleep(backoff.next())
        self.log.log("WARNING", "instance id unknown", reason=reason)
        return "unknown"

    def _redis_up(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis_py.RedisError:
            self.queue_address.follow(self.redis)  # a node that booted before its queue
            return False

    def _services_up(self) -> bool:
        try:
            watcher = bool(self.redis.exists(contract.HEARTBEAT_KEY))
        except redis_py.RedisError:
            return False
        return watcher and (not self.settings.tls_url or tls_answers(self.settings.tls_url))

    def _now_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def _begin(self) -> None:
        """The boot began at the router's StartInstances of this instance, when it wrote
        one recently; else now (nobody is waiting on a measured ETA for this boot)."""
        now = self._now_ms()
        marker = self.redis.hgetall(contract.NODE_BOOT_KEY)
        started = marker.get(record.STARTED_MS, "")
        self.measured = (
            marker.get(record.PHASE) == BootPhase.STARTING_INSTANCE
            and marker.get(record.INSTANCE) in (self.instance, "unknown")
            and started.isdigit()
            and now - int(started) <= record.STALE_AFTER_MS
        )
        self.started_ms = int(started) if self.measured else now

    def _enter(self, phase: BootPhase) -> None:
        now = self._now_ms()
        fields = {
            record.PHASE: phase.value,
            record.SINCE_MS: now,
            record.INSTANCE: self.instance,
            record.STARTED_MS: self.started_ms,
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(contract.NODE_BOOT_KEY, mapping=fields)
        self.phases[phase.value] = now - self.started_ms
        if phase is BootPhase.READY and self.measured:
            pipe.lpush(contract.NODE_BOOT_TIMES_KEY, now - self.started_ms)
            pipe.ltrim(contract.NODE_BOOT_TIMES_KEY, 0, contract.BOOT_TIMES_KEPT - 1)
        pipe.execute()
        self.log.log(
            "INFO",
            f"boot: {phase.value}",
            instance=self.instance,
            elapsedMs=now - self.started_ms,
            measured=self.measured,
        )

    def _wait(self, what: str, check: Callable[[], bool]) -> bool:
        while not check():
            if self.clock() >= self.deadline:
                self.log.log(
                    "ERROR",
                    f"boot not ready: no answer from {what} within {self.settings.timeout_s:g} s",
                    instance=self.instance,
                )
                return False
            self.sleep(POLL_S)
        return True


def main(env: Mapping[str, str] | None = None) -> int:
    try:
        settings = BootSettings.from_env(env)
    except ConfigError as exc:
        print(f"tlops boot: {exc}", file=sys.stderr)
        return 2
    client = redis_py.Redis.from_url(
        settings.redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5
    )
    try:
        return Boot(settings, client).run()
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())

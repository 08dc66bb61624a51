"""A small synchronous Redis client for the Lambda hot path.

Why not redis-py here: importing `redis` costs about 190 ms on our reference
machine (it pulls in asyncio, cluster support and importlib.metadata), which is
the whole cold-start budget of the router. The router needs a few things from
Redis: PING, EVALSHA with an EVAL fallback, HGETALL, and TIME to know Redis'
clock; this module speaks just that much of RESP2 over one socket with short
timeouts. Long-running processes
(the watcher, the CLI, tests) use redis-py, which stays the reference client.

Any socket or protocol failure closes the connection and raises RedisUnavailable;
the next call opens a fresh one. Nothing is retried here: the caller decides.
"""

from __future__ import annotations

import hashlib
import select
import socket
import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit


class RedisUnavailable(Exception):
    """Redis could not be reached or answered too slowly (or not in RESP)."""


class RedisUnreachable(RedisUnavailable):
    """No connection could be made: nothing answers at the address (or its name is gone).
    While the stack sleeps the queue does not exist, and this is how that looks."""


class RedisReplyError(Exception):
    """Redis answered with an error reply (-ERR ...)."""


class Script:
    """A Lua script addressed by its SHA1, loaded on first NOSCRIPT."""

    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class RespClient:
    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 0.25,
        timeout: float = 0.5,
        clock: Callable[[], float] = time.time,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"redis URL must start with redis:// or rediss://, got {url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.tls = parts.scheme == "rediss"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        path = parts.path.lstrip("/")
        self.db = int(path) if path else 0
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._clock = clock
        self._sock: socket.socket | None = None
        self._buf = b""
        # Redis' clock minus ours, in ms, measured once per connection (see redis_time_ms)
        self._offset_ms: float | None = None

    # --- connection -----------------------------------------------------
    def _connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                import ssl

                context = ssl.create_default_context()
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                sock = context.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.timeout)
        except OSError as exc:
            raise RedisUnreachable(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._sock, self._buf, self._offset_ms = sock, b"", None
        try:
            if self.password is not None:
                auth = ("AUTH", self.password)
                if self.username:
                    auth = ("AUTH", self.username, self.password)
                self._roundtrip(auth)
            if self.db:
                self._roundtrip(("SELECT", self.db))
        except RedisReplyError:
            # A half-set-up connection (wrong password, no such db) must not be reused:
            # the next command would run unauthenticated or in db 0.
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock, self._buf, self._offset_ms = None, b"", None

    # --- protocol -------------------------------------------------------
    @staticmethod
    def _encode(args: tuple) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            if isinstance(arg, bytes):
                data = arg
            elif isinstance(arg, str):
                data = arg.encode()
            elif isinstance(arg, int | float):
                data = repr(arg).encode()
            else:
                raise TypeError(f"cannot send {type(arg).__name__} to Redis")
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by Redis")
        self._buf += chunk

    def _line(self) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            self._fill()
        line, self._buf = self._buf[:end], self._buf[end + 2 :]
        return line

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisReplyError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self._buf) < size + 2:
                self._fill()
            data, self._buf = self._buf[:size], self._buf[size + 2 :]
            # Values are text in our keyspace; anything else comes back losslessly.
            return data.decode(errors="surrogateescape")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise ValueError(f"not a RESP reply: {line[:40]!r}")

    def _roundtrip(self, args: tuple):
        assert self._sock is not None
        try:
            self._sock.sendall(self._encode(args))
            reply = self._read()
        except (OSError, ValueError) as exc:
            self.close()
            raise RedisUnavailable(f"{self.host}:{self.port}: {exc or type(exc).__name__}") from exc
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    def _closed_by_peer(self) -> bool:
        """Whether the kept connection is already gone (Redis restarted, or deleted with the
        queue): then it is readable with nothing to read. One poll, no round trip."""
        assert self._sock is not None
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
            return bool(readable)  # a reply nobody asked for is a broken stream too
        except (OSError, ValueError):
            return True

    def execute(self, *args):
        """Send one command and return its decoded reply. A kept connection the server
        has closed is replaced first, so a queue that is gone reads as unreachable."""
        self._ensure_connected()
        return self._roundtrip(args)

    def _ensure_connected(self) -> None:
        if self._sock is not None and self._closed_by_peer():
            self.close()
        if self._sock is None:
            self._connect()

    def redis_time_ms(self) -> float:
        """Redis' clock now (ms since the epoch), estimated from this process's clock.

        A deadline meant for a script must be in Redis' clock: the two may differ by
        more than the deadline itself. The first call on a connection asks `TIME` once
        and keeps the offset (error at most half that round trip); later calls cost
        nothing. Raises RedisUnavailable like any command.
        """
        self._ensure_connected()
        if self._offset_ms is None:
            sent = self._clock()
            seconds, micros = self._roundtrip(("TIME",))
            received = self._clock()
            redis_ms = int(seconds) * 1000 + int(micros) / 1000
            self._offset_ms = redis_ms - (sent + received) * 500
        return self._clock() * 1000 + self._offset_ms

    # --- the commands the Lambdas use -----------------------------------
    def ping(self) -> bool:
        return self.execute("PING") == "PONG"

    def hgetall(self, key: str) -> dict[str, str]:
        flat = self.execute("HGETALL", key) or []
        return dict(zip(flat[::2], flat[1::2], strict=True))

    def run_script(self, script: Script, keys: list[str], args: list):
        try:
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except RedisReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return self.execute("EVAL", script.source, len(keys), *keys, *args)

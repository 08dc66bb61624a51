"""A TCP endpoint that takes connections and never sends a byte: Redis or an AWS endpoint
hung mid-request. It counts the connections, so a test can tell one attempt from retries."""

from __future__ import annotations

import contextlib
import socket
import threading


class SilentServer:
    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self._listener.settimeout(0.05)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    @property
    def connections(self) -> int:
        """Connections taken so far; each is held open, unanswered, until the server stops."""
        return len(self._held)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                self._held.append(self._listener.accept()[0])

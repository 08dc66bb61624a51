"""An HTTP endpoint that misbehaves on purpose: it answers every request with exactly the
bytes it is given (a garbage status line, a body shorter than its Content-Length, nothing),
optionally late or a byte at a time, then closes the connection."""

from __future__ import annotations

import contextlib
import socket
import threading


class RawHttpServer:
    def __init__(self, answer: bytes, *, delay: float = 0.0, drip: float = 0.0):
        self.answer = answer
        self.delay = delay  # seconds before the first byte
        self.drip = drip  # seconds between bytes (0: all at once)
        self.hits = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/.well-known/jwks.json"

    def __enter__(self) -> RawHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.hits += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            connection.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request and (chunk := connection.recv(4096)):
                request += chunk
            if self._stop.wait(self.delay):
                return
            if not self.drip:
                connection.sendall(self.answer)
                return
            for byte in self.answer:
                connection.sendall(bytes([byte]))
                if self._stop.wait(self.drip):
                    return

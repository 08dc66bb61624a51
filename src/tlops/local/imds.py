"""An IMDSv2 double: the instance metadata service as the local node and the tests see it.

A real HTTP server on loopback that does what EC2's metadata service does for
the two calls the node makes, with tokens required (as the launch template
requires them): `PUT /latest/api/token` with a lifetime of 1-21600 s in
`X-aws-ec2-metadata-token-ttl-seconds` returns a token (400 without one, 403
when the request carries `X-Forwarded-For`, as IMDS refuses proxied token
requests); every `GET /latest/meta-data/...` needs a live token in
`X-aws-ec2-metadata-token` (401 otherwise, as IMDS answers), and with one
`instance-id` answers the instance id and `placement/region` the region; any
other path is 404. The instance id is given at start, or read from a file on every
request (the local stack starts the double before deploy.yml has made the
node). Tests switch failures on: `fail(status)` answers every request with
that status, `hang()` holds every request unanswered until `recover()`.

    python -m tlops.local.imds --port 8169 --instance-id i-0123456789abcdef0
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a path, not a secret
METADATA_PREFIX = "/latest/meta-data/"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
REGION_PATH = "/latest/meta-data/placement/region"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name, not a secret
MAX_TTL_S = 21600


class ImdsDouble:
    def __init__(
        self,
        instance_id: str | None = None,
        *,
        instance_id_file: Path | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        region: str = "eu-west-1",
    ):
        if (instance_id is None) == (instance_id_file is None):
            raise ValueError("give either the instance id or the file that holds it")
        self.instance_id = instance_id
        self.instance_id_file = instance_id_file
        self.region = region
        self.requests = 0
        self._host, self._port = host, port
        self._tokens: dict[str, float] = {}  # token → monotonic expiry
        self._failing: int | None = None
        self._released = threading.Event()
        self._released.set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    # what tests switch -------------------------------------------------------------------
    def fail(self, status: int = 500) -> None:
        """Answer every request with `status` until `recover()`."""
        self._failing = status

    def hang(self) -> None:
        """Hold every request unanswered until `recover()` (or the double stops)."""
        self._released.clear()

    def recover(self) -> None:
        self._failing = None
        self._released.set()

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    # serving -----------------------------------------------------------------------------
    def _current_id(self) -> str | None:
        if self.instance_id is not None:
            return self.instance_id
        try:
            return (self.instance_id_file or Path()).read_text().strip() or None
        except OSError:
            return None

    def _issue(self, ttl_text: str | None) -> tuple[int, str]:
        try:
            ttl = int(ttl_text or "")
        except ValueError:
            return 400, "missing or invalid " + TTL_HEADER
        if not 1 <= ttl <= MAX_TTL_S:
            return 400, f"{TTL_HEADER} must be 1-{MAX_TTL_S}"
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl
        return 200, token

    def _valid(self, token: str | None) -> bool:
        with self._lock:
            expiry = self._tokens.get(token or "")
        return expiry is not None and time.monotonic() < expiry

    def answer(self, method: str, path: str, headers) -> tuple[int, str]:
        if self._failing is not None:
            return self._failing, "failing on purpose"
        if method == "PUT" and path == TOKEN_PATH:
            if headers.get("X-Forwarded-For"):
                return 403, "Forbidden"
            return self._issue(headers.get(TTL_HEADER))
        if method == "GET" and path.startswith(METADATA_PREFIX):
            if not self._valid(headers.get(TOKEN_HEADER)):
                return 401, "Unauthorized"
            if path == REGION_PATH:
                return 200, self.region
            instance_id = self._current_id() if path == INSTANCE_ID_PATH else None
            return (200, instance_id) if instance_id else (404, "Not Found")
        return (405, "Method Not Allowed") if path == TOKEN_PATH else (404, "Not Found")

    def start(self) -> ImdsDouble:
        """Listen (again, on the same port after a stop: outage tests restart it)."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                with owner._lock:
                    owner.requests += 1  # counted on arrival: a hung request counts too
                owner._released.wait()
                if owner._server is None:  # stopped while this request hung
                    return
                status, body = owner.answer(self.command, self.path, self.headers)
                data = body.encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "text/plain")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except ConnectionError:
                    pass  # the client gave up on a hung request

            do_GET = do_PUT = do_POST = do_DELETE = _handle

            def log_message(self, format, *args):
                pass

        server = ThreadingHTTPServer((self._host, self._port), Handler)
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        self._released.set()  # let hung requests go (they answer nothing)
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ImdsDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tlops.local.imds", description="An IMDSv2 double on loopback."
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--region", default="eu-west-1", help="what placement/region answers")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--instance-id", help="the instance id to answer")
    which.add_argument("--instance-id-file", type=Path, help="a file holding it, read per request")
    args = parser.parse_args(argv)
    if args.instance_id is not None and not args.instance_id.startswith("i-"):
        parser.error(f"--instance-id must look like i-..., got {args.instance_id!r}")
    double = ImdsDouble(
        args.instance_id,
        instance_id_file=args.instance_id_file,
        port=args.port,
        host=args.host,
        region=args.region,
    )
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with double:
        print(f"IMDSv2 double on {double.url}", flush=True)
        stopping.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

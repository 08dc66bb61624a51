"""A stand-in for a deployed edge API, on loopback: it records each request (method, path,
Authorization header) and answers like the router for /infer, /jobs/{id}, /status, /stop."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class EdgeApiDouble:
    def __init__(self, output: str = "a remote reply"):
        self.output = output
        self.requests: list[tuple[str, str, str | None]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                """Quiet."""

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                auth = self.headers.get("authorization")
                double.requests.append((self.command, self.path, auth))
                if not auth:
                    self._answer(401, {"message": "Unauthorized"})
                elif (self.command, self.path) == ("POST", "/infer"):
                    self._answer(202, {"status": "queued", "id": str(uuid.uuid4())})
                elif self.command == "GET" and self.path.startswith("/jobs/"):
                    job_id = self.path.rsplit("/", 1)[1]
                    self._answer(200, {"id": job_id, "status": "done", "attempts": 1,
                                       "output": double.output, "output_inline": True})  # fmt: skip
                elif (self.command, self.path) == ("POST", "/stop"):
                    refusal = {
                        "error": "forbidden",
                        "message": "this route is for the admins group",
                    }
                    self._answer(403, refusal)
                else:
                    self._answer(404, {"message": "Not Found"})

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> EdgeApiDouble:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

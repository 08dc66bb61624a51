"""An OpenAI-compatible completions server that behaves like a loaded vLLM, for the watcher."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class InferenceDouble:
    """An OpenAI-compatible `/v1/completions` server that behaves like a loaded vLLM.

    Every request takes `latency` seconds and at most `cap` run at once (the
    rest wait, as vLLM queues past its batch size), so the best possible
    throughput is exactly cap / latency. Failures are switched on by tests:
    `fail_next` answers that many requests with 503, and a prompt longer than
    `max_prompt_chars` is refused with 400 the way vLLM refuses a prompt longer
    than the model's context. The output is a function of the prompt and the
    seed, so a job that runs twice gets the same text. With `api_key`, a /v1 request
    without `Authorization: Bearer <api_key>` is answered 401, as vLLM answers with
    VLLM_API_KEY set (its AuthenticationMiddleware).
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        cap: int = 8,
        model: str = "double-model",
        max_prompt_chars: int | None = None,
        port: int = 0,
        api_key: str | None = None,
    ):
        self.api_key = api_key
        self.unauthorized = 0  # requests refused for a missing or wrong key
        self.latency = latency
        self.cap = cap
        self.model = model
        self.max_prompt_chars = max_prompt_chars
        self.fail_next = 0
        self.requests = 0  # completion requests received, answered or not
        self.completed = 0  # completion requests answered 200
        self.model_lookups = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.prompts: list[str] = []
        self.first_request_at: float | None = None  # time.perf_counter() of the first request
        self._port = port
        self._slots = threading.BoundedSemaphore(cap)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> InferenceDouble:
        """Listen (again, on the same port after a stop: outage tests restart it)."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real client and vLLM use

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _key_refused(self) -> bool:
                if owner.api_key is None or self.path.startswith("/health"):
                    return False
                if self.headers.get("authorization") == f"Bearer {owner.api_key}":
                    return False
                owner.unauthorized += 1
                self._answer(401, {"error": "Unauthorized"})
                return True

            def do_GET(self) -> None:
                if self._key_refused():
                    return
                if self.path != "/v1/models":
                    self._answer(404, {"error": {"message": "not found"}})
                    return
                owner.model_lookups += 1
                self._answer(200, {"object": "list", "data": [{"id": owner.model}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                if self._key_refused():
                    return
                if self.path != "/v1/completions":
                    self._answer(404, {"error": {"message": "not found"}})
                    return
                status, body = owner._complete(payload)
                self._answer(status, body)

            def log_message(self, *args: Any) -> None:
                """Quiet: tests read counters, not request lines."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> InferenceDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _complete(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prompt = str(payload.get("prompt", ""))
        with self._lock:
            if self.first_request_at is None:
                self.first_request_at = time.perf_counter()
            self.requests += 1
            self.prompts.append(prompt)
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"error": {"message": "engine overloaded", "type": "server_error"}}
        if self.max_prompt_chars is not None and len(prompt) > self.max_prompt_chars:
            message = (
                f"This model's maximum context length is {self.max_prompt_chars} tokens, "
                f"but the prompt has {len(prompt)} tokens."
            )
            return 400, {"error": {"message": message, "type": "BadRequestError", "code": 400}}
        with self._slots:
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.latency:
                    time.sleep(self.latency)
            finally:
                with self._lock:
                    self.in_flight -= 1
                    self.completed += 1
        digest = hashlib.sha256(f"{payload.get('seed')}:{prompt}".encode()).hexdigest()[:16]
        text = f" reply {digest}"
        prompt_tokens = len(prompt.split())
        completion_tokens = min(int(payload.get("max_tokens") or 16), 2)
        return 200, {
            "id": f"cmpl-{digest}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": payload.get("model") or self.model,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

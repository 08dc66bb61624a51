"""An OpenAI-compatible inference server that behaves like a loaded vLLM, for the watcher."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"


class InferenceDouble:
    """vLLM's `/v1/completions` and `/v1/chat/completions`, plain or streamed, under load.

    Every request takes `latency` seconds, then `token_delay` seconds before each of its
    tokens, and at most `cap` run at once (the rest wait, as vLLM queues past its batch
    size), so the best possible throughput is exactly cap / (latency + tokens * token_delay).
    A generation has `tokens` tokens, fewer when `max_tokens` is smaller (finish reason
    `length`, else `stop`). With `"stream": true` the tokens go out as server-sent events,
    one chunk each, in a chunked body as vLLM sends them; `stream_options.include_usage`
    adds the usage chunk before `data: [DONE]`. A client that closes the connection
    mid-stream stops the generation and is counted in `disconnects` (vLLM aborts such a
    request).

    Failures are switched on by tests: `fail_next` answers that many requests with 503,
    and a prompt longer than `max_prompt_chars` is refused with 400 the way vLLM refuses a
    prompt longer than the model's context. The output is a function of the prompt (or the
    conversation) and the seed, so a job that runs twice gets the same text. With
    `api_key`, a /v1 request without `Authorization: Bearer <api_key>` is answered 401, as
    vLLM answers with VLLM_API_KEY set (its AuthenticationMiddleware).
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
        tokens: int = 2,
        token_delay: float = 0.0,
    ):
        self.api_key = api_key
        self.unauthorized = 0  # requests refused for a missing or wrong key
        self.latency = latency
        self.cap = cap
        self.model = model
        self.max_prompt_chars = max_prompt_chars
        self.tokens = tokens
        self.token_delay = token_delay
        self.fail_next = 0
        self.requests = 0  # generation requests received, answered or not
        self.completed = 0  # generation requests answered 200 to the end
        self.disconnects = 0  # streams the client closed before their end
        self.model_lookups = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.busy_s = 0.0  # the time requests held a slot, all together (sleeps overshoot)
        self.prompts: list[str] = []
        self.received: list[tuple[str, dict[str, Any]]] = []  # (path, body) of each generation
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
                if self.path not in (COMPLETIONS, CHAT):
                    self._answer(404, {"error": {"message": "not found"}})
                    return
                refusal = owner._admit(self.path, payload)
                if refusal is not None:
                    self._answer(*refusal)
                    return
                with owner._running():
                    generation = owner._generation(self.path, payload)
                    if payload.get("stream"):
                        self._stream(generation, payload)
                    else:
                        owner._pace(len(generation["pieces"]))
                        self._answer(200, owner._whole(self.path, generation))
                        owner._count_completed()

            def _stream(self, generation: dict[str, Any], payload: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for event in owner._events(self.path, generation, payload):
                        data = f"data: {event}\n\n".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                    with owner._lock:
                        owner.disconnects += 1
                    return
                owner._count_completed()

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

    # what each request gets ------------------------------------------------------------
    @staticmethod
    def _prompt(path: str, payload: dict[str, Any]) -> str:
        if path == CHAT:
            return json.dumps(payload.get("messages"), sort_keys=True)
        return str(payload.get("prompt", ""))

    def _admit(self, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Count the request; the refusal it gets, if any."""
        prompt = self._prompt(path, payload)
        with self._lock:
            if self.first_request_at is None:
                self.first_request_at = time.perf_counter()
            self.requests += 1
            self.prompts.append(prompt)
            self.received.append((path, payload))
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"error": {"message": "engine overloaded", "type": "server_error"}}
        if self.max_prompt_chars is not None and len(prompt) > self.max_prompt_chars:
            message = (
                f"This model's maximum context length is {self.max_prompt_chars} tokens, "
                f"but the prompt has {len(prompt)} tokens."
            )
            return 400, {"error": {"message": message, "type": "BadRequestError", "code": 400}}
        return None

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        """One of the `cap` slots, held for the whole request, `latency` first."""
        with self._slots:
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            started = time.perf_counter()
            try:
                if self.latency:
                    time.sleep(self.latency)
                yield
            finally:
                with self._lock:
                    self.in_flight -= 1
                    self.busy_s += time.perf_counter() - started

    def _count_completed(self) -> None:
        with self._lock:
            self.completed += 1

    def _pace(self, count: int) -> None:
        if self.token_delay:
            time.sleep(self.token_delay * count)

    def _generation(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        prompt = self._prompt(path, payload)
        digest = hashlib.sha256(f"{payload.get('seed')}:{prompt}".encode()).hexdigest()[:16]
        asked = int(payload.get("max_tokens") or 16)
        words = [" reply", f" {digest}", *(f" w{i}" for i in range(2, self.tokens))]
        prompt_tokens = len(prompt.split())
        pieces = words[: min(asked, self.tokens)]
        return {
            "id": digest,
            "model": payload.get("model") or self.model,
            "pieces": pieces,
            "finish_reason": "length" if asked < self.tokens else "stop",
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(pieces),
                "total_tokens": prompt_tokens + len(pieces),
            },
        }

    @staticmethod
    def _whole(path: str, generation: dict[str, Any]) -> dict[str, Any]:
        text, finish = "".join(generation["pieces"]), generation["finish_reason"]
        if path == CHAT:
            kind = "chat.completion"
            choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            kind = "text_completion"
            choice = {"index": 0, "text": text, "logprobs": None}
        return {
            "id": f"cmpl-{generation['id']}",
            "object": kind,
            "created": int(time.time()),
            "model": generation["model"],
            "choices": [choice | {"finish_reason": finish}],
            "usage": generation["usage"],
        }

    def _events(
        self, path: str, generation: dict[str, Any], payload: dict[str, Any]
    ) -> Iterator[str]:
        """The stream's `data:` payloads as vLLM sends them, `token_delay` before each token."""
        chat = path == CHAT
        head = {
            "id": f"cmpl-{generation['id']}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": generation["model"],
        }

        def chunk(piece: str | None, finish: str | None, role: bool = False) -> str:
            if chat:
                delta = {"role": "assistant", "content": ""} if role else {"content": piece}
                choice = {"index": 0, "delta": delta}
            else:
                choice = {"index": 0, "text": piece, "logprobs": None}
            return json.dumps(head | {"choices": [choice | {"finish_reason": finish}]})

        if chat:
            yield chunk(None, None, role=True)
        pieces = generation["pieces"]
        for index, piece in enumerate(pieces):
            self._pace(1)
            last = index == len(pieces) - 1
            yield chunk(piece, generation["finish_reason"] if last else None)
        if (payload.get("stream_options") or {}).get("include_usage"):
            yield json.dumps(head | {"choices": [], "usage": generation["usage"]})
        yield "[DONE]"

"""Test doubles: Cognito's side of a token (signing keys, a JWKS endpoint), an
OpenAI-compatible inference server, and the GPU node's instance record.

Used by the test suite and the benchmarks, which must sign ID tokens the way
Cognito does without a user pool, and drive the watcher without a GPU. Needs
`cryptography` (a dev dependency).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

NODE_TAGS = {"Project": "tinyllama", "Role": "gpu", "Name": "tinyllama-gpu"}

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TESTPOOL"
AUDIENCE = "test-client-id"


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class KeySet:
    """RSA signing keys made on the spot, their JWKS, and an ID-token factory."""

    def __init__(self, count: int = 2, issuer: str = ISSUER, audience: str = AUDIENCE):
        self.issuer = issuer
        self.audience = audience
        self.keys = {f"kid-{i}": rsa.generate_private_key(65537, 2048) for i in range(count)}

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            numbers = key.public_key().public_numbers()
            keys.append(
                {
                    "kty": "RSA",
                    "kid": kid,
                    "alg": "RS256",
                    "use": "sig",
                    "n": _b64url_uint(numbers.n),
                    "e": _b64url_uint(numbers.e),
                }
            )
        return {"keys": keys}

    def token(self, *, kid: str = "kid-0", headers: dict | None = None, **claims: Any) -> str:
        """A signed ID token; claims override the defaults, a claim set to None is left out."""
        now = int(time.time())
        payload = {
            "sub": str(uuid.uuid4()),
            "iss": self.issuer,
            "aud": self.audience,
            "token_use": "id",
            "iat": now,
            "auth_time": now,
            "exp": now + 3600,
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(
            payload, self.keys[kid], algorithm="RS256", headers={"kid": kid, **(headers or {})}
        )


class JwksServer:
    """Serves a JWKS document on loopback and counts the fetches."""

    def __init__(self, document: dict[str, Any]):
        self.document = document
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                """Quiet: tests read results, not request lines."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class InferenceDouble:
    """An OpenAI-compatible `/v1/completions` server that behaves like a loaded vLLM.

    Every request takes `latency` seconds and at most `cap` run at once (the
    rest wait, as vLLM queues past its batch size), so the best possible
    throughput is exactly cap / latency. Failures are switched on by tests:
    `fail_next` answers that many requests with 503, and a prompt longer than
    `max_prompt_chars` is refused with 400 the way vLLM refuses a prompt longer
    than the model's context. The output is a function of the prompt and the
    seed, so a job that runs twice gets the same text.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        cap: int = 8,
        model: str = "double-model",
        max_prompt_chars: int | None = None,
        port: int = 0,
    ):
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

            def do_GET(self) -> None:
                if self.path != "/v1/models":
                    self._answer(404, {"error": {"message": "not found"}})
                    return
                owner.model_lookups += 1
                self._answer(200, {"object": "list", "data": [{"id": owner.model}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
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


def tagged_instance(tags: dict[str, str] | None = None, *, stopped: bool = True) -> str:
    """An instance in the stand-in (through tlops.aws), as the gpu_node role leaves the node:
    tagged and stopped. For tests that need the node without a whole deploy."""
    from importlib import resources

    from tlops import aws

    tags = NODE_TAGS if tags is None else tags
    amis = json.loads(resources.files("tlops.local").joinpath("ubuntu_amis.json").read_text())
    image = next(a["ami_id"] for a in amis if a["architecture"] == "x86_64")
    ec2 = aws.client("ec2")
    instance_id = ec2.run_instances(
        ImageId=image,
        InstanceType="g4dn.xlarge",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )["Instances"][0]["InstanceId"]
    if stopped:
        ec2.stop_instances(InstanceIds=[instance_id])
    return instance_id

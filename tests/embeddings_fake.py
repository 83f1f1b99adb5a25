"""An OpenAI-compatible POST /v1/embeddings server on 127.0.0.1 that enforces the real API's request shape.

Rules (from the OpenAI API reference): a Bearer key when one is configured (401 otherwise); `model` a string;
`input` a string or a non-empty list of at most 2,048 non-empty strings; `encoding_format` "float" or
"base64"; `dimensions` a positive integer, accepted by text-embedding-3 models only (400 for others).
Replies: {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...]}], "model", "usage"},
in shuffled order (clients must sort by index). Rate limit: more than `max_concurrent` requests in flight
get 429 with Retry-After. Scripted faults: `faults` is a list of 429, 500 or "wrong-dim" consumed one per request.
Vectors are deterministic per text (a seeded Gaussian, so equal texts give equal vectors).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


def fake_vector(text: str, dim: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).normal(size=dim)
    return (vector / np.linalg.norm(vector)).tolist()


class FakeEmbeddings:
    def __init__(self, dim: int = 64, key: str | None = None, max_concurrent: int = 2, delay: float = 0.05) -> None:
        self.dim, self.key, self.max_concurrent, self.delay = dim, key, max_concurrent, delay
        self.faults: list[Any] = []
        self.requests: list[dict[str, Any]] = []  # body and headers of every request
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeEmbeddings:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.key is not None and headers.get("authorization") != f"Bearer {self.key}":
            return 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, {}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"error": {"message": "We could not parse the JSON body of your request."}}, {}
        with self.lock:
            self.requests.append({"body": body, "headers": headers})
            fault = self.faults.pop(0) if self.faults else None
        problem = _shape_problem(body)
        if problem:
            return 400, {"error": {"message": problem, "type": "invalid_request_error"}}, {}
        if fault == 429:
            return 429, {"error": {"message": "Rate limit reached", "type": "requests"}}, {"Retry-After": "0.3"}
        if fault == 500:
            return 500, {"error": {"message": "The server had an error", "type": "server_error"}}, {}
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        dim = body.get("dimensions") or self.dim
        if fault == "wrong-dim":
            dim += 1
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, dim)} for i, t in enumerate(texts)]
        random.Random(len(texts)).shuffle(data)
        usage = {
            "prompt_tokens": sum(len(t.split()) for t in texts),
            "total_tokens": sum(len(t.split()) for t in texts),
        }
        return 200, {"object": "list", "data": data, "model": body["model"], "usage": usage}, {}


def _shape_problem(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or len(texts) > 2048:
        return "'input' must be a string or a list of 1 to 2048 strings"
    if not all(isinstance(t, str) and t for t in texts):
        return "'input' items must be non-empty strings"
    if body.get("encoding_format", "float") not in ("float", "base64"):
        return "'encoding_format' must be 'float' or 'base64'"
    if "dimensions" in body:
        dims = body["dimensions"]
        if not body["model"].startswith("text-embedding-3"):
            return f"This model does not support specifying dimensions: {body['model']}"
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            return "'dimensions' must be a positive integer"
    return None


def _handler(fake: FakeEmbeddings) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path != "/v1/embeddings":
                self._send(404, {"error": {"message": f"Invalid URL (POST {self.path})"}}, {})
                return
            with fake.lock:
                fake.in_flight += 1
                fake.peak = max(fake.peak, fake.in_flight)
                over = fake.in_flight > fake.max_concurrent
            reply: tuple[int, dict[str, Any], dict[str, str]]
            try:
                if over:
                    reply = (429, {"error": {"message": "Too many concurrent requests"}}, {"Retry-After": "0.2"})
                else:
                    time.sleep(fake.delay)
                    reply = fake.answer({k.lower(): v for k, v in self.headers.items()}, raw)
            finally:
                # leave the count before replying: a client may send its next request as soon as it reads this one
                with fake.lock:
                    fake.in_flight -= 1
            self._send(*reply)

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler

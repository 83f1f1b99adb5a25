"""A deterministic OpenAI-compatible server (/chat/completions and /completions) on 127.0.0.1 for the
harness tests.

It answers the harness's prompts by word overlap, so results are reproducible and checkable:
pseudo-queries ask about a passage's first words (or say "Yes." to a passage under three words);
statements are "supported" when half of their words occur in the passages, relevance is 2/1/0 by the
share of question words in the passages, the reader quotes the first passage's first sentence, and
accuracy is 1 when half of the reference's words occur in the answer. It records peak concurrency.
`small=True` answers as the local 270M model was seen to: chat markers around a verdict, a disease name
for a 0/1/2 rating, and the prompt repeated back instead of an answer for every other question.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]{3,}", text.lower()))


def _covered(statement: str, passages: str) -> int:
    words = _words(statement)
    return int(bool(words) and len(words & _words(passages)) / len(words) >= 0.5)


def answer(prompt: str) -> str:
    if prompt.endswith("\nQuestion:"):  # pseudo-queries: example sets 0 and 2 ask alike, set 1 asks why
        passage = prompt.rsplit("Passage: ", 1)[1].removesuffix("\nQuestion:").split()
        if len(passage) < 3:
            return " Yes."
        return f" {'why' if 'Tenants' in prompt else 'what about'} {' '.join(passage[:4])}?\nQuestion: and more"
    if "Statements:" in prompt:
        passages = prompt.split("Statements:")[0]
        statements = re.findall(r"^\d+\. (.*)$", prompt.split("Statements:")[1], re.M)
        return json.dumps([_covered(s, passages) for s in statements])
    if "How relevant" in prompt:
        passages, question = prompt.split("\nQuestion: ", 1)
        question = question.split("\n", 1)[0]
        share = len(_words(question) & _words(passages)) / max(len(_words(question)), 1)
        return "2" if share >= 0.5 else "1" if share > 0 else "0"
    if "Answer the question" in prompt:
        first = prompt.split("[1] ", 1)[1] if "[1] " in prompt else ""
        return re.split(r"(?<=[.!?])\s", first.strip(), maxsplit=1)[0]
    if "Candidate answer:" in prompt:
        reference = prompt.split("Reference answer:")[1].split("\n")[0]
        candidate = prompt.split("Candidate answer:")[1].split("\n")[0]
        return str(_covered(reference, candidate))
    return "?"


def small_model_answer(prompt: str) -> str:
    """What a 270M base model was seen to reply: markers, off-format ratings, echoes."""
    if "How relevant" in prompt:
        return "Melanoma"
    if "Candidate answer:" in prompt:
        return f"<start_of_turn>model\n{answer(prompt)}<end_of_turn>"
    if "Answer the question" in prompt and len(prompt) % 2:
        return prompt[:200]
    return answer(prompt)


class FakeOpenAI:
    def __init__(self, delay: float = 0.0, small: bool = False) -> None:
        self.requests = 0
        self.paths: list[str] = []
        self.in_flight = 0
        self.peak = 0
        self.delay = delay
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                with fake.lock:
                    fake.requests += 1
                    fake.in_flight += 1
                    fake.peak = max(fake.peak, fake.in_flight)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(fake.delay)
                chat = self.path.endswith("/chat/completions")
                prompt = body["messages"][-1]["content"] if chat else body["prompt"]
                reply = (small_model_answer if small else answer)(prompt)
                choice: dict = {"index": 0, "finish_reason": "stop"}
                choice |= {"message": {"role": "assistant", "content": reply}} if chat else {"text": reply}
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(reply.split())}
                data = json.dumps({"id": "fake", "model": body["model"], "choices": [choice], "usage": usage}).encode()
                with fake.lock:
                    fake.in_flight -= 1
                    fake.paths.append(self.path)
                self.send_response(200 if self.path.endswith(("/chat/completions", "/completions")) else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

"""A small client for any OpenAI-compatible endpoint: disk cache, bounded concurrency, retries, token counts.

Two APIs: "chat" (/chat/completions, for instruction-tuned models: hosted judges) and "completions"
(/completions with the prompt as plain text and stop sequences, for base models such as the local
gemma-3-270m GGUF, which has no chat template and echoes a chat-formatted prompt instead of answering).
Every call is cached on disk under the SHA-256 of (endpoint, API, model, prompt, temperature, max_tokens,
stop), so an interrupted run resumes without paying twice, and a re-run is free. Settings come from
arguments or the environment: CSRV2_LLM_BASE_URL, CSRV2_LLM_MODEL, CSRV2_LLM_API (chat|completions),
CSRV2_LLM_API_KEY (or OPENAI_API_KEY).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
from tqdm.auto import tqdm

from csrv2_vdb.bulk import with_retries
from csrv2_vdb.credentials import redact, remember_secret
from csrv2_vdb.errors import InvalidArgumentError, LLMServiceError

Message = dict[str, str]
T = TypeVar("T")
R = TypeVar("R")
APIS = ("chat", "completions")


class RetryableStatus(Exception):
    """A 429 or 5xx answer: worth another try after a pause."""


@dataclass
class LLMConfig:
    base_url: str = field(default_factory=lambda: os.environ.get("CSRV2_LLM_BASE_URL", "https://api.openai.com/v1"))
    model: str = field(default_factory=lambda: os.environ.get("CSRV2_LLM_MODEL", "gpt-4o-mini"))
    api: str = field(default_factory=lambda: os.environ.get("CSRV2_LLM_API", "chat"))
    api_key: str = field(
        default_factory=lambda: os.environ.get("CSRV2_LLM_API_KEY", os.environ.get("OPENAI_API_KEY", "")), repr=False
    )
    temperature: float = 0.0
    max_tokens: int = 512
    concurrency: int = 4
    timeout: float = 60.0  # for the whole request, not per read
    max_retries: int = 5


@dataclass
class Usage:
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatClient:
    """`chat(messages) -> str` against the endpoint, cached on disk; `map`/`parallel` run many at once."""

    def __init__(self, settings: LLMConfig, cache_dir: str | Path) -> None:
        if settings.api not in APIS:
            raise InvalidArgumentError(f"LLM api must be one of {', '.join(APIS)}, got {settings.api!r}")
        self.settings = settings
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.usage = Usage()
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=settings.base_url.rstrip("/"), timeout=settings.timeout)
        remember_secret(settings.api_key)
        remember_secret(settings.base_url)
        self._where = f"LLM endpoint {redact(settings.base_url)}"

    def _body(self, messages: Sequence[Message], max_tokens: int | None, stop: Sequence[str]) -> dict:
        s = self.settings
        body: dict = {"model": s.model, "temperature": s.temperature, "max_tokens": max_tokens or s.max_tokens}
        if s.api == "chat":
            body["messages"] = list(messages)
        else:  # a base model completes the text itself; stop sequences end what it would run on with
            body["prompt"] = "\n\n".join(m["content"] for m in messages)
            if stop:
                body["stop"] = list(stop)
        return body

    def chat(self, messages: Sequence[Message], *, max_tokens: int | None = None, stop: Sequence[str] = ()) -> str:
        """The reply's text. `max_tokens` overrides the setting for this call; `stop` is sent to the
        completions API only (chat models end their turn themselves)."""
        body = self._body(messages, max_tokens, stop)
        # The endpoint is part of the key: the same model name on another server is another model.
        blob = json.dumps([self.settings.base_url.rstrip("/"), self.settings.api, body], sort_keys=True)
        path = self.cache_dir / f"{hashlib.sha256(blob.encode()).hexdigest()}.json"
        cached = _cached(path)
        if cached is not None:
            with self._lock:
                self.usage.cached += 1
            return cached
        reply = self._ask(body)
        content = _content(reply, self.settings.api, self._where)
        usage: dict = reply["usage"] if isinstance(reply.get("usage"), dict) else {}
        with self._lock:
            self.usage.calls += 1
            self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")  # identical prompts may be in flight at once
        tmp.write_text(json.dumps({"content": content, "usage": usage}))
        tmp.replace(path)
        return content

    def _ask(self, body: dict) -> dict:
        """The endpoint's JSON reply; 429/5xx and dropped connections retried, anything else a clear error."""
        route = "/chat/completions" if self.settings.api == "chat" else "/completions"
        headers = {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}
        reply: dict = {}

        def post() -> None:
            status, text = self._post_bounded(route, body, headers)
            if status == 429 or status >= 500:
                raise RetryableStatus(f"HTTP {status}: {redact(text[:200])}")
            if status != 200:
                raise LLMServiceError(f"{self._where} refused the request (HTTP {status}): {redact(text[:300])}")
            try:
                parsed = json.loads(text)
            except ValueError:
                raise LLMServiceError(f"{self._where} answered with something other than JSON: "
                                      f"{redact(text[:200])!r}") from None  # fmt: skip
            if not isinstance(parsed, dict):
                raise LLMServiceError(f"{self._where} answered with a JSON {type(parsed).__name__}, not an object")
            reply.update(parsed)

        try:
            with_retries(post, (RetryableStatus, httpx.TransportError), max_retries=self.settings.max_retries,
                         backoff=1.0)  # fmt: skip
        except (RetryableStatus, httpx.TransportError) as exc:
            raise LLMServiceError(
                f"{self._where} still failing after {self.settings.max_retries + 1} tries: "
                f"{redact(str(exc)) or type(exc).__name__}"
            ) from None
        return reply

    def _post_bounded(self, route: str, body: dict, headers: dict) -> tuple[int, str]:
        """(status, body text) of one POST that may take `timeout` seconds in all (httpx's timeout is per read:
        a server trickling a byte at a time would hold the call without bound)."""
        deadline = time.monotonic() + self.settings.timeout
        chunks = []
        with self._http.stream("POST", route, json=body, headers=headers) as response:
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"the reply took longer than {self.settings.timeout:.0f} s in all")
            return response.status_code, b"".join(chunks).decode("utf-8", errors="replace")

    def map(self, batch: Sequence[Sequence[Message]], desc: str = "LLM calls") -> list[str]:
        """All chats, at most `concurrency` at a time, in input order."""
        return self.parallel(self.chat, batch, desc)

    def parallel(self, fn: Callable[[T], R], items: Sequence[T], desc: str = "LLM calls") -> list[R]:
        """`fn` over the items, at most `concurrency` at a time, in input order (fn makes the calls)."""
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            return list(tqdm(pool.map(fn, items), total=len(items), desc=desc, leave=False))

    def close(self) -> None:
        self._http.close()


def _cached(path: Path) -> str | None:
    """A cached reply's text; None when there is none, or when an older version cached a reply without text."""
    try:
        content = json.loads(path.read_text())["content"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _content(reply: dict, api: str, where: str) -> str:
    """The reply's text, or a clear error for a reply without one (never cached: a re-run asks again)."""
    try:
        choice = reply["choices"][0]
        content = choice["message"]["content"] if api == "chat" else choice["text"]
    except (KeyError, IndexError, TypeError):
        raise LLMServiceError(
            f"{where} answered without {'choices[0].message.content' if api == 'chat' else 'choices[0].text'}: "
            f"{redact(json.dumps(reply)[:200])}"
        ) from None
    if not isinstance(content, str):
        raise LLMServiceError(f"{where} answered with {type(content).__name__} content {content!r:.60}, not text")
    return content

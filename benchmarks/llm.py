"""A small client for any OpenAI-compatible chat endpoint: disk cache, bounded concurrency, retries, token counts.

Every call is cached on disk under the SHA-256 of (endpoint, model, messages, temperature, max_tokens), so an
interrupted run resumes without paying twice, and a re-run is free. Settings come from arguments or
the environment: CSRV2_LLM_BASE_URL, CSRV2_LLM_MODEL, CSRV2_LLM_API_KEY (or OPENAI_API_KEY).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tqdm.auto import tqdm

from csrv2_vdb.bulk import with_retries

Message = dict[str, str]


class RetryableStatus(Exception):
    """A 429 or 5xx answer: worth another try after a pause."""


@dataclass
class LLMConfig:
    base_url: str = field(default_factory=lambda: os.environ.get("CSRV2_LLM_BASE_URL", "https://api.openai.com/v1"))
    model: str = field(default_factory=lambda: os.environ.get("CSRV2_LLM_MODEL", "gpt-4o-mini"))
    api_key: str = field(
        default_factory=lambda: os.environ.get("CSRV2_LLM_API_KEY", os.environ.get("OPENAI_API_KEY", "")), repr=False
    )
    temperature: float = 0.0
    max_tokens: int = 512
    concurrency: int = 4
    timeout: float = 60.0


@dataclass
class Usage:
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatClient:
    """`chat(messages) -> str` against /chat/completions, cached on disk; `map` runs many in parallel."""

    def __init__(self, settings: LLMConfig, cache_dir: str | Path) -> None:
        self.settings = settings
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.usage = Usage()
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=settings.base_url.rstrip("/"), timeout=settings.timeout)

    def _key(self, messages: Sequence[Message]) -> str:
        s = self.settings
        # The endpoint is part of the key: the same model name on another server is another model.
        blob = json.dumps(
            [s.base_url.rstrip("/"), s.model, list(messages), s.temperature, s.max_tokens], sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def chat(self, messages: Sequence[Message]) -> str:
        path = self.cache_dir / f"{self._key(messages)}.json"
        if path.exists():
            with self._lock:
                self.usage.cached += 1
            return json.loads(path.read_text())["content"]
        body = {
            "model": self.settings.model,
            "messages": list(messages),
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
        }
        headers = {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}
        reply: dict = {}

        def post() -> None:
            response = self._http.post("/chat/completions", json=body, headers=headers)
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableStatus(f"{response.status_code}: {response.text[:200]}")
            response.raise_for_status()
            reply.update(response.json())

        with_retries(post, (RetryableStatus, httpx.TransportError), max_retries=5, backoff=1.0)
        content = reply["choices"][0]["message"]["content"]
        usage = reply.get("usage") or {}
        with self._lock:
            self.usage.calls += 1
            self.usage.prompt_tokens += int(usage.get("prompt_tokens", 0))
            self.usage.completion_tokens += int(usage.get("completion_tokens", 0))
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")  # identical prompts may be in flight at once
        tmp.write_text(json.dumps({"content": content, "usage": usage}))
        tmp.replace(path)
        return content

    def map(self, batch: Sequence[Sequence[Message]], desc: str = "LLM calls") -> list[str]:
        """All chats, at most `concurrency` at a time, in input order."""
        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
            return list(tqdm(pool.map(self.chat, batch), total=len(batch), desc=desc, leave=False))

    def close(self) -> None:
        self._http.close()

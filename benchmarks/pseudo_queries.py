"""Pseudo-queries: an LLM writes questions that each text answers, so a corpus that has no queries can still
train CSRv2 on (question, text) pairs: `csrv2-vdb pseudo-queries --input corpus.jsonl --out pairs.jsonl`, then
`csrv2-vdb train --input pairs.jsonl`. Supervision that looks like the queries users will type is what the
label-free fit lacks; but with the only LLM this machine has (gemma-3-270m) the questions took one shape and
made every head worse than label-free fitting on GraphRAG-Bench medical (docs/quality.md, "Pseudo-queries"):
check the result with `csrv2-vdb eval` before indexing with such a head.

Any OpenAI-compatible endpoint (`benchmarks.llm.ChatClient`): a chat model, or a base model through the
completions API (the local gemma-3-270m GGUF of `make graphrag-llm`), since the prompt is few-shot text that
ends where the question starts. Question i of a text uses example set i, so several questions per text differ
while the temperature stays 0; replies are cached on disk, so an interrupted run resumes without paying twice.
The examples are written for this module on general topics (no evaluation data).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from csrv2_vdb.benchmarks.llm import ChatClient
from csrv2_vdb.errors import InvalidArgumentError, InvalidRecordError
from csrv2_vdb.records import read_rows
from csrv2_vdb.training.data import row_text

# (passage, question) examples; one set per question index, each with its own kind of question.
EXAMPLES: tuple[tuple[tuple[str, str], ...], ...] = (
    (
        (
            "Nginx is a small, fast web server and reverse proxy. It serves static files, balances load across "
            "backends and terminates TLS connections.",
            "which web server can also act as a reverse proxy and load balancer?",
        ),
        (
            "A sourdough starter is a mix of flour and water that wild yeast and bacteria ferment. Feed it daily "
            "and keep it at room temperature; it is ready when it doubles within a few hours.",
            "how do I know when my sourdough starter is ready to use?",
        ),
    ),
    (
        (
            "Tenants may end a lease early if the landlord fails to make repairs that affect health or safety, "
            "after giving written notice and a reasonable time to fix the problem.",
            "can I break my lease if the landlord will not repair the heating?",
        ),
        (
            "Rust's borrow checker rejects programs in which a value is changed while another part of the code "
            "still holds a reference to it, which rules out data races at compile time.",
            "why does the compiler refuse code that changes a value someone still borrows?",
        ),
    ),
    (
        (
            "Monarch butterflies migrate up to 4,000 km each autumn from Canada to central Mexico, where they "
            "spend the winter clustered on fir trees in the mountains.",
            "where do monarch butterflies spend the winter?",
        ),
        (
            "A heat pump moves heat instead of making it: in winter it pulls warmth from outside air, even below "
            "freezing, and releases it indoors, using far less electricity than a resistive heater.",
            "what are the benefits of a heat pump over an electric heater in cold weather?",
        ),
    ),
)
MAX_WORDS = 200  # of each text in the prompt: enough for a 150-word chunk, keeps prompts short


@dataclass
class PseudoQueryStats:
    texts: int
    written: int
    dropped: int  # replies that were empty, too short or a copy of an earlier question for the same text


def prompt(text: str, index: int = 0) -> str:
    """The few-shot prompt for question `index` (0, 1 or 2: one example set each) of `text`."""
    shots = EXAMPLES[index]
    lines = [f"Passage: {p}\nQuestion: {q}\n" for p, q in shots]
    passage = " ".join(text.split()[:MAX_WORDS])
    return "\n".join(lines) + f"\nPassage: {passage}\nQuestion:"


def parse_question(reply: str) -> str | None:
    """The question in a reply: its first non-empty line, without a leading "Question:"; None when it is
    shorter than three words (nothing to train on)."""
    for line in reply.strip().splitlines():
        line = re.sub(r"^\s*(question\s*\d*\s*:)?\s*", "", line, flags=re.IGNORECASE).strip()
        if line:
            return line if len(line.split()) >= 3 else None
    return None


def pseudo_query_rows(texts: Sequence[str], client: ChatClient, per_text: int = 1) -> list[list[str]]:
    """The distinct questions of each text (in text order), asking `per_text` questions of each."""
    if not 1 <= per_text <= len(EXAMPLES):
        raise InvalidArgumentError(
            f"per_text must be between 1 and {len(EXAMPLES)} (one example set per question), got {per_text}"
        )
    # Question index outermost: consecutive prompts share the examples, which a local server keeps cached.
    items = [(n, texts[n], i) for i in range(per_text) for n in range(len(texts))]
    replies = client.parallel(
        lambda item: client.chat([{"role": "user", "content": prompt(item[1], item[2])}], max_tokens=48, stop=["\n"]),
        items,
        desc="pseudo-queries",
    )
    by_text: list[list[str]] = [[] for _ in texts]
    for (n, _, _), reply in zip(items, replies, strict=True):
        question = parse_question(reply)
        if question is not None and question.lower() not in (q.lower() for q in by_text[n]):
            by_text[n].append(question)
    return by_text


def write_pseudo_queries(input: Path, out: Path, client: ChatClient, per_text: int = 1) -> PseudoQueryStats:
    """Read the texts of `input` (rows with a 'text' field, as `train --input` reads them) and write `out` as
    JSON lines {"query", "positive"[, "id"]}: the pairs layout `train --input` trains CSRv2 on."""
    numbered = list(read_rows(input))
    if not numbered:
        raise InvalidRecordError(f"{input} holds no rows")
    texts = [row_text(input, n, row, "text") for n, row in numbered]  # n: the file's own line number
    rows = [row for _, row in numbered]
    questions = pseudo_query_rows(texts, client, per_text)  # every reply is in before the output is opened
    written = dropped = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row, text, asked in zip(rows, texts, questions, strict=True):
            dropped += per_text - len(asked)
            for question in asked:
                pair = {"query": question, "positive": text, **({"id": row["id"]} if "id" in row else {})}
                f.write(json.dumps(pair, ensure_ascii=False) + "\n")
                written += 1
    tmp.replace(out)
    return PseudoQueryStats(len(texts), written, dropped)

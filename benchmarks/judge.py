"""The generation and judge path of GraphRAG-Bench: our prompts, one question's calls, and parsers that
cope with what a real small model emits.

Every prompt starts with the same passages block, so a local server that keeps its KV cache (llama.cpp)
evaluates one question's context once for the reader and three judges; each prompt ends with a cue line
("Answer:", "Rating:") that a base model completes. Replies are cleaned before parsing: chat markers
(`<end_of_turn>`, `<|im_end|>`) are removed, and a reply that starts by repeating the prompt is an
echo, not an answer. A judge reply that still does not parse is None (left out of the mean and
counted in the parse rate), never a guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from csrv2_vdb.benchmarks.datasets import Question, content_tokens
from csrv2_vdb.benchmarks.llm import ChatClient

JUDGED = ("context_recall", "context_relevance", "accuracy", "coverage", "faithfulness")

_MARKERS = re.compile(
    r"<\|?/?(?:start_of_turn|end_of_turn|im_start|im_end|eot_id|begin_of_text|end_of_text|bos|eos|s)\|?>", re.I
)
_ROLE_LINES = re.compile(r"^\s*(?:model|assistant|user)\s*:?\s*$", re.I | re.M)  # left where a marker was
_ECHO_CHARS = 16  # a reply that opens with this much of the prompt is repeating it


def sentences(text: str) -> list[str]:
    """Statements of a text: its sentences (at least 3 words each)."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if len(s.split()) >= 3] or [text.strip()]


def clean_reply(reply: str, prompt: str) -> str:
    """The reply without chat markers; "" when it only repeats the prompt (a base model behind a chat template)."""
    text = _ROLE_LINES.sub("", _MARKERS.sub("", reply)).strip()
    opening = prompt.strip()[:_ECHO_CHARS]
    return "" if len(opening) == _ECHO_CHARS and text.startswith(opening) else text


def parse_flags(reply: str, n: int) -> list[int] | None:
    """n zeros/ones: a JSON list ending its line, or n bare 0/1 (or yes/no) separated by commas or spaces;
    else None. "[1] The basal cell..." is the passages' numbering repeated, not a list of one."""
    match = re.search(r"\[[\s01,]*\](?=[ \t.]*$)", reply, re.M)
    if match:
        values = json.loads(match.group(0))
        return values if len(values) == n and set(values) <= {0, 1} else None
    line = next((x for x in reply.splitlines() if x.strip()), "")
    tokens = re.findall(r"[a-z0-9]+", line.lower())
    mapped = [{"1": 1, "yes": 1, "0": 0, "no": 0}.get(t) for t in tokens]
    return mapped if len(mapped) == n and None not in mapped else None  # type: ignore[return-value]


_RELEVANCE_WORDS = {"irrelevant": 0, "not relevant": 0, "partly": 1, "partially": 1, "somewhat": 1, "relevant": 2}
_VERDICT_WORDS = {"incorrect": 0, "not correct": 0, "wrong": 0, "no": 0, "false": 0, "correct": 1, "yes": 1,
                  "true": 1}  # fmt: skip


def parse_choice(reply: str, allowed: str, words: dict[str, int]) -> int | None:
    """The first answer on the reply's first line: a number standing alone (None unless allowed: "10/10",
    "3"), or one of `words`, longer phrases first so "not relevant" is not read as "relevant"; None when
    there is neither ("Melanoma")."""
    line = next((x for x in reply.lower().splitlines() if x.strip()), "")
    found: list[tuple[int, int | None]] = []  # (position, value)
    number = re.search(r"(?<![\w/.])[0-9]+(?![\w/])", line)
    if number:
        found.append((number.start(), int(number.group()) if number.group() in allowed else None))
    for phrase in sorted(words, key=len, reverse=True):
        pattern = rf"\b{re.escape(phrase)}\b"
        found += [(m.start(), words[phrase]) for m in re.finditer(pattern, line)]
        line = re.sub(pattern, lambda m: " " * len(m.group()), line)  # "relevant" inside "not relevant"
    return min(found, key=lambda f: f[0])[1] if found else None


def answer_f1(answer: str, reference: str) -> float:
    """F1 of the answer's content words against the reference's (judge-free; 0 for an empty answer)."""
    got, want = content_tokens(answer), content_tokens(reference)
    common = len(got & want)
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def _passages(texts: Sequence[str]) -> str:
    return "Passages:\n" + "\n\n".join(f"[{i + 1}] {t}" for i, t in enumerate(texts))


def _numbered(items: Sequence[str]) -> str:
    return "\n".join(f"{i + 1}. {s}" for i, s in enumerate(items))


def _support(passages: str, statements: Sequence[str]) -> str:
    return (
        f"{passages}\n\nStatements:\n{_numbered(statements)}\n\nFor each statement, answer 1 if the passages "
        f"support it and 0 if not. Reply with only a JSON list of {len(statements)} numbers, e.g. [1, 0].\nList:"
    )


def prompts(question: str, passages: Sequence[str], reference: str = "", answer: str = "") -> dict[str, str]:
    """Our prompts (the paper's are not reused); the judges ask for a strictly parseable reply."""
    context = _passages(passages)
    return {
        "reader": f"{context}\n\nAnswer the question using only the passages, in one or two sentences.\n"
        f"Question: {question}\nAnswer:",
        "relevance": f"{context}\n\nQuestion: {question}\nHow relevant are the passages to the question? Reply "
        "with one digit: 0 (irrelevant), 1 (partly relevant), 2 (relevant).\nRating:",
        "recall": _support(context, sentences(reference)),
        "faithfulness": _support(context, sentences(answer)),
        "coverage": _support(f"Passages:\n[1] {answer}", sentences(reference)),
        "accuracy": f"Question: {question}\nReference answer: {reference}\nCandidate answer: {answer}\n\n"
        "Is the candidate answer correct and consistent with the reference? Reply with one digit: 1 or 0.\n"
        "Verdict:",
    }


def _share(flags: list[int] | None) -> float | None:
    return sum(flags) / len(flags) if flags is not None else None


def judge_question(client: ChatClient, question: Question, passages: Sequence[str]) -> dict[str, float | None]:
    """One question's reader answer and judges, in an order that shares the passages prefix:
    context recall, relevance / 2, accuracy, ROUGE-L, answer F1, coverage, faithfulness (None if unparsed),
    and `answered` (1 when the reader gave an answer that is not an echo of its prompt)."""
    from rouge_score import rouge_scorer

    def ask(prompt: str, max_tokens: int, stop: Sequence[str] = ("\n\n",)) -> str:
        return clean_reply(client.chat([{"role": "user", "content": prompt}], max_tokens=max_tokens, stop=stop),
                           prompt)  # fmt: skip

    def support(prompt: str, n: int) -> float | None:
        return _share(parse_flags(ask(prompt, 8 + 4 * n), n))

    reference = question.answer
    answer = ask(prompts(question.question, passages)["reader"], 160, ("\nQuestion:", "\n\n"))
    p = prompts(question.question, passages, reference, answer)
    refs, said = sentences(reference), sentences(answer)
    relevance = parse_choice(ask(p["relevance"], 8), "012", _RELEVANCE_WORDS)
    out: dict[str, float | None] = {
        "context_recall": support(p["recall"], len(refs)),
        "context_relevance": relevance / 2 if relevance is not None else None,
        "faithfulness": support(p["faithfulness"], len(said)) if answer else None,
    }
    accuracy = parse_choice(ask(p["accuracy"], 8), "01", _VERDICT_WORDS) if answer else None
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    out |= {
        "accuracy": float(accuracy) if accuracy is not None else None,
        "coverage": support(p["coverage"], len(refs)) if answer else None,
        "rouge_l": scorer.score(reference, answer)["rougeL"].fmeasure,
        "answer_f1": answer_f1(answer, reference),
        "answered": float(bool(answer)),
    }
    return out


def llm_scores(client: ChatClient, questions: Sequence[Question], contexts: Sequence[list[str]]) -> dict[str, list]:
    """Per metric, one value per question (None where a judge's reply did not parse)."""
    rows = client.parallel(
        lambda i: judge_question(client, questions[i], contexts[i]), range(len(questions)), "reader and judges"
    )
    return {metric: [row[metric] for row in rows] for metric in rows[0]} if rows else {}


def parse_rates(per_q: dict[str, list]) -> dict[str, tuple[float, int]]:
    """Per judged metric: (share of the judge's replies that parsed, replies). The judges that read the
    reader's answer are asked only where there is one."""
    answered = [bool(a) for a in per_q.get("answered", [])]
    rates = {}
    for metric in JUDGED:
        values = per_q.get(metric, [])
        asked = [v for v, a in zip(values, answered, strict=True) if a or metric in ("context_recall",
                                                                                     "context_relevance")]  # fmt: skip
        if asked:
            rates[metric] = (sum(v is not None for v in asked) / len(asked), len(asked))
    return rates

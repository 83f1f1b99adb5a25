"""Data the demo and evaluations read: GraphRAG-Bench corpora and questions, chunking, data paths.

Paths are always arguments; `find_data_dir` only supplies a default (the CSRV2_DATA variable, or a
../shared/data beside the repository or the working directory). A missing file raises
`DataNotFoundError` naming the file and where to put it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csrv2_vdb.errors import DataNotFoundError, InvalidRecordError
from csrv2_vdb.texts import is_unicode_text

GRAPHRAG_DIR = "graphrag-bench"
MANIFEST_HINT = (
    "GraphRAG-Bench (github.com/GraphRAG-Bench/GraphRAG-Benchmark, folder Datas/) provides "
    "medical_corpus.json and medical_questions.json"
)


def find_data_dir() -> Path:
    """CSRV2_DATA if set, else the first ../shared/data found next to the repository or the working directory."""
    if os.environ.get("CSRV2_DATA"):
        return Path(os.environ["CSRV2_DATA"])
    repo = Path(__file__).resolve().parents[1]
    for base in (Path.cwd(), repo):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


def require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataNotFoundError(
            f"missing {what}: expected the file {path}. Place it there, or point --data (or CSRV2_DATA) "
            f"at the folder that holds {GRAPHRAG_DIR}/. {MANIFEST_HINT}."
        )
    return path


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str
    question_type: str


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    position: int


def load_corpus(data_dir: Path, domain: str = "medical") -> str:
    """The corpus text of a GraphRAG-Bench domain (one long string)."""
    path = require(data_dir / GRAPHRAG_DIR / f"{domain}_corpus.json", f"the {domain} corpus")
    records = json.loads(path.read_text())
    return "\n".join(r["context"] for r in records)


def load_questions(data_dir: Path, domain: str = "medical") -> list[Question]:
    path = require(data_dir / GRAPHRAG_DIR / f"{domain}_questions.json", f"the {domain} questions")
    return [Question(q["id"], q["question"], q["answer"], q["question_type"]) for q in json.loads(path.read_text())]


def chunk_words(text: str, size: int = 150, overlap: int = 30, prefix: str = "chunk") -> list[Chunk]:
    """Split into windows of `size` words that overlap by `overlap` words.

    150 words is about 200 MiniLM tokens, inside its 256-token window, so no chunk is truncated;
    the overlap keeps a sentence that straddles a boundary whole in one of the two chunks.
    """
    if not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
    words = text.split()
    step = size - overlap
    starts = range(0, max(len(words) - overlap, 1), step)
    return [Chunk(f"{prefix}-{n:06d}", " ".join(words[s : s + size]), n) for n, s in enumerate(starts)]


_STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers him his how i if in into is it its itself just may me might more most
    must my no nor not now of off on once only or other our out over own same she should so some such
    than that the their them then there these they this those through to too under until up very was
    we were what when where which while who whom why will with would you your""".split()
)


def content_tokens(text: str) -> set[str]:
    """Lower-cased alphanumeric words of 3+ characters that are not stopwords."""
    words = "".join(c.lower() if c.isalnum() else " " for c in text).split()
    return {w for w in words if len(w) >= 3 and w not in _STOPWORDS}


def answer_token_recall(answer: str, passages: Sequence[str]) -> float:
    """Share of the reference answer's content tokens found in the retrieved passages (offline, no LLM)."""
    wanted = content_tokens(answer)
    if not wanted:
        return 0.0
    found = set().union(*(content_tokens(p) for p in passages)) if passages else set()
    return len(wanted & found) / len(wanted)


def iter_records(
    path: Path, text_field: str = "text", id_field: str = "id", *, require_ids: bool = True
) -> Iterator[dict]:
    """Stream documents as dicts with "id" and "text" keys (other fields kept as payload).

    .jsonl: one object per line; .parquet: one row per document (needs pyarrow); .txt: one text per
    line, its id the 1-based line number. Nothing is coerced: a text must be a non-empty string, an id a
    string or an integer, all ids of a file of one type (so 1 and "1" never collide), and with
    `require_ids` every record needs one. A bad record raises `InvalidRecordError` naming file and line.
    """
    if not path.is_file():
        raise DataNotFoundError(f"input file {path} does not exist")
    check = _RecordCheck(path, text_field, id_field, require_ids)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(path).iter_batches():
            for row in batch.to_pylist():
                n += 1
                yield check(row, n)
        return
    with open(path, encoding="utf-8", errors="strict") as f:
        n = 0
        try:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                if path.suffix == ".jsonl":
                    try:
                        obj = json.loads(line)
                    except ValueError as exc:
                        raise InvalidRecordError(f"{path}:{n}: not valid JSON ({exc})") from None
                    yield check(obj, n)
                else:
                    yield check({id_field: n, text_field: line.rstrip("\n")}, n)
        except UnicodeDecodeError as exc:
            raise InvalidRecordError(f"{path}:{n + 1}: not UTF-8 text ({exc.reason}); re-encode the file") from None


class _RecordCheck:
    """Turns one parsed record into {"id", "text", payload...}, refusing what would be coerced or collide."""

    def __init__(self, path: Path, text_field: str, id_field: str, require_ids: bool) -> None:
        self.path, self.text_field, self.id_field, self.require_ids = path, text_field, id_field, require_ids
        self.id_type: tuple[type, int] | None = None  # the first id's type and line

    def fail(self, n: int, problem: str) -> InvalidRecordError:
        return InvalidRecordError(f"{self.path}:{n}: {problem}")

    def __call__(self, obj: object, n: int) -> dict:
        if not isinstance(obj, dict):
            raise self.fail(n, f"expected an object with a {self.text_field!r} field, got {type(obj).__name__}")
        text = obj.get(self.text_field)
        if not isinstance(text, str):
            got = "no such field" if self.text_field not in obj else f"{type(text).__name__} {text!r}"
            raise self.fail(n, f"{self.text_field!r} must be a string ({got}); fix or drop the record")
        if not text.strip():
            raise self.fail(n, f"{self.text_field!r} is empty; drop the record or fill it in")
        if not is_unicode_text(text):
            raise self.fail(
                n, f"{self.text_field!r} holds a lone surrogate (broken \\ud800-style escape); fix the text"
            )
        doc_id = obj.get(self.id_field, None if self.require_ids else n)
        if doc_id is None or isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
            got = "missing" if self.id_field not in obj else f"{type(doc_id).__name__} {doc_id!r}"
            raise self.fail(n, f"{self.id_field!r} must be a string or an integer ({got}); give every record an id")
        if self.id_type is None:
            self.id_type = (type(doc_id), n)
        elif type(doc_id) is not self.id_type[0]:
            kind, line = self.id_type[0].__name__, self.id_type[1]
            raise self.fail(
                n,
                f"id {doc_id!r} is a {type(doc_id).__name__} but line {line}'s id is a {kind}; ids of one file "
                'must share a type, since 1 and "1" would name the same document',
            )
        payload = {k: v for k, v in obj.items() if k not in (self.text_field, self.id_field)}
        return {**payload, "id": str(doc_id), "text": text}


def read_records(path: Path, text_field: str = "text", id_field: str = "id", *, require_ids: bool = True) -> list[dict]:
    """All of `iter_records` as a list."""
    return list(iter_records(path, text_field, id_field, require_ids=require_ids))


@dataclass(frozen=True)
class Banking77:
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]


def load_banking77(data_dir: Path) -> Banking77:
    """Banking77 train/test splits ("text,category" CSV files under banking77/)."""
    import csv

    def read(split: str) -> tuple[list[str], list[str]]:
        path = data_dir / "banking77" / f"{split}.csv"
        if not path.is_file():
            raise DataNotFoundError(
                f"missing Banking77: expected {path} (github.com/PolyAI-LDN/task-specific-datasets, banking_data/); "
                "point --data at the folder that holds banking77/"
            )
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [r["text"] for r in rows], [r["category"] for r in rows]

    train, test = read("train"), read("test")
    return Banking77(train[0], train[1], test[0], test[1])


def answer_qrels(
    questions: Sequence[Question], chunks: Sequence[Chunk], min_recall: float = 0.5
) -> dict[int, set[int]]:
    """Question-to-chunk relevance from the reference answers (this release has no evidence spans).

    A chunk is relevant to a question when it holds the largest share of the answer's content words
    and that share is at least `min_recall`; ties are all relevant. Questions without such a chunk
    are left out.
    """
    chunk_tokens = [content_tokens(c.text) for c in chunks]
    qrels: dict[int, set[int]] = {}
    for qi, question in enumerate(questions):
        wanted = content_tokens(question.answer)
        if not wanted:
            continue
        shares = np.array([len(wanted & tokens) / len(wanted) for tokens in chunk_tokens])
        best = float(shares.max())
        if best >= min_recall:
            qrels[qi] = {int(i) for i in np.flatnonzero(shares == best)}
    return qrels

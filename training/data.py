"""What `csrv2-vdb train --input FILE` trains on, read from the user's file: one `TrainingSet` whatever the layout.

    text                      -> label-free: the texts themselves (what will be indexed)
    text + label              -> CSRv2 with class labels (rows of one label are positives)
    query + positive (+ negative) -> CSRv2 with pair labels (a query and its positives share a label)
    .npy / an `embedding` column  -> precomputed backbone embeddings (label-free, or labelled with `label`)

Files: whatever `csrv2_vdb.records.read_rows` reads (.jsonl, .ndjson, .json, .csv, .tsv, .parquet, .txt), and
.npy (an (n, d) array). A row that breaks
the layout raises `InvalidRecordError` naming the file and the row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np

from csrv2_vdb.errors import DataNotFoundError, InvalidEmbeddingError, InvalidRecordError
from csrv2_vdb.records import SUFFIXES as RECORD_SUFFIXES
from csrv2_vdb.records import file_type, read_rows
from csrv2_vdb.texts import is_unicode_text
from csrv2_vdb.training.labels import classification_labels, group_rows

Mode = Literal["label-free", "labels", "pairs"]
Embed = Callable[[Sequence[str], str], np.ndarray]  # (texts, "query" | "document") -> (n, d)
SUFFIXES = (*RECORD_SUFFIXES, ".npy")
Rows = TypeVar("Rows", list[tuple[int, dict]], np.ndarray)


@dataclass
class TrainingSet:
    """Rows to train on and, for CSRv2, their labels (rows sharing a label are positives of each other)."""

    embeddings: np.ndarray
    labels: np.ndarray | None
    mode: Mode
    described: str  # one line for the user: what was read and how it is used


def load_training_set(
    path: Path, embed: Embed | None, *, max_rows: int | None = None, seed: int = 0, log: Callable[[str], None] = print
) -> TrainingSet:
    """Read `path`, pick the mode from its fields, embed what needs embedding (`embed` may be None for .npy)."""
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise DataNotFoundError(f"training file {path} does not exist")
        x = _subsample(np.load(path), max_rows, seed)
        return TrainingSet(_check_embeddings(x, str(path)), None, "label-free", f"{len(x)} embeddings from {path}")
    file_type(path)  # a clear error for a missing file or an unknown type before anything is embedded
    rows = [(n, row) for n, row in read_rows(path)]
    if not rows:
        raise InvalidRecordError(f"{path} holds no rows")
    fields = set(rows[0][1])
    if {"query", "positive"} <= fields:
        return _pairs(path, rows, _need(embed), max_rows, seed)
    if "embedding" in fields:
        rows = _subsample(rows, max_rows, seed)
        try:
            x = np.array([_vector(path, n, row) for n, row in rows], dtype=np.float32)
        except (ValueError, TypeError):
            raise InvalidEmbeddingError(
                f"{path}: the 'embedding' rows differ in length or hold something other than numbers"
            ) from None
        labels = [row_text(path, n, row, "label") for n, row in rows] if "label" in fields else None
        y = classification_labels(labels) if labels is not None else None
        mode: Mode = "labels" if y is not None else "label-free"
        return TrainingSet(_check_embeddings(x, str(path)), y, mode, f"{len(x)} embeddings from {path} ({mode})")
    if "text" not in fields:
        raise InvalidRecordError(
            f"{path}: row 1 has fields {sorted(fields)}; training needs 'text' (label-free), 'text' + 'label', "
            "'query' + 'positive' (pairs) or 'embedding'"
        )
    rows = _subsample(rows, max_rows, seed)
    texts = [row_text(path, n, row, "text") for n, row in rows]
    if "label" in fields:
        labels = [str(_field(path, n, row, "label")) for n, row in rows]
        x = _need(embed)(texts, "document")
        described = f"{len(texts)} texts with {len(set(labels))} labels: CSRv2 with class labels"
        return TrainingSet(x, classification_labels(labels), "labels", described)
    x = _need(embed)(texts, "document")
    described = f"{len(texts)} texts, no labels: label-free fitting"
    log(described)
    return TrainingSet(x, None, "label-free", described)


def _pairs(path: Path, rows: list[tuple[int, dict]], embed: Embed, max_rows: int | None, seed: int) -> TrainingSet:
    """Pair labels: each query and its positive(s) (and no negative) share a label; negatives stand alone."""
    rows = _subsample(rows, max_rows, seed)
    queries: dict[str, int] = {}
    docs: dict[str, int] = {}
    groups: list[list[tuple[str, str]]] = []
    for n, row in rows:
        query = row_text(path, n, row, "query")
        positives = _texts(path, n, row, "positive")
        negatives = _texts(path, n, row, "negative") if row.get("negative") is not None else []
        queries.setdefault(query, len(queries))
        for text in positives + negatives:
            docs.setdefault(text, len(docs))
        groups.append([("q", query)] + [("d", p) for p in positives])
    q_texts, d_texts = list(queries), list(docs)
    x = np.concatenate([embed(q_texts, "query"), embed(d_texts, "document")])

    def row_of(item: tuple[str, str]) -> int:
        return queries[item[1]] if item[0] == "q" else len(q_texts) + docs[item[1]]

    index, labels = group_rows(len(x), ([row_of(item) for item in g] for g in groups))
    described = (
        f"{len(groups)} query-positive pairs ({len(q_texts)} queries, {len(d_texts)} documents): CSRv2 with pair labels"
    )
    return TrainingSet(x[index], labels, "pairs", described)


def _need(embed: Embed | None) -> Embed:
    if embed is None:
        raise InvalidRecordError("these rows hold texts, so training needs a backbone to embed them")
    return embed


def _subsample(rows: Rows, max_rows: int | None, seed: int) -> Rows:
    """At most `max_rows` rows, a seeded sample in file order (a list or an array)."""
    if max_rows is None or len(rows) <= max_rows:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
    return rows[keep] if isinstance(rows, np.ndarray) else [rows[i] for i in keep]


def _field(path: Path, n: int, row: dict, name: str) -> object:
    value = row.get(name)
    if value is None or value == "":
        raise InvalidRecordError(f"{path}:{n}: {name!r} is missing or empty; fill it in or drop the row")
    return value


def row_text(path: Path, n: int, row: dict, name: str) -> str:
    """Field `name` of row `n` of `path` as a non-empty text, or an `InvalidRecordError` naming file, row and field."""
    value = _field(path, n, row, name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRecordError(f"{path}:{n}: {name!r} must be a non-empty string, got {value!r}")
    if not is_unicode_text(value):
        raise InvalidRecordError(f"{path}:{n}: {name!r} holds a lone surrogate; fix the text")
    return value


def _texts(path: Path, n: int, row: dict, name: str) -> list[str]:
    """A field holding one text or a list of texts."""
    value = _field(path, n, row, name)
    values = value if isinstance(value, list) else [value]
    return [row_text(path, n, {name: v}, name) for v in values]


def _vector(path: Path, n: int, row: dict) -> list[float]:
    value = row.get("embedding")
    if not isinstance(value, list | np.ndarray) or len(value) == 0:
        raise InvalidRecordError(f"{path}:{n}: 'embedding' must be a list of numbers")
    return list(value)


def _check_embeddings(x: np.ndarray, where: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise InvalidEmbeddingError(f"{where}: expected an (n, d) array of embeddings, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidEmbeddingError(f"{where}: embeddings hold NaN or inf")
    return x

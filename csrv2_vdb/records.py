"""Input records for every command: JSONL/NDJSON, JSON arrays, CSV/TSV, parquet or plain text, streamed as
{"id", "text", ...}.

Nothing is coerced: a bad record raises `InvalidRecordError` naming the file and line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from csrv2_vdb.errors import DataNotFoundError, InvalidRecordError
from csrv2_vdb.texts import is_unicode_text

# File types every command reads (matched case-insensitively). .json is a JSON array of objects; .jsonl and
# .ndjson hold one object per line; .csv and .tsv have a header row; .txt holds one text per line.
SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt")


def file_type(path: Path) -> str:
    """The lower-cased suffix of a readable input file, or a clear error for a missing file or unknown type."""
    if not path.is_file():
        raise DataNotFoundError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidRecordError(
            f"{path}: unknown file type {path.suffix or '(none)'!r}; use one of {', '.join(SUFFIXES)}"
        )
    return suffix


def read_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line or row number, row) of any input file: the one reader behind index, encode, eval and train.

    A .txt line is {"id": line number, "text": line}; CSV/TSV values are strings, keyed by the header.
    """
    suffix = file_type(path)
    if suffix == ".parquet":
        yield from parquet_rows(path)
    elif suffix in (".csv", ".tsv"):
        yield from _delimited_rows(path, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".json":
        yield from _json_array_rows(path)
    else:
        for n, line in numbered_lines(path):
            if suffix == ".txt":
                yield n, {"id": n, "text": line.rstrip("\r\n")}
                continue
            row = json_line(path, n, line)
            if not isinstance(row, dict):
                raise InvalidRecordError(
                    f"{path}:{n}: expected an object (one JSON object per line), got {type(row).__name__}"
                )
            yield n, row


def iter_records(
    path: Path,
    text_field: str = "text",
    id_field: str = "id",
    *,
    require_ids: bool = True,
    vector_field: str | None = None,
    text_optional: bool = False,
) -> Iterator[dict]:
    """Stream documents as dicts with "id" and "text" keys (other fields kept as payload).

    With `vector_field`, each record carries its precomputed embedding in that field (a list of numbers) and
    the text becomes optional; `text_optional` alone makes it optional too (vectors come from elsewhere).

    Files are read by `read_rows` (SUFFIXES); a .txt line's id is its 1-based line number. Nothing is
    coerced: a text must be a non-empty string, an id a string or an integer, all ids of a file of one type
    (so 1 and "1" never collide), and with `require_ids` every record needs one. A bad record raises
    `InvalidRecordError` naming file and line.
    """
    check = _RecordCheck(path, text_field, id_field, require_ids, vector_field, text_optional)
    txt = file_type(path) == ".txt"
    for n, row in read_rows(path):
        yield check({id_field: n, text_field: row["text"]} if txt else row, n)


def parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(1-based row number, row) of a parquet file (needs pyarrow); columns no engine can store are refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    for column in parquet.schema_arrow:
        if not _storable(column.type, pa):
            raise InvalidRecordError(
                f"{path}: column {column.name!r} is of type {column.type}, which the engines cannot store as a "
                "payload; convert it to a string or number (or drop it) first"
            )
    n = 0
    for batch in parquet.iter_batches():
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _storable(kind: Any, pa: Any) -> bool:
    """Arrow types that become JSON payload values: strings, numbers, bools, nulls and lists of them."""
    t = pa.types
    if t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind):
        return bool(_storable(kind.value_type, pa))
    return bool(
        t.is_string(kind) or t.is_large_string(kind) or t.is_integer(kind) or t.is_floating(kind)
        or t.is_boolean(kind) or t.is_null(kind)
    )  # fmt: skip


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a text file, blank lines skipped; not UTF-8 -> `InvalidRecordError`."""
    return ((n, line) for n, line in _all_lines(path) if line.strip())


def json_line(path: Path, n: int, line: str) -> object:
    """One JSONL line parsed, or `InvalidRecordError` naming file and line."""
    try:
        return json.loads(line)
    except ValueError as exc:
        raise InvalidRecordError(f"{path}:{n}: not valid JSON ({exc})") from None


def _delimited_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict]]:
    """CSV/TSV rows keyed by the header (line 1); a row with more or fewer cells than the header is refused."""
    lines = (line for _, line in _all_lines(path))
    reader = csv.reader(lines, delimiter=delimiter)
    header = next(reader, None)
    if not header:
        return
    if len(set(header)) != len(header) or not all(h.strip() for h in header):
        raise InvalidRecordError(f"{path}:1: the header {header!r} needs distinct, non-empty column names")
    for row in reader:
        n = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InvalidRecordError(
                f"{path}:{n}: {len(row)} cells for {len(header)} columns {header}; quote cells holding the delimiter"
            )
        yield n, dict(zip(header, row, strict=True))


def _all_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Every line with its 1-based number, each decoded on its own, so a bad byte is blamed on its own line."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidRecordError(
                    f"{path}:{n}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode the file"
                ) from None


def _json_array_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """The objects of a .json file holding one JSON array (row numbers count from 1)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidRecordError(f"{path}: not UTF-8 text ({exc.reason}); re-encode the file") from None
    except ValueError as exc:
        raise InvalidRecordError(
            f"{path}: not valid JSON ({exc}); a .json input is one array of objects (one object per line: .jsonl)"
        ) from None
    if not isinstance(data, list):
        raise InvalidRecordError(f"{path}: a .json input must be one array of objects, got a {type(data).__name__}")
    for n, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise InvalidRecordError(f"{path}: item {n} of the array is a {type(row).__name__}, not an object")
        yield n, row


class _RecordCheck:
    """Turns one parsed record into {"id", "text", payload...}, refusing what would be coerced or collide."""

    def __init__(
        self,
        path: Path,
        text_field: str,
        id_field: str,
        require_ids: bool,
        vector_field: str | None = None,
        text_optional: bool = False,
    ) -> None:
        self.path, self.text_field, self.id_field, self.require_ids = path, text_field, id_field, require_ids
        self.vector_field = vector_field
        self.text_optional = text_optional or vector_field is not None
        self.id_type: tuple[type, int] | None = None  # the first id's type and line

    def fail(self, n: int, problem: str) -> InvalidRecordError:
        return InvalidRecordError(f"{self.path}:{n}: {problem}")

    def __call__(self, obj: object, n: int) -> dict:
        if not isinstance(obj, dict):
            raise self.fail(n, f"expected an object with a {self.text_field!r} field, got {type(obj).__name__}")
        if self.vector_field is not None:
            vector = obj.get(self.vector_field)
            if not isinstance(vector, list | tuple) or not vector:
                raise self.fail(n, f"{self.vector_field!r} must be a non-empty list of numbers, got {vector!r:.60}")
        if self.text_optional and self.text_field not in obj:
            return self.identified(obj, n, None)
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
        return self.identified(obj, n, text)

    def identified(self, obj: dict, n: int, text: str | None) -> dict:
        """The record with its checked id under "id" and its text (when it has one) under "text"."""
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
        return {**payload, "id": str(doc_id)} | ({"text": text} if text is not None else {})


def with_vectors(records: Iterable[dict], path: Path, field: str = "embedding") -> Iterator[dict]:
    """`records` with row i of the .npy file at `path` under `field`; the counts must agree."""
    if not path.is_file():
        raise DataNotFoundError(f"embeddings file {path} does not exist")
    vectors = np.load(path, mmap_mode="r")
    if vectors.ndim != 2:
        raise InvalidRecordError(f"{path}: expected an (n, d) array of embeddings, got shape {vectors.shape}")
    n = 0
    for n, record in enumerate(records, start=1):
        if n > len(vectors):
            raise InvalidRecordError(f"{path} has {len(vectors)} rows but the input has more records")
        yield {**record, field: vectors[n - 1].tolist()}
    if n != len(vectors):
        raise InvalidRecordError(f"{path} has {len(vectors)} rows but the input has {n} records")


def read_records(path: Path, text_field: str = "text", id_field: str = "id", *, require_ids: bool = True) -> list[dict]:
    """All of `iter_records` as a list."""
    return list(iter_records(path, text_field, id_field, require_ids=require_ids))

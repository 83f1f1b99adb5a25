"""Input records for `index` and `encode`: JSONL, parquet or plain-text files streamed as {"id", "text", ...}.

Nothing is coerced: a bad record raises `InvalidRecordError` naming the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from csrv2_vdb.errors import DataNotFoundError, InvalidRecordError
from csrv2_vdb.texts import is_unicode_text


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
        for n, row in parquet_rows(path):
            yield check(row, n)
        return
    for n, line in numbered_lines(path):
        if path.suffix == ".jsonl":
            yield check(json_line(path, n, line), n)
        else:
            yield check({id_field: n, text_field: line.rstrip("\n")}, n)


def parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(1-based row number, row) of a parquet file (needs pyarrow)."""
    import pyarrow.parquet as pq

    n = 0
    for batch in pq.ParquetFile(path).iter_batches():
        for row in batch.to_pylist():
            n += 1
            yield n, row


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a text file, blank lines skipped; not UTF-8 -> `InvalidRecordError`."""
    with open(path, encoding="utf-8", errors="strict") as f:
        n = 0
        try:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    yield n, line
        except UnicodeDecodeError as exc:
            raise InvalidRecordError(f"{path}:{n + 1}: not UTF-8 text ({exc.reason}); re-encode the file") from None


def json_line(path: Path, n: int, line: str) -> object:
    """One JSONL line parsed, or `InvalidRecordError` naming file and line."""
    try:
        return json.loads(line)
    except ValueError as exc:
        raise InvalidRecordError(f"{path}:{n}: not valid JSON ({exc})") from None


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

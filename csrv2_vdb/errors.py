"""Exceptions with messages that say what was wrong and what to do about it.

Every error the library raises on bad input derives from `CSRv2Error`, and from the builtin
exception a caller would expect (`ValueError` for bad values, `LookupError` for missing things),
so `except ValueError` keeps working for code that does not know this package.
"""

from __future__ import annotations


class CSRv2Error(Exception):
    """Base class of every error raised by csrv2-vdb."""


class InvalidArgumentError(CSRv2Error, ValueError):
    """An argument or setting the library cannot use (a bad name, limit, filter value, option)."""


class InvalidEmbeddingError(CSRv2Error, ValueError):
    """A dense embedding holds NaN/inf or has the wrong shape."""


class InvalidSparseBatchError(CSRv2Error, ValueError):
    """A sparse batch breaks an invariant: non-finite value, index out of range, duplicate index."""


class InvalidKError(CSRv2Error, ValueError):
    """k is below 1 or above what the head can give."""


class DimensionMismatchError(CSRv2Error, ValueError):
    """Two components disagree on a dimension (head input vs backbone output, query vs collection)."""


class EmptyTextError(CSRv2Error, ValueError):
    """A text to embed is empty or only whitespace."""


class InvalidTextError(CSRv2Error, ValueError):
    """Texts are not a list of strings, or a text has no UTF-8 form (a lone surrogate)."""


class CollectionNotFoundError(CSRv2Error, LookupError):
    """A collection that does not exist was used."""


class CollectionExistsError(CSRv2Error, ValueError):
    """A collection was created twice."""


class StoreLockedError(CSRv2Error, RuntimeError):
    """Another process holds the embedded store open."""


class DataNotFoundError(CSRv2Error, FileNotFoundError):
    """An input data file, model or head is missing; the message says which file goes where."""


class UnsupportedError(CSRv2Error, ValueError):
    """The engine cannot do what was asked (a fusion method, a value it rejects); the message names the alternative."""


class BulkWriteError(CSRv2Error, RuntimeError):
    """Some documents of a bulk write were rejected by the engine; `.items` holds the engine's per-item errors."""

    def __init__(self, message: str, items: list) -> None:
        super().__init__(message)
        self.items = items


class TransientEngineError(CSRv2Error, ConnectionError):
    """The engine was unreachable, overloaded or rate-limiting: worth retrying with backoff."""


class EmbeddingServiceError(CSRv2Error, RuntimeError):
    """An embeddings endpoint refused a request that retrying will not fix (bad model, key, input)."""


class EngineError(CSRv2Error, RuntimeError):
    """The engine refused a request that retrying will not fix (schema, expression, id); the message says why."""


class CheckpointError(CSRv2Error, ValueError):
    """A bulk-indexing checkpoint is corrupt, cannot be written, or belongs to another run."""


class InvalidRecordError(CSRv2Error, ValueError):
    """An input record cannot be indexed as it is (bad JSON, a text that is not a string, a missing id)."""


class HeadLoadError(CSRv2Error, ValueError):
    """A head directory is corrupt or truncated; the message names the file."""


class EncoderMismatchError(CSRv2Error, ValueError):
    """Sparse codes of one encoder (head, normalisation) meet a collection written by another."""


class LLMServiceError(CSRv2Error, RuntimeError):
    """An LLM endpoint refused a request, kept failing, or answered without text (the reply is not cached)."""

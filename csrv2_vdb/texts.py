"""Checks on input texts, shared by the embedders and the record reader (no torch import here)."""

from __future__ import annotations

from collections.abc import Sequence

from csrv2_vdb.errors import EmptyTextError, InvalidTextError


def is_unicode_text(text: str) -> bool:
    """False for a string with a lone surrogate (it has no UTF-8 form, so no tokenizer takes it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_texts(texts: Sequence[str]) -> None:
    """A list of non-empty strings, or a clear error (a bare string would be read as a list of characters)."""
    if isinstance(texts, str | bytes):
        raise InvalidTextError(f"expected a list of texts, got one {type(texts).__name__}; wrap it in a list")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise EmptyTextError(f"text {i} is empty or not a string ({text!r}); drop it or fill it in")
        if not is_unicode_text(text):
            raise InvalidTextError(f"text {i} holds a lone surrogate ({text!r}); it has no UTF-8 form")

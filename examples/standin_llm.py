"""The stand-in "LLM" the examples use so that they run offline: NOT a language model.

It answers with the sentence of the retrieved context that shares the most words with the question.
Swap in a real LLM as each example's docstring shows.
"""

from __future__ import annotations

import re


def extractive_answer(question: str, context: str) -> str:
    """The context sentence sharing the most words with the question (ties: the earliest)."""
    words = set(re.findall(r"\w{3,}", question.lower()))
    sentences = re.split(r"(?<=[.!?])\s+", context.strip())
    return max(sentences, key=lambda s: len(words & set(re.findall(r"\w{3,}", s.lower()))), default="")

"""The harnesses' tasks: the medical split (chunks, answer qrels, seeded question halves), Banking77, and the
training rows and evaluation of each, defined once for the reproduction, GraphRAG-Bench, demo and `train`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from csrv2_vdb.backbone import Backbone
from csrv2_vdb.benchmarks.cache import cached_embed, cached_head
from csrv2_vdb.benchmarks.datasets import (
    Chunk,
    Question,
    answer_qrels,
    chunk_words,
    load_banking77,
    load_corpus,
    load_questions,
)
from csrv2_vdb.benchmarks.metrics import (
    Features,
    classification_accuracy,
    clustering_v_measure,
    retrieval_metrics,
)
from csrv2_vdb.errors import InvalidArgumentError
from csrv2_vdb.head import SparseHead
from csrv2_vdb.training.labels import classification_labels, retrieval_rows
from csrv2_vdb.training.trainer import HeadTrainConfig

Transform = Callable[[np.ndarray], Features]


def corpus_sentences(text: str, min_words: int = 5) -> list[str]:
    """Sentences of the corpus (training data for the head: unlabeled, no questions)."""
    parts = re.split(r"(?<=[.!?])\s+", text)
    return [p for p in parts if len(p.split()) >= min_words]


def split_questions(qrels: dict[int, set[int]], seed: int) -> tuple[list[int], list[int]]:
    """Half of the questions (with relevant chunks) for training, half held out."""
    order = np.random.default_rng(seed).permutation(sorted(qrels))
    half = len(order) // 2
    return sorted(order[:half].tolist()), sorted(order[half:].tolist())


@dataclass(frozen=True)
class MedicalSplit:
    """GraphRAG-Bench medical as every harness sees it: 150-word chunks, answer qrels, seeded question halves."""

    text: str
    questions: list[Question]
    chunks: list[Chunk]
    qrels: dict[int, set[int]]
    train_q: list[int]
    test_q: list[int]


def medical_split(data_dir: Path, seed: int = 0) -> MedicalSplit:
    text = load_corpus(data_dir)
    questions = load_questions(data_dir)
    chunks = chunk_words(text, prefix="medical")
    qrels = answer_qrels(questions, chunks)
    train_q, test_q = split_questions(qrels, seed)
    return MedicalSplit(text, questions, chunks, qrels, train_q, test_q)


@dataclass
class Task:
    """Training rows (embeddings + labels) and an evaluation function of a feature transform."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    evaluate: Callable[[Transform], dict[str, float]]
    dead_on: np.ndarray  # rows on which the dead-latent ratio is measured


def banking_task(data_dir: Path, backbone: Backbone, cache: Path) -> Task:
    data = load_banking77(data_dir)
    train_x = cached_embed(backbone, data.train_texts, "document", cache)
    test_x = cached_embed(backbone, data.test_texts, "document", cache)
    names = sorted(set(data.train_labels))
    y_train = classification_labels(data.train_labels)
    y_test = np.array([names.index(c) for c in data.test_labels])

    def evaluate(transform: Transform) -> dict[str, float]:
        test = transform(test_x)
        return {
            "accuracy": classification_accuracy(transform(train_x), y_train, test, y_test),
            "v_measure": clustering_v_measure(test, y_test),
        }

    return Task("banking77", train_x, y_train, evaluate, test_x)


def medical_task(data_dir: Path, backbone: Backbone, cache: Path, seed: int = 0) -> Task:
    split = medical_split(data_dir, seed)
    text, questions, chunks, qrels, train_q, test_q = (
        split.text,
        split.questions,
        split.chunks,
        split.qrels,
        split.train_q,
        split.test_q,
    )
    q_x = cached_embed(backbone, [q.question for q in questions], "query", cache)
    c_x = cached_embed(backbone, [c.text for c in chunks], "document", cache)
    s_x = cached_embed(backbone, corpus_sentences(text), "document", cache)
    items = np.concatenate([q_x[train_q], c_x, s_x])
    rows, y = retrieval_rows(len(train_q), len(chunks) + len(s_x), {i: qrels[q] for i, q in enumerate(train_q)})
    train_x = items[rows]
    test_rel = {i: qrels[q] for i, q in enumerate(test_q)}

    def evaluate(transform: Transform) -> dict[str, float]:
        return retrieval_metrics(transform(q_x[test_q]), transform(c_x), test_rel)

    return Task("medical", train_x, y, evaluate, c_x)


def trained_head(task: Task, method: str, k: int, config: HeadTrainConfig, cache: Path) -> SparseHead:
    """The task's CSR / CSRv2 head at k from the cache, trained and cached when missing."""
    config = HeadTrainConfig(**{**asdict(config), "method": method, "k": k})
    labels = task.train_y if method == "csrv2" else None
    return cached_head(cache / "heads", f"{task.name}-{method}-k{k}", task.train_x, config, labels)


def task_pairs(task: str, data_dir: Path, max_pairs: int, seed: int = 0) -> list[tuple[str, str]]:
    """Finetuning pairs from a task's training labels: same-intent texts, or (question, answering chunk)."""
    from csrv2_vdb.training.finetune import label_pairs

    if task == "banking77":
        data = load_banking77(data_dir)
        rows = label_pairs(classification_labels(data.train_labels), max_pairs, seed)
        return [(data.train_texts[i], data.train_texts[j]) for i, j in rows]
    if task == "medical":
        split = medical_split(data_dir, seed)
        return [(split.questions[q].question, split.chunks[min(split.qrels[q])].text) for q in split.train_q][
            :max_pairs
        ]
    raise InvalidArgumentError(f"unknown task {task!r}; choose banking77 or medical")

"""`fit_head`: a head for the user's own data, from one file and no flags (`csrv2-vdb train --input FILE`).

The defaults were chosen by measurement on GraphRAG-Bench medical with half of its held-out questions and
on 12,000 Debian package descriptions with 300 of their titles as queries (docs/quality.md, "Choosing the
defaults"; the other medical half and the package-description test were not looked at while choosing):
- label-free (texts only): the texts themselves (what will be indexed; their sentences as extra rows made
  codes worse: medical nDCG@10 k = 2 / 8 0.25 / 0.39 with them, 0.35 / 0.44 without), reconstruction at k = 8
  and k = 2 together, latents started at centred training rows (`init="samples"`), lr 3e-4, 1,500 steps of
  256 rows, and a latent width that grows with the corpus, `label_free_width`: n/2 latents, at least 4d and
  at most 16d (on the 12,000 descriptions, k = 2 / 8 nDCG@10: h = 1536 0.33 / 0.50, 4096 0.47 / 0.58,
  6000 (the rule) 0.53 / 0.64, 12000 0.31 / 0.57). What did not help: sentence-in-chunk pairs as positives (InfoNCE:
  0.31 at k = 8; CSRv2 labels: 0.34), distilling the backbone's similarities (0.37), reconstructing k = 2..64
  at once (0.37), longer training (5,000 steps: 0.38);
- labels or pairs: CSRv2 (supervised contrastive + k-annealing) at lr 1e-3 (1e-4, the reference's rate,
  under-trains a head on a few thousand rows: hit@5 0.58 against 0.82 with 1e-3 on the package corpus);
- at least `MIN_STEPS` optimizer steps whatever the row count (more epochs on small files), at most
  `MAX_ROWS` rows (a seeded sample: a head does not need every row of a 1M corpus to fit its latents).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from csrv2_vdb.embedders import Embedder
from csrv2_vdb.training.data import Embed, TrainingSet, load_training_set
from csrv2_vdb.training.trainer import CHECKPOINT, HeadTrainConfig, TrainResult, train_head

MIN_STEPS = 1500
MAX_ROWS = 200_000


def label_free_width(rows: int, dim: int) -> int:
    """Latents for a label-free head on `rows` texts of dimension `dim`: one per two rows, between 4 * dim (the
    reference's width) and 16 * dim. Wider heads spread a large corpus over more latents (better codes,
    shorter posting lists); past about n/2 latents, codes get worse again (see the module docstring)."""
    return int(min(max(rows // 2, 4 * dim), 16 * dim))


def default_config(data: TrainingSet, k: int = 8) -> HeadTrainConfig:
    """The measured defaults for this kind of training data (see the module docstring)."""
    if data.mode == "label-free":
        rows, dim = data.embeddings.shape
        return HeadTrainConfig(
            method="plain", k=k, also_ks=[2], init="samples", hidden_dim=label_free_width(rows, dim), lr=3e-4,
            batch_size=256, epochs=1, min_steps=MIN_STEPS,
        )  # fmt: skip
    return HeadTrainConfig(method="csrv2", k=k, lr=1e-3, batch_size=128, epochs=10, min_steps=MIN_STEPS)


def fit_head(
    path: Path,
    out: Path,
    *,
    embedder: Embedder | Callable[[], Embedder] | None = None,
    embed: Embed | None = None,
    config: Path | None = None,
    overrides: dict[str, object] | None = None,
    max_rows: int | None = MAX_ROWS,
    resume: bool | Literal["auto"] = "auto",
    checkpoint_every: int = 200,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train a head on `path` (see `training.data` for the layouts) and save it to `out` with its settings.

    Texts are embedded with `embed` (texts, kind) -> (n, d), by default `embedder.embed` (the offline MiniLM
    when none is given; a function returning the embedder is called only if the file holds texts).
    Settings: the measured defaults for the data's mode, then a JSON `config` file's values, then
    `overrides` (None values ignored).
    """
    if embed is None:
        loaded: list[Embedder] = []

        def embed(texts: Sequence[str], kind: str) -> np.ndarray:  # the embedder loads once it is needed
            if not loaded:
                from csrv2_vdb.backbone import Backbone

                made = embedder() if callable(embedder) and not isinstance(embedder, Embedder) else embedder
                loaded.append(made or Backbone())
            return loaded[0].embed(texts, "query" if kind == "query" else "document")

    data = load_training_set(path, embed, max_rows=max_rows, log=log)
    return train_and_save(data, out, config, overrides, resume, checkpoint_every)


def fit_embeddings(
    embeddings: np.ndarray, out: Path, *, overrides: dict[str, object] | None = None, described: str = ""
) -> TrainResult:
    """A label-free head on precomputed embeddings (the measured defaults), saved to `out` with its settings."""
    rows = np.asarray(embeddings, dtype=np.float32)
    data = TrainingSet(rows, None, "label-free", described or f"{len(rows)} precomputed embeddings, label-free")
    return train_and_save(data, out, None, overrides)


def train_and_save(
    data: TrainingSet,
    out: Path,
    config: Path | None = None,
    overrides: dict[str, object] | None = None,
    resume: bool | Literal["auto"] = "auto",
    checkpoint_every: int = 200,
) -> TrainResult:
    """Train on `data` with the defaults for its mode (then `config`, then `overrides`); save head and settings."""
    settings = HeadTrainConfig.load(config, base=default_config(data), **(overrides or {}))
    result = train_head(
        data.embeddings, settings, data.labels if settings.method == "csrv2" else None,
        checkpoint_dir=out, checkpoint_every=checkpoint_every, resume=resume,
    )  # fmt: skip
    result.head.save(out)
    (out / CHECKPOINT).unlink(missing_ok=True)  # the finished head needs no 16 MB resume state beside it
    settings.save(out / "training-config.json")
    summary = {**result.summary(), "data": data.described}
    (out / "training.json").write_text(json.dumps(summary, indent=2))
    return result

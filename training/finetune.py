"""Optional CSRv2 stage before the head: LoRA finetuning of the backbone with MultipleNegativesRanking loss.

Pairs (anchor, positive) come from the labels: two texts of one class, or a question and a chunk that
answers it. Each batch scores every anchor against every positive (cosine x 20, i.e. temperature 0.05)
and the loss is the cross-entropy of picking its own positive. LoRA (r 8, alpha 16, dropout 0.1) on the
attention and feed-forward projections, as in the CSRv2 reference; the adapter is merged and the result
saved as a sentence-transformers directory that `Backbone(path)` loads.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from csrv2_vdb.backbone import Backbone


@dataclass
class FinetuneConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    lr: float = 1e-4
    epochs: int = 1
    batch_size: int = 32
    scale: float = 20.0
    max_pairs: int = 20_000
    seed: int = 1227


def label_pairs(labels: Sequence[int], max_pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    """Random (anchor, positive) row pairs that share a label, at most `max_pairs`, one anchor per row."""
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_label.setdefault(int(y), []).append(i)
    pairs = []
    for rows in by_label.values():
        if len(rows) < 2:
            continue
        for i in rows:
            j = rows[int(rng.integers(len(rows) - 1))]
            pairs.append((i, j if j != i else rows[-1]))
    order = rng.permutation(len(pairs))[:max_pairs]
    return [pairs[i] for i in order]


def finetune_backbone(
    backbone: Backbone,
    pairs: Sequence[tuple[str, str]],
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    progress: bool = True,
) -> Backbone:
    """LoRA-finetune `backbone` on text pairs; returns the merged backbone loaded from `out_dir`."""
    from peft import LoraConfig, get_peft_model

    config = config or FinetuneConfig()
    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=["query", "key", "value", "dense"],
    )
    model = get_peft_model(copy.deepcopy(backbone.model), lora)  # the caller's backbone stays as it was
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    rng = np.random.default_rng(config.seed)

    def embed(texts: list[str]) -> torch.Tensor:
        batch = backbone.tokenizer(
            texts, padding=True, truncation=True, max_length=backbone.max_length, return_tensors="pt"
        )
        hidden = model(**batch).last_hidden_state
        return F.normalize(backbone.pool(hidden, batch["attention_mask"]), dim=-1)

    steps = -(-len(pairs) // config.batch_size)
    history = []
    with tqdm(total=config.epochs * steps, desc="LoRA finetune", disable=not progress) as bar:
        for _ in range(config.epochs):
            order = rng.permutation(len(pairs))
            for start in range(0, len(pairs), config.batch_size):
                chosen = [pairs[i] for i in order[start : start + config.batch_size]]
                anchors, positives = embed([a for a, _ in chosen]), embed([p for _, p in chosen])
                logits = config.scale * anchors @ positives.T
                loss = F.cross_entropy(logits, torch.arange(len(chosen)))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                history.append(float(loss.detach()))
                bar.set_postfix(loss=f"{history[-1]:.4f}", refresh=False)
                bar.update()
    merged = cast(Any, model).merge_and_unload().eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    backbone.tokenizer.save_pretrained(out)
    source = Path(backbone.model_path)
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling"):
        if (source / name).is_dir():
            shutil.copytree(source / name, out / name, dirs_exist_ok=True)
        elif (source / name).exists():
            shutil.copy(source / name, out / name)
    (out / "finetune.json").write_text(json.dumps({"config": asdict(config), "losses": history, "pairs": len(pairs)}))
    return Backbone(
        out,
        pooling=backbone.pooling,
        max_length=backbone.max_length,
        query_prompt=backbone.prompts["query"],
        document_prompt=backbone.prompts["document"],
    )

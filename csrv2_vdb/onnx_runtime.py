"""ONNX Runtime for the backbone's transformer: exported once from the torch model, cached on disk.

Measured side by side on this 2-core CPU (`csrv2-vdb bench encoder --runtimes`, docs/benchmarks/runtimes.md;
all-MiniLM-L6-v2): the fp32 export gives torch's vectors (cosine 1.00000 per row on 128 medical chunks),
answers one query in 5.3 ms against 11.2 ms (p50, 2.1x) and encodes 150-word chunks at 20.1 against 15.6
texts/s. Dynamic int8 quantisation of the MatMul weights (per channel) is faster still (3.4 ms, 27.8
texts/s) but moves the vectors (cosine 0.985 min, 0.995 mean against torch), so it is opt-in
(`Backbone(quantize=True)`) and recorded in the embedder's identity.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csrv2_vdb.errors import UnsupportedError


def available() -> bool:
    """True when onnxruntime and onnx (for the export) are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _LastHidden(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).last_hidden_state


def export(model: torch.nn.Module, sample: dict[str, torch.Tensor], path: Path, quantize: bool) -> Path:
    """`model` -> ONNX at `path` (dynamic batch and length; int8 MatMul weights if `quantize`); atomic, so two
    processes exporting at once never leave a half-written file."""
    names = list(sample)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "hidden"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.onnx")
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shape-dependent branches: the export is checked below
        torch.onnx.export(
            _LastHidden(model, names), tuple(sample[n] for n in names), str(tmp), input_names=names,
            output_names=["hidden"], dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32, tmp = tmp, tmp.with_name(f"{path.stem}.{os.getpid()}.int8.tmp.onnx")
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs a pre-processing hint as a root warning
        try:
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])  # fmt: skip
        finally:
            root.setLevel(level)
        fp32.unlink()
    tmp.replace(path)
    return path


class OnnxTransformer:
    """The exported transformer: token ids -> last hidden states, as the torch model's forward gives them."""

    def __init__(
        self, model: torch.nn.Module, tokenizer: Any, model_path: str, weights: str, cache_dir: Path, quantize: bool
    ):
        import onnxruntime as ort

        sample = dict(tokenizer(["export sample", "a second, longer export sample"], padding=True, return_tensors="pt"))
        self.names = list(sample)
        # keyed by the weights' digest: a model rewritten in place is exported again, never served stale
        key = hashlib.sha256(f"{model_path}@{weights}|{self.names}|{torch.__version__}".encode()).hexdigest()[:16]
        path = cache_dir / "onnx" / key / ("model.int8.onnx" if quantize else "model.onnx")
        try:
            if not path.exists():
                export(model, sample, path, quantize)
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            # no busy-waiting between calls: it would steal the cores torch (the head) and the engine need
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # an architecture the exporter cannot trace: the caller falls back or reports
            raise UnsupportedError(
                f"cannot run {model_path} through ONNX Runtime ({exc}); use runtime='torch'"
            ) from exc
        self.path = path

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {n: batch[n].astype(np.int64) for n in self.names})[0]

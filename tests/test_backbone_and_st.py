"""The real offline backbone, and interchange with sentence-transformers' SparseEncoder."""

import numpy as np
import pytest
import torch

from csrv2_vdb.backbone import Backbone, default_model_path
from csrv2_vdb.benchmarks.cache import cached_embed
from csrv2_vdb.encoder import CSRv2Encoder, MRLEncoder, mrl_truncate
from csrv2_vdb.errors import (
    DimensionMismatchError,
    EmptyTextError,
    InvalidArgumentError,
    InvalidEmbeddingError,
    InvalidKError,
)
from csrv2_vdb.head import SparseHead

TEXTS = [
    "Basal cell carcinoma is the most common type of skin cancer.",
    "Surgery is the usual treatment for early skin cancer.",
    "How do I reset the PIN of my card?",
    "a",
]


def test_backbone_gives_unit_vectors_of_model_dim(backbone):
    x = backbone.embed(TEXTS)
    assert x.shape == (4, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    sims = x @ x.T
    assert sims[0, 1] > sims[0, 2]  # the two cancer sentences are closer than cancer vs banking


def test_backbone_matches_sentence_transformers(backbone):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(default_model_path()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(backbone.embed(TEXTS, batch_size=2), reference, atol=2e-5)


def test_backbone_order_independent_of_batching(backbone):
    np.testing.assert_allclose(backbone.embed(TEXTS, batch_size=1), backbone.embed(TEXTS, batch_size=4), atol=2e-5)


def test_prompts_and_pooling_change_the_embedding():
    plain = Backbone()
    prompted = Backbone(query_prompt="query: ")
    cls = Backbone(pooling="cls")
    q = plain.embed(TEXTS[:1], "query")
    assert not np.allclose(q, prompted.embed(TEXTS[:1], "query"))
    np.testing.assert_allclose(q, prompted.embed(TEXTS[:1], "document"), atol=1e-6)
    assert not np.allclose(q, cls.embed(TEXTS[:1], "query"))
    last = Backbone(pooling="last").embed(TEXTS[:2])
    np.testing.assert_allclose(np.linalg.norm(last, axis=1), 1.0, atol=1e-5)


def test_empty_text_is_rejected(backbone):
    with pytest.raises(EmptyTextError, match="text 1"):
        backbone.embed(["fine", "   "])


def test_cached_embed_reuses_the_library_cache(backbone, tmp_path):
    first = cached_embed(backbone, TEXTS, "document", tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".sqlite"] == ["embeddings.sqlite"]
    np.testing.assert_array_equal(cached_embed(backbone, TEXTS, "document", tmp_path), first)
    np.testing.assert_allclose(first, backbone.embed(TEXTS), atol=1e-6)


def test_encoder_adaptive_k_and_mismatch(backbone):
    torch.manual_seed(0)
    head = SparseHead(384, 1536, k=8)
    enc = CSRv2Encoder(backbone, head)
    docs = enc.encode_documents(TEXTS)
    assert docs.dim == 1536 and docs.width == 8
    one = enc.encode_queries(TEXTS, query_k=1)
    assert one.width == 1 and (one.nnz <= 1).all()
    with pytest.raises(InvalidKError):
        enc.encode_queries(TEXTS, query_k=1537)
    with pytest.raises(DimensionMismatchError, match="takes 768-dim"):
        CSRv2Encoder(backbone, SparseHead(768, k=8))


def test_mrl_truncation(backbone):
    full = backbone.embed(TEXTS)
    out = MRLEncoder(backbone, 32).encode_documents(TEXTS)
    assert out.shape == (4, 32)
    np.testing.assert_allclose(out, full[:, :32] / np.linalg.norm(full[:, :32], axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(InvalidKError):
        mrl_truncate(full, 385)
    full[0, 0] = np.nan
    with pytest.raises(InvalidEmbeddingError):
        mrl_truncate(full, 8)


def _sparse_encoder(head_dir):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from sentence_transformers.sparse_encoder.modules import SparseAutoEncoder

    path = str(default_model_path())
    transformer = Transformer(path)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    return SparseEncoder(
        modules=[transformer, pooling, Normalize(), SparseAutoEncoder.load(str(head_dir))], device="cpu"
    )


def _trained_like_head(seed: int) -> SparseHead:
    torch.manual_seed(seed)
    head = SparseHead(384, 1536, k=8, k_aux=512)
    with torch.no_grad():
        head.latent_bias.normal_(0, 0.05)
        head.pre_bias.normal_(0, 0.01)
    return head.eval()


def test_head_saved_here_gives_same_codes_in_sentence_transformers(backbone, tmp_path):
    head = _trained_like_head(1)
    head.save(tmp_path / "head")
    st = _sparse_encoder(tmp_path / "head")
    theirs = st.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False).cpu().numpy()
    ours = CSRv2Encoder(backbone, head, normalize=False).encode_documents(TEXTS).to_dense()  # raw, as ST gives
    np.testing.assert_array_equal(np.argsort(-ours, axis=1)[:, :8], np.argsort(-theirs, axis=1)[:, :8])
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_head_saved_by_sentence_transformers_loads_here(backbone, tmp_path):
    from sentence_transformers.sparse_encoder.modules import SparseAutoEncoder

    torch.manual_seed(2)
    module = SparseAutoEncoder(384, 1536, k=8, k_aux=512)
    with torch.no_grad():
        module.latent_bias.normal_(0, 0.05)
    (tmp_path / "sae").mkdir()
    module.save(str(tmp_path / "sae"))
    st = _sparse_encoder(tmp_path / "sae")
    st.save(str(tmp_path / "st-model"))
    theirs = st.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False).cpu().numpy()
    head = SparseHead.load(tmp_path / "st-model")  # a whole SparseEncoder directory
    assert head.config() == module.get_config_dict()
    ours = CSRv2Encoder(backbone, head, normalize=False).encode_documents(TEXTS).to_dense()  # raw, as ST gives
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_onnx_runtime_gives_the_torch_vectors(backbone, data_dir):
    from csrv2_vdb.benchmarks.datasets import chunk_words, load_corpus

    chunks = [c.text for c in chunk_words(load_corpus(data_dir))[:48]] + TEXTS
    through_torch, through_onnx = Backbone(runtime="torch"), Backbone(runtime="onnx")
    assert (through_torch.runtime, through_onnx.runtime, backbone.runtime) == ("torch", "onnx", "onnx")  # auto
    for kind in ("document", "query"):
        cos = (through_onnx.embed(chunks, kind) * through_torch.embed(chunks, kind)).sum(axis=1)
        assert cos.min() >= 0.999, cos.min()
    assert through_onnx.identity == through_torch.identity  # the same vectors: caches and collections agree


def test_int8_is_opt_in_named_and_close():
    quantized, plain = Backbone(quantize=True), Backbone(runtime="torch")
    assert quantized.identity == plain.identity + ":onnx-int8"
    cos = (quantized.embed(TEXTS) * plain.embed(TEXTS)).sum(axis=1)
    assert 0.98 <= cos.min() < 0.99999  # measured 0.991 min on medical chunks: close, not the same vectors
    with pytest.raises(InvalidArgumentError, match="quantize=True runs through ONNX Runtime"):
        Backbone(runtime="torch", quantize=True)
    with pytest.raises(InvalidArgumentError, match="runtime must be auto, torch or onnx"):
        Backbone(runtime="tensorrt")

"""Embedders behind one protocol, the on-disk embedding cache, and the OpenAI-compatible endpoint (local fake)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from embeddings_fake import FakeEmbeddings, fake_vector
from typer.testing import CliRunner

from csrv2_vdb.cli import app
from csrv2_vdb.embed_cache import CachedEmbedder, EmbeddingCache
from csrv2_vdb.embedders import CallableEmbedder, Embedder, OpenAIEmbedder, SentenceTransformerEmbedder
from csrv2_vdb.encoder import CSRv2Encoder, MRLEncoder, encode_hybrid
from csrv2_vdb.errors import (
    DimensionMismatchError,
    EmbeddingServiceError,
    InvalidArgumentError,
    InvalidEmbeddingError,
    TransientEngineError,
)
from csrv2_vdb.head import SparseHead

TEXTS = [f"passage number {i} about topic {i % 3}" for i in range(10)]
KEY = "sk-test-SECRET-0123456789"


class Counting:
    """A deterministic embedder that records the texts it was asked to embed."""

    def __init__(self, dim: int = 16, name: str = "counting") -> None:
        self.dim, self.identity, self.calls = dim, f"test:{name}", []

    def embed(self, texts, kind="document"):
        self.calls.append((list(texts), kind))
        return np.asarray([fake_vector(kind + t, self.dim) for t in texts], dtype=np.float32)


def test_embedders_satisfy_the_protocol(backbone):
    openai = OpenAIEmbedder("text-embedding-3-small", base_url="http://127.0.0.1:9/v1", dimensions=8)
    for embedder in (backbone, Counting(), openai, CallableEmbedder(lambda t, k: np.ones((len(t), 3)), 3, "ones")):
        assert isinstance(embedder, Embedder)
    assert backbone.identity.startswith("transformers:") and openai.dim == 8  # no request needed with dimensions


def test_sentence_transformers_embedder_matches_the_backbone(backbone):
    from csrv2_vdb.backbone import default_model_path

    st = SentenceTransformerEmbedder(default_model_path())
    assert st.dim == backbone.dim and st.identity.startswith("st:")
    cos = (st.embed(TEXTS) * backbone.embed(TEXTS)).sum(axis=1)
    assert cos.min() > 0.999


def test_callable_embedder_checks_what_the_function_returns():
    with pytest.raises(InvalidArgumentError, match="identity"):
        CallableEmbedder(lambda t, k: None, 4, "")
    nan = CallableEmbedder(lambda t, k: np.full((len(t), 4), np.nan), 4, "nan")
    with pytest.raises(InvalidEmbeddingError, match="NaN"):
        nan.embed(["a"])
    wrong = CallableEmbedder(lambda t, k: np.ones((len(t), 5)), 4, "five")
    with pytest.raises(DimensionMismatchError, match="5-dim"):
        wrong.embed(["a"])
    fine = CallableEmbedder(lambda t, k: np.ones((len(t), 4)) * 3, 4, "threes").embed(["a", "b"])
    np.testing.assert_allclose(np.linalg.norm(fine, axis=1), 1.0, rtol=1e-6)  # unit rows, as heads expect


def test_cache_embeds_each_text_once_per_identity_and_kind(tmp_path):
    inner = Counting()
    cached = CachedEmbedder(inner, tmp_path / "e.sqlite")
    first = cached.embed(TEXTS + TEXTS[:3])  # duplicates inside one call are embedded once
    assert [len(t) for t, _ in inner.calls] == [10]
    np.testing.assert_array_equal(first[:10], inner.embed(TEXTS))
    inner.calls.clear()
    again = CachedEmbedder(inner, tmp_path / "e.sqlite").embed(TEXTS[::-1])  # a new process: same file
    assert inner.calls == [] and np.array_equal(again, first[:10][::-1])
    CachedEmbedder(inner, tmp_path / "e.sqlite").embed(TEXTS[:2], "query")  # another kind: new vectors
    assert inner.calls == [(TEXTS[:2], "query")]
    other = Counting(name="other")
    CachedEmbedder(other, tmp_path / "e.sqlite").embed(TEXTS[:2])  # another model: new vectors
    assert len(other.calls) == 1 and len(EmbeddingCache(tmp_path / "e.sqlite")) == 14


def test_cache_ignores_entries_of_another_size(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    CachedEmbedder(Counting(dim=16), cache).embed(TEXTS[:2])
    wider = Counting(dim=32)  # same identity, different size (a changed model behind the same name)
    out = CachedEmbedder(wider, cache).embed(TEXTS[:2])
    assert out.shape == (2, 32) and len(wider.calls) == 1


def test_hybrid_encoding_embeds_once():
    inner = Counting(dim=16)
    sparse_enc = CSRv2Encoder(inner, SparseHead(16, 64, k=4))
    sparse, dense = encode_hybrid(sparse_enc, MRLEncoder(inner, 8), TEXTS, "document")
    assert len(inner.calls) == 1 and len(sparse) == 10 and dense.shape == (10, 8)
    np.testing.assert_array_equal(sparse.to_dense(), sparse_enc.encode_embeddings(inner.embed(TEXTS)).to_dense())


def test_encoder_without_embedder_takes_vectors_only():
    enc = CSRv2Encoder(None, SparseHead(16, 64, k=4))
    assert len(enc.encode_embeddings(np.eye(16, dtype=np.float32)[:3])) == 3
    with pytest.raises(InvalidArgumentError, match="precomputed embeddings only"):
        enc.encode_queries(["a"])


# ------------------------------------------------------------------ the OpenAI-compatible endpoint
def _client(fake: FakeEmbeddings, **options) -> OpenAIEmbedder:
    return OpenAIEmbedder("text-embedding-3-small", base_url=fake.url, api_key=KEY, **{"backoff": 0.05, **options})


def test_openai_batches_with_a_concurrency_limit_and_keeps_order():
    with FakeEmbeddings(dim=24, key=KEY, max_concurrent=2) as fake:
        client = _client(fake, batch_size=3, concurrency=2)
        out = client.embed(TEXTS)
    # two requests in flight: they may arrive in either order, so compare the batch sizes as a multiset
    assert sorted(len(r["body"]["input"]) for r in fake.requests) == [1, 3, 3, 3]
    assert fake.peak <= 2 and client.retries == 0
    expected = np.asarray([fake_vector(t, 24) for t in TEXTS], dtype=np.float32)
    np.testing.assert_allclose(out, expected, atol=1e-6)  # replies come shuffled: rows follow `index`
    assert all(r["body"]["encoding_format"] == "float" for r in fake.requests)


def test_openai_waits_for_retry_after_and_retries_server_errors():
    with FakeEmbeddings(dim=8, key=KEY) as fake:
        fake.faults = [429, 500]
        client = _client(fake, batch_size=16, concurrency=1)
        start = time.perf_counter()
        out = client.embed(TEXTS[:4])
        waited = time.perf_counter() - start
    assert out.shape == (4, 8) and client.retries == 2 and len(fake.requests) == 3
    assert waited >= 0.3  # the 429's Retry-After (0.3 s) was honoured


def test_openai_over_the_server_rate_limit_still_completes():
    with FakeEmbeddings(dim=8, key=KEY, max_concurrent=1, delay=0.1) as fake:
        client = _client(fake, batch_size=2, concurrency=4)
        out = client.embed(TEXTS)
    assert out.shape == (10, 8) and client.retries > 0


def test_openai_passes_dimensions_and_refuses_a_wrong_size():
    with FakeEmbeddings(dim=32, key=KEY) as fake:
        client = _client(fake, dimensions=12)
        assert client.embed(TEXTS[:2]).shape == (2, 12)
        assert fake.requests[-1]["body"]["dimensions"] == 12
        fake.faults = ["wrong-dim"]
        with pytest.raises(DimensionMismatchError, match="13-dim vectors where 12 were expected"):
            client.embed(TEXTS[:2])
        native = _client(fake)  # learns its size from the first reply, then holds every reply to it
        assert native.dim == 32
        fake.faults = ["wrong-dim"]
        with pytest.raises(DimensionMismatchError, match="33-dim"):
            native.embed(TEXTS[:2])


def test_openai_errors_are_clear_and_never_show_the_key(caplog):
    caplog.set_level("DEBUG")
    messages = []
    with FakeEmbeddings(dim=8, key=KEY) as fake:
        with pytest.raises(EmbeddingServiceError, match="HTTP 401") as bad_key:
            OpenAIEmbedder("text-embedding-3-small", base_url=fake.url, api_key="sk-wrong").embed(["a"])
        messages.append(str(bad_key.value))
        with pytest.raises(EmbeddingServiceError, match="does not support specifying dimensions") as bad_dims:
            OpenAIEmbedder("other-model", base_url=fake.url, api_key=KEY, dimensions=8).embed(["a"])
        messages.append(str(bad_dims.value))
        fake.faults = [500] * 10
        client = _client(fake, max_retries=2)
        with pytest.raises(TransientEngineError, match="after 3 tries") as down:
            client.embed(["a"])
        messages.append(str(down.value))
        assert fake.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"  # the key did go out, in the header
    messages += [repr(client), client.identity, caplog.text]
    assert all(KEY not in m for m in messages)


def test_openai_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("CSRV2_EMBED_API_KEY", KEY)
    with FakeEmbeddings(dim=8, key=KEY) as fake:
        monkeypatch.setenv("CSRV2_EMBED_BASE_URL", fake.url)
        assert OpenAIEmbedder("text-embedding-3-small").embed(["a"]).shape == (1, 8)


# ------------------------------------------------------------------ the CLI: precomputed vectors and the cache
def _docs(path):
    rows = [{"id": f"d{i}", "text": t, "n": i} for i, t in enumerate(TEXTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _codes(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_encode_reuses_the_cache_and_takes_precomputed_vectors(tmp_path, backbone, monkeypatch):
    from csrv2_vdb.backbone import Backbone

    docs, cache = _docs(tmp_path / "docs.jsonl"), str(tmp_path / "cache.sqlite")
    embedded: list[int] = []
    real = Backbone.embed

    def counting(self, texts, kind="document", **options):
        embedded.append(len(texts))
        return real(self, texts, kind, **options)

    monkeypatch.setattr(Backbone, "embed", counting)
    base = ["encode", "--input", str(docs), "--embed-cache", cache]
    for k, out in ((8, "a.jsonl"), (2, "b.jsonl")):  # another k: no second embedding pass
        result = CliRunner().invoke(app, [*base, "--k", str(k), "--output", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
    assert embedded == [10]
    off = CliRunner().invoke(app, [*base[:-2], "--embed-cache", "off", "--output", str(tmp_path / "c.jsonl")])
    assert off.exit_code == 0 and embedded == [10, 10]

    np.save(tmp_path / "vectors.npy", real(backbone, TEXTS))
    pre = ["encode", "--input", str(docs), "--embeddings", str(tmp_path / "vectors.npy"), "--output"]
    result = CliRunner().invoke(app, [*pre, str(tmp_path / "d.jsonl")])
    assert result.exit_code == 0, result.output
    assert embedded == [10, 10]  # no model call: the vectors were given
    for mine, theirs in zip(_codes(tmp_path / "d.jsonl"), _codes(tmp_path / "a.jsonl"), strict=True):
        assert mine["indices"] == theirs["indices"]
        np.testing.assert_allclose(mine["values"], theirs["values"], rtol=1e-4, atol=1e-6)
    np.save(tmp_path / "short.npy", real(backbone, TEXTS[:3]))
    short = CliRunner().invoke(app, [*pre[:4], str(tmp_path / "short.npy"), "--output", str(tmp_path / "e.jsonl")])
    assert short.exit_code == 2 and "has 3 rows but the input has more records" in short.output


def test_cli_index_from_an_embedding_field_then_search_by_text(tmp_path, backbone):
    vectors = backbone.embed(TEXTS)
    rows = [{"id": f"d{i}", "embedding": v.tolist(), "n": i} for i, v in enumerate(vectors)]
    path = tmp_path / "vectors.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = str(tmp_path / "edge")
    result = CliRunner().invoke(app, ["index", "--input", str(path), "--embeddings", "embedding", "--store", store,
                                      "--collection", "docs"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "docs: 10 documents" in result.output
    found = CliRunner().invoke(app, ["search", TEXTS[4], "--store", store, "--collection", "docs", "--limit", "1"])
    assert found.exit_code == 0, found.output
    hit = json.loads(found.output[found.output.index('{"id"') :].splitlines()[0])  # after transformers' bar
    assert hit["id"] == "d4" and hit["payload"] == {"n": 4}  # the vector is not kept as payload
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "embedding": "nope"}) + "\n")
    refused = CliRunner().invoke(app, ["index", "--input", str(bad), "--embeddings", "embedding", "--store", store,
                                       "--collection", "docs2"])  # fmt: skip
    assert refused.exit_code == 2 and "bad.jsonl:1: 'embedding' must be a non-empty list of numbers" in refused.output


def test_truncation_is_called_mrl_only_for_models_trained_for_it():
    from csrv2_vdb.embedders import CallableEmbedder, truncation_name

    def vectors(texts, kind):
        return [[1.0, 0.0]] * len(texts)

    assert truncation_name(CallableEmbedder(vectors, 2, "text-embedding-3-small")) == "MRL"
    assert truncation_name(CallableEmbedder(vectors, 2, "sentence-transformers/all-MiniLM-L6-v2")) == "truncated"

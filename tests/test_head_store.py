"""A collection carries its head (csrv2_vdb.head_store): stored in the engine, found by any process, checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from csrv2_vdb.cli import app
from csrv2_vdb.encoder import CSRv2Encoder
from csrv2_vdb.errors import EncoderMismatchError, HeadLoadError
from csrv2_vdb.head import SparseHead
from csrv2_vdb.head_store import (
    MIN_FIT_ROWS,
    companion,
    encoder_for_collection,
    load_head,
    save_head,
    save_labels,
)
from csrv2_vdb.labels import LatentLabel, LatentLabels
from tests.engines import ENGINES, open_engine

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _encoder(seed: int = 0, k: int = 4) -> CSRv2Encoder:
    torch.manual_seed(seed)
    return CSRv2Encoder(None, SparseHead(8, 64, k=k), normalize=True)


def _labels(word: str) -> LatentLabels:
    return LatentLabels({3: LatentLabel(3, [word, "b"], 2, [f"{word} one", "two"])}, 5, 64)


@pytest.fixture(params=sorted(ENGINES))
def engine(request, tmp_path):
    return request.param


def test_a_stored_head_reopens_identical_and_is_dropped_with_its_collection(engine, tmp_path):
    encoder = _encoder()
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    store = open_engine(engine, tmp_path)
    try:
        store.create_collection("docs", sparse_dim=64, encoder=encoder.identity)
        save_head(store, "docs", encoder, "a test head", report={"rows": 5}, labels=_labels("café"))
        assert store.list_collections() == ["docs"]  # the companion is not listed
    finally:
        store.close()
    store = open_engine(engine, tmp_path)  # another store object: nothing cached
    try:
        stored = load_head(store, "docs")
        assert stored is not None and stored.identity == encoder.identity and stored.k == 4
        assert stored.source == "a test head" and stored.report == {"rows": 5}
        assert stored.labels is not None and stored.labels.labels == _labels("café").labels  # UTF-8 intact
        save_labels(store, "docs", _labels("naïve…"))  # relabelled: the manifest is rewritten last
        relabelled = load_head(store, "docs")
        assert relabelled is not None and relabelled.labels is not None
        assert relabelled.labels.labels == _labels("naïve…").labels and relabelled.identity == stored.identity
        again = stored.encoder()
        assert np.array_equal(again.encode_embeddings(x).indices, encoder.encode_embeddings(x).indices)
        assert np.array_equal(again.encode_embeddings(x).values, encoder.encode_embeddings(x).values)
        store.drop_collection("docs")
        assert companion("docs") not in store.all_collections()  # type: ignore[attr-defined]
        assert load_head(store, "docs") is None
    finally:
        store.close()


def test_a_partial_or_tampered_head_is_refused_never_replaced(engine, tmp_path):
    encoder = _encoder()
    store = open_engine(engine, tmp_path)
    try:
        store.create_collection("docs", sparse_dim=64, encoder=encoder.identity)
        save_head(store, "docs", encoder, "a test head")
        name = companion("docs")
        store.upsert(name, ["chunk-00000"], dense=np.asarray([[1.0, 0.0]], np.float32), payloads=[{"data": "AAAA"}])
        with pytest.raises(HeadLoadError, match="does not match its recorded SHA-256"):
            load_head(store, "docs")
        with pytest.raises(HeadLoadError, match="does not match"):
            encoder_for_collection(store, "docs", None)
        store.delete(name, ["chunk-00000"])
        with pytest.raises(HeadLoadError, match="partial: 1 of 1 chunks are missing"):
            load_head(store, "docs")
        save_head(store, "docs", encoder, "a test head", labels=_labels("x"))
        store.upsert(name, ["labels-00000"], dense=np.asarray([[1.0, 0.0]], np.float32), payloads=[{"data": "{}"}])
        with pytest.raises(HeadLoadError, match=r"latent labels stored in .* does not match"):
            load_head(store, "docs")
        store.delete(name, ["manifest"])
        with pytest.raises(HeadLoadError, match="partial: its manifest is missing"):
            load_head(store, "docs")
    finally:
        for c in store.list_collections():
            store.drop_collection(c)  # the head goes with it
        store.close()


def test_a_named_head_that_differs_is_refused_naming_both(tmp_path):
    encoder, other = _encoder(0), _encoder(1)
    store = open_engine("qdrant-edge", tmp_path)
    with store:
        store.create_collection("docs", sparse_dim=64, encoder=encoder.identity)
        save_head(store, "docs", encoder, "fitted on 500 documents of docs", fitted=True)
        head_dir = other.head.save(tmp_path / "other-head")
        with pytest.raises(
            EncoderMismatchError, match=r"fitted on 500 documents of docs \(k=4, normalize=True, fitted "
        ):
            encoder_for_collection(store, "docs", None, head=head_dir)
        assert encoder_for_collection(store, "docs", None).identity == encoder.identity


def _corpus(path: Path, n: int) -> Path:
    topics = ["skin cancer treatment", "radiation therapy dose", "chemotherapy side effects", "surgery recovery",
              "clinical trial enrolment", "blood test results", "pain management", "nutrition during care"]  # fmt: skip
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"note {i} about {topics[i % 8]}, case {i // 8}"})
                            + "\n" for i in range(n)))  # fmt: skip
    return path


CORPUS = 4 * MIN_FIT_ROWS  # enough documents that a query shares latents with several


def _cli_indexed(tmp_path: Path) -> tuple[list[dict], str]:
    """The corpus's rows, indexed by the CLI with no head named (a short fit) into tmp_path/cli, collection docs."""
    data = _corpus(tmp_path / "docs.jsonl", CORPUS)
    cli_store = str(tmp_path / "cli")
    result = runner.invoke(app, ["index", "--input", str(data), "--store", cli_store, "--collection", "docs",
                                 "--fit-steps", "30"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in data.read_text().splitlines()], cli_store


def _cli_hits(store: str, collection: str, query: str) -> list[dict]:
    """`csrv2-vdb search` with no head named: its hits, as printed."""
    cli = runner.invoke(app, ["search", query, "--store", store, "--collection", collection, "--limit", "3"])
    assert cli.exit_code == 0, cli.output
    return [json.loads(line[line.index('{"id"') :]) for line in cli.output.splitlines() if '{"id"' in line]


def test_index_without_a_head_fits_one_and_search_in_another_process_finds_it(tmp_path):
    data = _corpus(tmp_path / "docs.jsonl", CORPUS)
    store = str(tmp_path / "db")
    result = runner.invoke(app, ["index", "--input", str(data), "--store", store, "--collection", "docs", "--k", "4",
                                 "--fit-steps", "30"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"fitting a label-free head on {CORPUS} of {CORPUS} documents" in result.output
    assert "fitted in" in result.output and f"docs: {CORPUS} documents" in result.output
    args = [sys.executable, "-m", "csrv2_vdb.cli", "search", "radiation therapy", "--store", store, "--collection",
            "docs", "--limit", "3"]  # fmt: skip
    first = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    hits = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(hits) == 3
    second = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert second.stdout == first.stdout  # the same head, the same hits, from any process
    named = runner.invoke(app, ["search", "radiation therapy", "--store", store, "--collection", "docs",
                                "--head", "minilm-general-csrv2"])  # fmt: skip
    assert named.exit_code == 2 and "written with the head fitted on" in named.output
    again = runner.invoke(app, ["index", "--input", str(data), "--store", store, "--collection", "docs"])
    assert again.exit_code == 0 and "using the head stored with the collection" in again.output  # not refitted


def test_a_small_corpus_gets_the_general_head_and_says_so(tmp_path):
    data = _corpus(tmp_path / "docs.jsonl", MIN_FIT_ROWS - 1)
    result = runner.invoke(app, ["index", "--input", str(data), "--store", str(tmp_path / "db"), "--collection", "d"])
    assert result.exit_code == 0, result.output
    assert f"fewer than {MIN_FIT_ROWS}, too few to fit a head on; using the general head" in result.output
    search = runner.invoke(app, ["search", "pain", "--store", str(tmp_path / "db"), "--collection", "d"])
    assert search.exit_code == 0 and search.output.strip()


def test_search_on_a_missing_store_directory_creates_nothing(tmp_path):
    result = runner.invoke(app, ["search", "q", "--store", str(tmp_path / "typo"), "--collection", "docs"])
    assert result.exit_code == 2 and "no qdrant-edge store at" in result.output
    assert not (tmp_path / "typo").exists()


def test_langchain_paths_fit_store_and_find_the_same_head_as_the_cli(tmp_path):
    """from_texts with no head fits one (MIN_FIT_ROWS texts) and stores it; a VectorStore and a retriever opened
    later without an encoder use it, and answer exactly as the CLI's search on the same collection."""
    from csrv2_vdb.adapters import open_store
    from csrv2_vdb.integrations.langchain import CSRv2Retriever, CSRv2VectorStore

    rows = [json.loads(line) for line in _corpus(tmp_path / "docs.jsonl", CORPUS).read_text().splitlines()]
    with open_store("qdrant-edge", str(tmp_path / "db")) as store:
        vectorstore = CSRv2VectorStore.from_texts(
            [r["text"] for r in rows], ids=[r["id"] for r in rows], store=store, collection="lc",
            fit_overrides={"min_steps": 30},
        )  # fmt: skip
        stored = load_head(store, "lc")
        assert stored is not None and stored.source == f"fitted on {CORPUS} documents of lc"
        assert vectorstore.encoder.identity == stored.identity
        later = CSRv2VectorStore(store, "lc")
        retriever = CSRv2Retriever(store=store, collection="lc", k=3)
        assert later.encoder.identity == retriever.encoder.identity == stored.identity  # type: ignore[union-attr]
        ours = later.similarity_search_with_score("radiation therapy", k=3)
        theirs = retriever.invoke("radiation therapy")
    hits = _cli_hits(str(tmp_path / "db"), "lc", "radiation therapy")
    assert [h["id"] for h in hits] == [d.id for d, _ in ours] == [d.id for d in theirs]
    assert [h["score"] for h in hits] == pytest.approx([s for _, s in ours], rel=1e-5)


def test_llamaindex_from_documents_fits_like_the_cli_and_answers_alike(tmp_path):
    """LlamaIndex documents indexed with no head named: the head fitted and stored is the one `index` fits on the
    same texts (same identity), and the retriever returns the CLI search's ids and scores."""
    from llama_index.core.schema import Document

    from csrv2_vdb.adapters import open_store
    from csrv2_vdb.integrations.llamaindex import CSRv2Retriever

    rows, cli_store = _cli_indexed(tmp_path)
    documents = [Document(text=r["text"], id_=r["id"]) for r in rows]
    with open_store("qdrant-edge", tmp_path / "li") as store:
        retriever = CSRv2Retriever.from_documents(documents, store, "docs", fit_overrides={"min_steps": 30},
                                                  similarity_top_k=3)  # fmt: skip
        stored = load_head(store, "docs")
        nodes = retriever.retrieve("radiation therapy")
    with open_store("qdrant-edge", cli_store) as store:
        assert stored is not None and stored.identity == load_head(store, "docs").identity  # type: ignore[union-attr]
    hits = _cli_hits(cli_store, "docs", "radiation therapy")
    assert [h["id"] for h in hits] == [n.node.node_id for n in nodes]
    assert [h["score"] for h in hits] == pytest.approx([n.score for n in nodes], rel=1e-5)


def test_haystack_document_embedder_fits_like_the_cli_and_the_text_embedder_finds_its_head(tmp_path):
    """Haystack documents coded with no head named: the head fitted is the one `index` fits on the same texts,
    saved under heads_dir; a text embedder given only the document store codes with it, and the pipeline returns
    the CLI search's ids and scores; the component serialises with the fitted head's folder; a later document
    embedder given the store follows its head; a store whose head is not where it is looked for is refused."""
    from haystack import Document, Pipeline
    from haystack.components.writers import DocumentWriter
    from haystack_integrations.components.retrievers.qdrant import QdrantSparseEmbeddingRetriever
    from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

    from csrv2_vdb.adapters import open_store
    from csrv2_vdb.errors import DataNotFoundError
    from csrv2_vdb.integrations.haystack import CSRv2SparseDocumentEmbedder, CSRv2SparseTextEmbedder

    rows, cli_store = _cli_indexed(tmp_path)
    with open_store("qdrant-edge", cli_store) as store:
        cli_head = load_head(store, "docs")
    heads = tmp_path / "heads"
    document_store = QdrantDocumentStore(":memory:", use_sparse_embeddings=True, sparse_idf=False)
    embedder = CSRv2SparseDocumentEmbedder(heads_dir=str(heads), fit_overrides={"min_steps": 30})
    indexing = Pipeline()
    indexing.add_component("sparse", embedder)
    indexing.add_component("writer", DocumentWriter(document_store))
    indexing.connect("sparse.documents", "writer.documents")
    indexing.run({"sparse": {"documents": [Document(id=r["id"], content=r["text"]) for r in rows]}})
    assert embedder.head is not None and Path(embedder.head).parent == heads
    assert cli_head is not None and CSRv2Encoder.load(embedder.head).identity == cli_head.identity
    assert LatentLabels.load(embedder.head) is not None  # labelled, like the CLI's head
    assert CSRv2SparseDocumentEmbedder.from_dict(embedder.to_dict()).head == embedder.head

    querying = Pipeline()
    querying.add_component("sparse", CSRv2SparseTextEmbedder(document_store=document_store, heads_dir=str(heads)))
    querying.add_component("retriever", QdrantSparseEmbeddingRetriever(document_store=document_store, top_k=3,
                                                                       scale_score=False))  # fmt: skip
    querying.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")
    got = querying.run({"sparse": {"text": "radiation therapy"}})["retriever"]["documents"]
    hits = _cli_hits(cli_store, "docs", "radiation therapy")
    assert [h["id"] for h in hits] == [d.id for d in got] and got
    assert [h["score"] for h in hits] == pytest.approx([d.score for d in got], rel=1e-5)

    later = CSRv2SparseDocumentEmbedder(document_store=document_store, heads_dir=str(heads))
    (added,) = later.run([Document(id="new", content="a note about pain management")])["documents"]
    assert added.meta["csrv2_encoder"] == cli_head.identity and later.head == embedder.head
    with pytest.raises(DataNotFoundError, match="whose head is not in"):
        CSRv2SparseTextEmbedder(document_store=document_store, heads_dir=str(tmp_path / "elsewhere")).warm_up()


def test_batch_search_and_eval_of_a_served_collection(tmp_path):
    """search --queries writes one line per query in input order, the same hits as one-by-one search; eval
    --store scores the collection as served and records which head and collection it scored."""
    data = _corpus(tmp_path / "docs.jsonl", CORPUS)
    store = str(tmp_path / "db")
    assert runner.invoke(app, ["index", "--input", str(data), "--store", store, "--collection", "docs",
                               "--fit-steps", "30"]).exit_code == 0  # fmt: skip
    queries = tmp_path / "q.jsonl"
    asked = [("q1", "radiation therapy dose", ["d1", "d9"]), ("q2", "pain management", ["d6"]),
             ("q3", "surgery recovery", ["d3", "d11"])]  # fmt: skip
    queries.write_text("".join(json.dumps({"id": i, "text": t, "relevant": r}) + "\n" for i, t, r in asked))
    result = runner.invoke(app, ["search", "--store", store, "--collection", "docs", "--queries", str(queries),
                                 "--out", str(tmp_path / "hits.jsonl"), "--limit", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "hits.jsonl").read_text().splitlines()]
    assert [line["query_id"] for line in lines] == ["q1", "q2", "q3"] and all(len(x["hits"]) == 4 for x in lines)
    one = runner.invoke(app, ["search", "pain management", "--store", store, "--collection", "docs", "--limit", "4"])
    single = [json.loads(line[line.index('{"id"') :]) for line in one.output.splitlines() if '{"id"' in line]
    assert [h["id"] for h in single] == [h["id"] for h in lines[1]["hits"]]
    assert [h["score"] for h in single] == pytest.approx([h["score"] for h in lines[1]["hits"]], rel=1e-5)
    out = tmp_path / "served"
    scored = runner.invoke(app, ["eval", "--store", store, "--collection", "docs", "--queries", str(queries),
                                 "--out", str(out)])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    record = json.loads((out / "eval.json").read_text())
    assert record["collection"] == "docs" and record["head"].startswith("fitted on") and record["judged"] == 3
    assert (out / "eval.csv").read_text().count("sparse") == 2
    both = runner.invoke(app, ["search", "q", "--store", store, "--collection", "docs", "--queries", str(queries)])
    assert both.exit_code == 2 and "give one QUERY" in both.output


def test_the_llamaindex_retriever_over_a_collection_uses_its_stored_head(tmp_path):
    from csrv2_vdb.adapters import open_store
    from csrv2_vdb.integrations.llamaindex import CSRv2Retriever

    data = _corpus(tmp_path / "docs.jsonl", CORPUS)
    assert runner.invoke(app, ["index", "--input", str(data), "--store", str(tmp_path / "db"), "--collection",
                               "docs", "--fit-steps", "30"]).exit_code == 0  # fmt: skip
    cli = runner.invoke(app, ["search", "pain management", "--store", str(tmp_path / "db"), "--collection", "docs",
                              "--limit", "3"])  # fmt: skip
    want = [json.loads(line[line.index('{"id"') :]) for line in cli.output.splitlines() if '{"id"' in line]
    with open_store("qdrant-edge", str(tmp_path / "db")) as store:
        stored = load_head(store, "docs")
        retriever = CSRv2Retriever(store, "docs", similarity_top_k=3)
        assert stored is not None and retriever.encoder is not None
        assert retriever.encoder.identity == stored.identity
        got = retriever.retrieve("pain management")
    assert [n.node.node_id for n in got] == [h["id"] for h in want]
    assert [n.score for n in got] == pytest.approx([h["score"] for h in want], rel=1e-5)


def test_a_collection_indexed_before_heads_were_stored_keeps_its_head(tmp_path, head_dir):
    """An old collection (no stored head) written by the general head adopts it; one written by another head is
    refused at once, before any fit, and told to name its head."""
    from csrv2_vdb.adapters import open_store

    data = _corpus(tmp_path / "docs.jsonl", CORPUS)
    store = str(tmp_path / "db")
    with open_store("qdrant-edge", store) as db:
        for name, head in (("old_general", None), ("old_other", head_dir), ("old_v1", "minilm-general-csrv2-v1")):
            encoder = CSRv2Encoder.load(head)
            db.create_collection(name, sparse_dim=encoder.dim, encoder=encoder.identity)
    adopted = runner.invoke(app, ["index", "--input", str(data), "--store", store, "--collection", "old_general"])
    assert adopted.exit_code == 0 and "fitting" not in adopted.output, adopted.output
    # the general head of before 2026-12-07 (shipped as minilm-general-csrv2-v1) still codes what it wrote
    v1 = CSRv2Encoder.load("minilm-general-csrv2-v1")
    adopted = runner.invoke(app, ["index", "--input", str(data), "--store", store, "--collection", "old_v1"])
    assert adopted.exit_code == 0 and "fitting" not in adopted.output, adopted.output
    with open_store("qdrant-edge", store) as db:
        assert load_head(db, "old_v1").identity == v1.identity  # type: ignore[union-attr]
        db.drop_collection(companion("old_v1"))  # as before heads were stored: searched by the recorded hash
        assert encoder_for_collection(db, "old_v1", None).identity == v1.identity
    refused = runner.invoke(app, ["index", "--input", str(data), "--store", store, "--collection", "old_other"])
    assert refused.exit_code == 2 and "name its head with --head" in refused.output and "fitting" not in refused.output

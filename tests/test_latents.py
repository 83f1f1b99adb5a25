"""Latents a person can read (issue 31): labels fitted with a collection's head, `heads show`, `label`, and
explained hits that add up to the score, the same from the CLI, the VectorStore and the retrievers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from csrv2_vdb.adapters import open_store
from csrv2_vdb.cli import app
from csrv2_vdb.head_store import load_head
from csrv2_vdb.labels import LatentLabels, label_latents, tokens
from csrv2_vdb.sparse import SparseBatch

runner = CliRunner()

# Five topics with disjoint vocabularies; each text is 12 words drawn from one topic.
TOPICS = {
    "astronomy": "galaxy telescope comet nebula orbit planet asteroid supernova quasar pulsar eclipse meteor "
    "constellation cosmos gravity spacecraft astronaut satellite moon solar",
    "cooking": "recipe oven flour butter garlic simmer saute dough pastry bake whisk onion pepper sauce skillet "
    "broth vinegar oregano basil cinnamon",
    "football": "goalkeeper striker penalty referee midfielder stadium tackle offside corner kickoff league "
    "tournament fans coach trophy dribble header defender goal match",
    "finance": "mortgage interest inflation dividend bond equity portfolio broker loan credit bank investor stock "
    "market budget tax revenue debt currency audit",
    "botany": "photosynthesis chlorophyll petal stem root seed pollen leaf fern moss orchid cactus tulip fungus "
    "soil sprout blossom bark shrub foliage",
}
PER_TOPIC = 60


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A qdrant-edge collection indexed without --head from the planted corpus (its head fitted and labelled)."""
    root = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(0)
    rows, topic_of = [], []
    for topic, words in TOPICS.items():
        for i in range(PER_TOPIC):
            rows.append({"id": f"{topic}-{i}", "text": " ".join(rng.choice(words.split(), 12)), "topic": topic})
            topic_of.append(topic)
    corpus = root / "planted.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = root / "store"
    result = runner.invoke(app, ["index", "--input", str(corpus), "--store", str(store), "--collection", "docs",
                                 "--fit-steps", "400"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "labelled" in result.output
    return store, corpus, rows, np.array(topic_of)


def test_the_latent_that_fires_most_on_a_topic_is_labelled_with_its_words(planted):
    """Precision of the top 5 label terms of each topic's most-firing latent, across the planted topics."""
    store, _, rows, topic_of = planted
    with open_store("qdrant-edge", str(store)) as db:
        stored = load_head(db, "docs")
        assert stored is not None and stored.labels is not None and stored.labels.documents == len(rows)
        codes = db.codes("docs", [r["id"] for r in rows]).to_dense()
    precision = []
    for topic, words in TOPICS.items():
        fired = (codes[topic_of == topic] > 0).sum(axis=0)
        latent = int(np.argmax(fired))
        terms = stored.labels.labels[latent].terms[:5]
        precision.append(np.mean([t in words.split() for t in terms]))
    assert np.mean(precision) >= 0.8, precision


def test_heads_show_and_label_commands(planted, tmp_path):
    store, corpus, _, _ = planted
    plot = tmp_path / "usage.png"
    shown = runner.invoke(app, ["heads", "show", "--store", str(store), "--collection", "docs", "--top", "5",
                                "--plot", str(plot)])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "fitted on 300 documents of docs" in shown.output and "c-tf-idf over 300 texts" in shown.output
    assert "dead; the top 1 % hold" in shown.output and "at    1,000,000 documents" in shown.output
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert any(w in shown.output for words in TOPICS.values() for w in words.split())

    # a head directory without labels says how to make them; `label` writes labels.json beside it
    head = tmp_path / "head"
    with open_store("qdrant-edge", str(store)) as db:
        stored = load_head(db, "docs")
    assert stored is not None
    stored.head.save(head)
    bare = runner.invoke(app, ["heads", "show", str(head)])
    assert bare.exit_code == 0 and "no latent labels; make them with: csrv2-vdb label" in bare.output
    made = runner.invoke(app, ["label", "--head", str(head), "--input", str(corpus)])
    assert made.exit_code == 0, made.output
    labels = LatentLabels.load(head)
    assert labels is not None and labels.documents == 300
    assert runner.invoke(app, ["heads", "show", str(head)]).output.count("texts") >= 5
    # relabelled with the collection's head (over the same texts): the same labels, stored with it
    again = runner.invoke(app, ["label", "--store", str(store), "--collection", "docs", "--input", str(corpus)])
    assert again.exit_code == 0, again.output
    with open_store("qdrant-edge", str(store)) as db:
        relabelled = load_head(db, "docs")
    assert relabelled is not None and relabelled.labels is not None
    assert relabelled.labels.labels == labels.labels
    shipped = runner.invoke(app, ["label", "--head", "minilm-medical-csrv2-k8", "--input", str(corpus)])
    assert shipped.exit_code == 2 and "--out" in shipped.output


def test_explained_hits_add_up_and_are_the_same_from_the_cli_and_the_frameworks(planted):
    from csrv2_vdb.integrations.langchain import CSRv2Retriever, CSRv2VectorStore
    from csrv2_vdb.integrations.llamaindex import CSRv2Retriever as CSRv2LlamaRetriever

    store, _, _, _ = planted
    query = "telescope comet nebula"
    result = runner.invoke(app, ["search", query, "--store", str(store), "--collection", "docs", "--explain"])
    assert result.exit_code == 0, result.output
    cli = [json.loads(line[line.index('{"id"') :]) for line in result.output.splitlines() if '{"id"' in line]
    assert len(cli) == 5 and all(h["id"].startswith("astronomy-") for h in cli)
    for hit in cli:
        parts = hit["explain"]
        assert parts and sum(p["contribution"] for p in parts) == pytest.approx(hit["score"], rel=1e-4, abs=1e-6)
        assert [p["contribution"] for p in parts] == sorted((p["contribution"] for p in parts), reverse=True)
    assert any(w in TOPICS["astronomy"] for w in cli[0]["explain"][0]["label"].split(", "))
    queries, hits = store.parent / "queries.jsonl", store.parent / "hits.jsonl"
    queries.write_text(json.dumps({"id": "q1", "text": query}) + "\n")
    batch = runner.invoke(app, ["search", "--store", str(store), "--collection", "docs", "--queries", str(queries),
                                "--out", str(hits), "--limit", "5", "--explain"])  # fmt: skip
    assert batch.exit_code == 0, batch.output
    from_file = json.loads(hits.read_text())["hits"]
    assert [(h["id"], _rounded(h["explain"])) for h in from_file] == [(h["id"], _rounded(h["explain"])) for h in cli]

    with open_store("qdrant-edge", str(store)) as db:
        vectorstore = CSRv2VectorStore(db, "docs")
        from_store = vectorstore.similarity_search(query, k=5, explain=True)
        retriever = CSRv2Retriever(store=db, collection="docs", k=5, explain=True)
        from_retriever = retriever.invoke(query)
        from_llama = CSRv2LlamaRetriever(db, "docs", similarity_top_k=5, explain=True).retrieve(query)
        assert "explain" not in vectorstore.similarity_search(query, k=1)[0].metadata  # only when asked
    want = [(h["id"], h["explain"]) for h in cli]
    assert [(d.id, _rounded(d.metadata["explain"])) for d in from_store] == _rounded_all(want)
    assert [(d.id, _rounded(d.metadata["explain"])) for d in from_retriever] == _rounded_all(want)
    assert [(n.node.id_, _rounded(n.node.metadata["explain"])) for n in from_llama] == _rounded_all(want)


def _rounded(parts: list[dict]) -> list[tuple[int, str, float]]:
    return [(p["latent"], p["label"], round(p["contribution"], 5)) for p in parts]


def _rounded_all(rows: list[tuple[str, list[dict]]]) -> list[tuple[str, list[tuple[int, str, float]]]]:
    return [(doc_id, _rounded(parts)) for doc_id, parts in rows]


def test_labels_without_texts_or_with_mismatched_codes_are_clear():
    from csrv2_vdb.errors import InvalidArgumentError

    codes = SparseBatch(np.array([[0, 1], [1, 2]]), np.array([[1.0, 0.5], [0.2, 0.0]]), 4)
    with pytest.raises(InvalidArgumentError, match="3 texts but 2 codes"):
        label_latents(["a", "b", "c"], codes)
    labels = label_latents(["galaxy comet galaxy", "comet orbit"], codes, min_df=1)
    assert set(labels.labels) == {0, 1} and labels.label(2) == "" and labels.labels[1].df == 2  # a zero is no firing
    assert tokens("The Moon's orbit, 2024!") == ["moon's", "orbit"]
    assert LatentLabels.from_json(labels.to_json()).labels == labels.labels


def test_latent_usage_counts_what_an_inverted_index_reads():
    """Postings per document-like query from document frequencies equal the brute-force count over the
    documents used as queries; dead and hot latents are found."""
    from csrv2_vdb.diagnostics import LatentUsage

    rng = np.random.default_rng(3)
    n, dim = 400, 64
    # latent 0 fires on every document (hot); the last 8 latents on none (dead)
    indices = np.stack([[0, *(1 + rng.choice(dim - 9, 2, replace=False))] for _ in range(n)])
    codes = SparseBatch(indices, rng.random((n, 3)) + 0.1, dim)
    labels = label_latents([f"text {i}" for i in range(n)], codes, min_df=1)
    usage = LatentUsage.from_labels(labels)
    df = np.bincount(indices.ravel(), minlength=dim)
    brute = np.mean([df[row].sum() for row in indices])
    assert usage.postings_per_query() == pytest.approx(brute)
    assert usage.postings_per_query(4000) == pytest.approx(10 * brute)
    assert usage.dead == 8 and usage.hot == [0]
    lines = usage.lines(400, labels)
    assert "56 of 64 latents fire, 8 dead" in lines[0] and lines[1].startswith("hot latents (over 10x")


def _corpus(path, topics: list[str], per_topic: int, seed: int):
    rng = np.random.default_rng(seed)
    rows = [{"id": f"{t}-{seed}-{i}", "text": " ".join(rng.choice(TOPICS[t].split(), 12))}
            for t in topics for i in range(per_topic)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_check_input_reports_drift_and_when_a_refit_would_pay(tmp_path):
    """A head fitted on three topics: new texts of those topics need no refit; texts of two unseen topics do."""
    seen = ["astronomy", "cooking", "football"]
    store = str(tmp_path / "store")
    fitted = _corpus(tmp_path / "fit.jsonl", seen, 60, seed=1)
    result = runner.invoke(app, ["index", "--input", str(fitted), "--store", store, "--collection", "three",
                                 "--fit-steps", "400"])  # fmt: skip
    assert result.exit_code == 0, result.output
    same = _corpus(tmp_path / "same.jsonl", seen, 60, seed=2)
    unseen = _corpus(tmp_path / "unseen.jsonl", ["finance", "botany"], 90, seed=3)
    calm = runner.invoke(app, ["check", "--store", store, "--collection", "three", "--input", str(same)])
    assert calm.exit_code == 0, calm.output
    assert "drift: 180 new documents against the 180" in calm.output and "no refit needed" in calm.output
    moved = runner.invoke(app, ["check", "--store", store, "--collection", "three", "--input", str(unseen)])
    assert moved.exit_code == 0, moved.output
    assert "a refit would pay" in moved.output, moved.output

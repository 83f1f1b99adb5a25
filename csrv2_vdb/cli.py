"""`csrv2-vdb`: encode, index and search from the shell, and train a head; the harness commands (demo, eval,
train, finetune, bench ...) come from `csrv2_vdb.benchmarks.cli`, mounted at the end of this module.

Errors a user can fix (bad input, missing data or collection, a locked store) print one line and exit 2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from csrv2_vdb.cli_common import (
    ApiKeyOpt,
    BalanceOpt,
    CollectionOpt,
    EmbedCacheOpt,
    EmbedderOpt,
    EngineOpt,
    HeadOpt,
    KOpt,
    NormalizeOpt,
    fail,
    open_embedder_cached,
    say,
    user_errors,
)
from csrv2_vdb.credentials import redact
from csrv2_vdb.embedders import Embedder

app = typer.Typer(
    help="Ultra-sparse CSRv2 embeddings in vector databases: texts -> dense -> k-sparse -> engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


EmbeddingsOpt = Annotated[
    Path | None,
    typer.Option(
        "--embeddings",
        help="Precomputed embeddings instead of embedding texts: a .npy file (row i = record i of --input), or "
        "the name of a field of each --input record holding its vector. Queries must later use the same model.",
    ),
]


def _encoder(
    head: str | None, model: Embedder | None, k: int | None, normalize: bool | None, query_k: int | None = None
):
    """The CSRv2 encoder the options name (`model` None: it encodes precomputed vectors only)."""
    from csrv2_vdb.encoder import CSRv2Encoder
    from csrv2_vdb.head import resolve_head

    return CSRv2Encoder(model, resolve_head(head), k, True if normalize is None else normalize, query_k)


def _model(embedder: str | None, cache: str | None, precomputed: bool) -> Embedder | None:
    """The texts embedder; none for precomputed vectors unless --embedder names one (then the head is checked
    against it, since queries will go through it)."""
    return None if precomputed and not embedder else open_embedder_cached(embedder, cache)


def _records(input: Path, embeddings: Path | None):
    """(records, vector field or None) for --input with optional --embeddings (.npy rows or a field name)."""
    from csrv2_vdb.records import iter_records, with_vectors

    if embeddings is None:
        return lambda: iter_records(input), None
    if embeddings.suffix == ".npy":
        return lambda: with_vectors(iter_records(input, text_optional=True), embeddings), "embedding"
    field = str(embeddings)
    return lambda: iter_records(input, vector_field=field), field


@app.command()
def encode(
    input: Annotated[Path, typer.Option("--input", help=".txt (one text per line) or .jsonl with id/text fields.")],
    output: Annotated[Path, typer.Option("--out", "--output", help="JSON lines: {id, indices, values}.")],
    head: HeadOpt = None,
    k: KOpt = None,
    normalize: NormalizeOpt = None,
    kind: Annotated[
        str, typer.Option("--kind", help="query or document (selects the embedder's prompt).")
    ] = "document",
    embeddings: EmbeddingsOpt = None,
    embedder: EmbedderOpt = None,
    embed_cache: EmbedCacheOpt = None,
) -> None:
    """Encode texts (or precomputed embeddings) into k-sparse vectors and write them as JSON lines."""
    import numpy as np

    if kind not in ("query", "document"):
        raise fail(f"--kind must be 'query' or 'document', got {kind!r}")
    with user_errors():
        read, field = _records(input, embeddings)
        records = list(read())
        enc = _encoder(head, _model(embedder, embed_cache, field is not None), k, normalize)
        if field is not None:
            batch = enc.encode_embeddings(np.asarray([r[field] for r in records], dtype=np.float32))
        else:
            batch = enc.encode_texts([r["text"] for r in records], "query" if kind == "query" else "document")
    with open(output, "w") as f:
        for rec, (idx, val) in zip(records, batch.rows(), strict=True):
            f.write(json.dumps({"id": rec["id"], "indices": idx, "values": val}) + "\n")
    say(f"wrote {len(records)} vectors (k={enc.k}, dim={enc.dim}) to {output}")


def _open(engine: str, store: str, api_key: str | None):
    """open_store with the credential option each engine names (an explicit key beats the environment)."""
    from csrv2_vdb.adapters import open_store

    if api_key is None:
        return open_store(engine, store)
    return open_store(engine, store, **{"token" if engine == "milvus" else "api_key": api_key})


def _served(db: Any, collection: str, log: Any = None) -> str:
    """The collection that answers for `collection` now: its current version after a `refit`, else itself."""
    from csrv2_vdb.versions import current

    version = current(db, collection)
    if log is not None and version != collection:
        log(f"{collection}: its current version is {version} (csrv2-vdb refit)")
    return version


def _store_identity(engine: str, store: str) -> str:
    """The store as a checkpoint names it: an absolute path for embedded engines, the redacted URL otherwise."""
    if "://" in store or store == ":memory:" or engine == "elasticsearch":
        return f"{engine}:{redact(store)}"
    return f"{engine}:{Path(store).resolve()}"


@app.command()
def index(
    input: Annotated[
        Path, typer.Option("--input", help=".jsonl / .parquet (id, text, other fields -> payload) or .txt.")
    ],
    store: Annotated[
        str, typer.Option("--store", help="qdrant-edge: a directory; qdrant: URL or path; milvus: URI or .db file.")
    ],
    collection: CollectionOpt,
    head: HeadOpt = None,
    mrl_dims: Annotated[
        int | None, typer.Option("--mrl-dims", help="Instead of sparse codes: index MRL-truncated dense vectors.")
    ] = None,
    dense_dims: Annotated[
        int | None,
        typer.Option(
            "--dense-dims",
            help="Also store MRL-truncated dense vectors of this size beside the codes (for `search --rerank`).",
        ),
    ] = None,
    engine: EngineOpt = "qdrant-edge",
    k: KOpt = None,
    normalize: NormalizeOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Documents per encode-and-upsert batch.")] = 256,
    writers: Annotated[int, typer.Option("--writers", help="Threads writing batches to the engine.")] = 2,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Resume file; default: <input>.<collection>.checkpoint.")
    ] = None,
    embeddings: EmbeddingsOpt = None,
    embedder: EmbedderOpt = None,
    embed_cache: EmbedCacheOpt = None,
    api_key: ApiKeyOpt = None,
    fit_sample: Annotated[
        int,
        typer.Option(
            "--fit-sample",
            help="Without --head: fit the collection's head on at most this many documents (a seeded sample).",
        ),
    ] = 50_000,
    fit_steps: Annotated[
        int | None,
        typer.Option("--fit-steps", help="Without --head: optimizer steps of the fit (default 1500, measured)."),
    ] = None,
    balance: BalanceOpt = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="local (this process) or ray: embed and encode on a Ray cluster's actors (the ray extra of "
            "csrv2-vdb); same batches, checkpoint and codes.",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="With --executor ray: a running cluster (auto, host:6379); default: local."),
    ] = None,
    num_workers: Annotated[
        int, typer.Option("--num-workers", help="With --executor ray: actors, each holding one copy of the model.")
    ] = 2,
    gpus_per_worker: Annotated[
        float, typer.Option("--gpus", help="With --executor ray: GPUs per worker (> 0: the model on CUDA).")
    ] = 0.0,
) -> None:
    """Encode documents and upsert them; re-running overwrites, and a killed run resumes from its checkpoint.

    Without --head, a new collection of at least 50 documents gets a head fitted on its own documents
    (label-free, train --input's defaults; about a minute on 2 cores, reported), smaller ones the general
    head; an existing collection keeps the head stored with it. The head is stored in the engine with the
    collection, so search, eval and the retrievers find it without --head."""
    from csrv2_vdb.bulk import bulk_index
    from csrv2_vdb.encoder import MRLEncoder, encode_hybrid
    from csrv2_vdb.head_store import head_for_index
    from csrv2_vdb.store import Optimizable

    if head is not None and mrl_dims is not None:
        raise fail("give --head (sparse codes) or --mrl-dims (dense baseline), not both")
    if dense_dims is not None and mrl_dims is not None:
        raise fail("--dense-dims stores dense vectors beside the sparse codes; --mrl-dims indexes dense only")
    if fit_sample < 2:
        raise fail(f"--fit-sample must be at least 2, got {fit_sample}")
    if executor not in ("local", "ray"):
        raise fail(f"--executor must be local or ray, got {executor!r}")
    if executor == "ray" and (mrl_dims is not None or dense_dims is not None):
        raise fail("--executor ray writes sparse codes only; --mrl-dims and --dense-dims run with --executor local")
    checkpoint = checkpoint or input.with_name(f"{input.name}.{collection}.checkpoint")
    with user_errors():
        read, field = _records(input, embeddings)
        model = _model(embedder, embed_cache, field is not None)
        total = sum(1 for _ in read())  # also checks every record before anything is written
        with _open(engine, store, api_key) as db:
            collection = _served(db, collection, say)
            if mrl_dims is None:
                dense_beside = MRLEncoder(model, dense_dims) if dense_dims is not None else None
                sparse_enc = head_for_index(
                    db, collection, model, lambda: _fit_rows(read, field, model, total, fit_sample), total,
                    head=head, k=k, normalize=normalize, dense_dim=dense_beside.dims if dense_beside else None,
                    fit_overrides=_fit_overrides(fit_steps, balance), log=say,
                )  # fmt: skip
                ready: Any = sparse_enc
                encoder_id, active = sparse_enc.identity, sparse_enc.k
            else:
                dense_enc = MRLEncoder(model, mrl_dims or 0)
                db.create_collection(collection, dense_dim=dense_enc.dims, exist_ok=True)
                encoder_id, active, ready = f"mrl:{dense_enc.dims}", dense_enc.dims, dense_enc
            encode: Any
            if field is None:
                encode, vectors_by = ready.encode_documents, ready.embedder.identity
            else:
                encode, vectors_by = ready.encode_embeddings, f"precomputed:{embeddings}"
            if mrl_dims is None and dense_beside is not None:  # both vectors per document, one embedding pass
                beside, codes = dense_beside, sparse_enc
                encoder_id = f"{encoder_id}+mrl:{beside.dims}"

                def both(batch: Any) -> Any:  # texts, or the records' precomputed embeddings
                    if field is None:
                        return encode_hybrid(codes, beside, batch, "document")
                    return codes.encode_embeddings(batch), beside.encode_embeddings(batch)

                encode = both
            run = {  # the input's content is checked batch by batch (bulk.Checkpoint), not by size and mtime
                "engine": engine, "store": _store_identity(engine, store), "encoder": encoder_id, "k": active,
                "embedder": vectors_by, "input": str(input.resolve()),
            }  # fmt: skip
            try:
                if executor == "ray":
                    from csrv2_vdb.ray_index import RayOptions

                    report = _ray_index(db, engine, store, api_key, collection, read(), sparse_enc, embedder,
                                        RayOptions(ray_address, num_workers, gpus_per_worker=gpus_per_worker),
                                        batch_size=batch_size, checkpoint=checkpoint, run=run, writers=writers,
                                        vector_field=field, total=total, log=say)  # fmt: skip
                else:
                    report = bulk_index(
                        db, collection, read(), encode, batch_size=batch_size, checkpoint=checkpoint,
                        run=run, writers=writers, vector_field=field, total=total, log=say,
                    )  # fmt: skip
            except KeyboardInterrupt:
                say(f"interrupted: committed batches are recorded in {checkpoint}; re-run the same command to resume")
                raise typer.Exit(130) from None
            if isinstance(db, Optimizable):  # qdrant-edge: merge segments, build the immutable index
                db.optimize(collection)
            count = db.count(collection)
    say(
        f"{collection}: {count} documents in {store} ({report.rows_written} written at "
        f"{report.rows_per_second:.0f} rows/s, {report.batches_skipped} batches resumed, {report.retries} retries)"
    )


def _ray_index(
    db: Any, engine: str, store: str, api_key: str | None, collection: str, records: Any, encoder: Any,
    embedder: str | None, options: Any, **bulk: Any,
) -> Any:  # fmt: skip
    """ray_bulk_index: server engines are written by the actors themselves, embedded ones by this process."""
    import importlib.util

    from csrv2_vdb.ray_index import StoreSpec, ray_bulk_index

    if importlib.util.find_spec("ray") is None:
        raise fail("--executor ray needs Ray: pip install 'csrv2-vdb[ray]'")
    server = engine in ("pgvector", "elasticsearch") or "://" in store
    credential = {"token" if engine == "milvus" else "api_key": api_key} if api_key else {}
    spec = StoreSpec(engine, store, credential) if server else None
    return ray_bulk_index(db, collection, records, encoder, embedder=embedder, options=options, worker_store=spec,
                          **bulk)  # fmt: skip


def _fit_overrides(steps: int | None, balance: float | None) -> dict[str, object] | None:
    """index's fit settings that differ from train --input's defaults (None: none do)."""
    given = {"min_steps": steps or None, "balance_coef": balance}
    return {name: value for name, value in given.items() if value is not None} or None


def _fit_rows(read: Any, field: str | None, model: Embedder | None, total: int, size: int) -> Any:
    """(embeddings, texts or None) of a seeded sample of at most `size` records, to fit a head on and label its
    latents (through the embedding cache, so the write pass embeds them again for free)."""
    import numpy as np

    from csrv2_vdb.head_store import sample_rows

    sample = sample_rows(total, size)
    keep = None if sample is None else set(sample)
    chosen = [r for i, r in enumerate(read()) if keep is None or i in keep]
    texts = [str(r["text"]) for r in chosen] if all(isinstance(r.get("text"), str) for r in chosen) else None
    if field is not None:
        return np.asarray([r[field] for r in chosen], dtype=np.float32), texts
    assert model is not None and texts is not None
    return model.embed(texts, "document"), texts


@app.command()
def search(
    store: Annotated[str, typer.Option("--store", help="Where the collection lives (see `index --help`).")],
    collection: CollectionOpt,
    query: Annotated[str | None, typer.Argument(help="Query text (or --queries FILE).")] = None,
    head: HeadOpt = None,
    engine: EngineOpt = "qdrant-edge",
    k: Annotated[
        int | None, typer.Option("--k", help="Active dims the documents were indexed with; default: the head's k.")
    ] = None,
    query_k: Annotated[
        int | None,
        typer.Option(
            "--query-k",
            help="Active dims of the query; default max(k, min(4k, 16)): a query's code is not stored, and more "
            "active dims find more (measured in docs/quality.md).",
        ),
    ] = None,
    normalize: NormalizeOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Hits to return.")] = 5,
    filter: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="field=value payload filter, repeatable. Numbers and true/false match as such; quote a value "
            "(year='\"2020\"') to match it as a string.",
        ),
    ] = None,
    rerank: Annotated[
        int | None,
        typer.Option(
            "--rerank",
            help="Rescore this many sparse candidates by the dense vectors stored beside the codes (a collection "
            "indexed with --dense-dims); the scores printed are then dense cosines.",
        ),
    ] = None,
    embedder: EmbedderOpt = None,
    embed_cache: EmbedCacheOpt = None,
    api_key: ApiKeyOpt = None,
    queries: Annotated[
        Path | None,
        typer.Option("--queries", help="Many queries (rows with id and text, any input format); needs --out."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help='With --queries: JSON lines {"query_id", "hits": [{"id", "score"}]}, in order.'),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help='Add to each hit "explain": the latents it shares with the query, each with its label and its '
            "contribution (query value x document value; they add up to the score), largest first.",
        ),
    ] = False,
) -> None:
    """Search a sparse collection with a text query; prints JSON hits (id, score, payload). Without --head the
    collection's own head (stored with it by `index`) codes the query. With --queries FILE --out FILE, every
    query of the file is searched (the model loads once) and one line per query is written."""
    from csrv2_vdb.encoder import MRLEncoder, encode_hybrid
    from csrv2_vdb.explain import explain_hits
    from csrv2_vdb.head import resolve_head
    from csrv2_vdb.head_store import encoder_for_collection, labels_for

    conditions = {}
    for item in filter or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"--filter {item!r} must look like field=value")
        conditions[key] = filter_value(value)
    if (query is None) == (queries is None) or (queries is None) != (out is None):
        raise fail("give one QUERY, or --queries FILE with --out FILE")
    if queries is not None and rerank is not None:
        raise fail("--rerank searches one QUERY at a time; leave it out with --queries")
    if explain and rerank is not None:
        raise fail("--explain decomposes sparse scores; --rerank scores are dense cosines: leave one out")
    with user_errors():
        if head is not None:
            resolve_head(head)  # a bad head fails before any store is opened
        if engine == "qdrant-edge" and not Path(store).is_dir():  # opening would create an empty store there
            raise fail(f"no qdrant-edge store at {store} (a directory written by `csrv2-vdb index`)")
        model = open_embedder_cached(embedder, embed_cache)
        with _open(engine, store, api_key) as db:
            collection = _served(db, collection)
            enc = encoder_for_collection(db, collection, model, head=head, k=k, normalize=normalize, query_k=query_k)
            info = db.collection_info(collection)
            labels = labels_for(db, collection, head) if explain else None
            if queries is not None and out is not None:
                written = _search_file(db, collection, enc, queries, out, limit, conditions or None, explain, labels)
                say(f"{written} queries searched in {collection}; hits written to {out}")
                return
            assert query is not None
            explained: list[Any] = []
            if rerank is None:
                code = enc.encode_queries([query])
                hits = db.search(collection, code, limit=limit, filter=conditions or None)[0]
                if explain:
                    explained = explain_hits(db, collection, code, [hits], labels)[0]
            else:
                if info.dense_dim is None:
                    raise fail(f"--rerank: {collection!r} holds no dense vectors (index it with --dense-dims)")
                sparse, dense = encode_hybrid(enc, MRLEncoder(enc.embedder, info.dense_dim), [query], "query")
                hits = db.rerank_search(collection, sparse, dense, limit=limit, candidates=rerank,
                                        filter=conditions or None)[0]  # fmt: skip
    for i, hit in enumerate(hits):
        line = {"id": hit.id, "score": round(hit.score, 6), "payload": hit.payload}
        typer.echo(json.dumps(line | ({"explain": explained[i]} if explain else {})))


def _search_file(
    db: Any, collection: str, enc: Any, queries: Path, out: Path, limit: int, conditions: Any, explain: bool = False,
    labels: Any = None,
) -> int:  # fmt: skip
    """Every query of the file, searched in order; one JSON line per query (written whole, then renamed)."""
    from csrv2_vdb.explain import explain_hits
    from csrv2_vdb.records import iter_records
    from csrv2_vdb.retrieval import search_queries

    rows = list(iter_records(queries))
    texts = [r["text"] for r in rows]
    hits = list(search_queries(db, collection, texts, encoder=enc, limit=limit, filter=conditions))
    # the same codes again (the embeddings come from the cache): what each hit's score decomposes over
    why = explain_hits(db, collection, enc.encode_queries(texts), hits, labels) if explain else None
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as f:
        for i, (row, found) in enumerate(zip(rows, hits, strict=True)):
            answer = [{"id": h.id, "score": round(h.score, 6)} | ({"explain": why[i][j]} if why else {})
                      for j, h in enumerate(found)]  # fmt: skip
            f.write(json.dumps({"query_id": row["id"], "hits": answer}) + "\n")
    tmp.replace(out)
    return len(rows)


SourceOpt = Annotated[str, typer.Option("--collection", help="The dense collection to migrate (left unchanged).")]
VectorOpt = Annotated[
    str | None, typer.Option("--vector", help="Its dense vector's name; default: the only one it has.")
]
TargetOpt = Annotated[
    str | None, typer.Option("--target", help="Collection for the sparse codes; default <collection>_csrv2.")
]
HoldoutOpt = Annotated[int, typer.Option("--holdout", help="Held-out points for the fidelity report.")]


@app.command()
def migrate(
    store: Annotated[str, typer.Option("--store", help="Where the dense collection lives (see `index --help`).")],
    collection: SourceOpt,
    vector: VectorOpt = None,
    target: TargetOpt = None,
    engine: EngineOpt = "qdrant-edge",
    head: Annotated[
        str | None, typer.Option("--head", help="Use this head instead of fitting one on the collection.")
    ] = None,
    head_out: Annotated[
        Path | None,
        typer.Option("--head-out", help="Where the fitted head, checkpoint and report go; default ./<target>-head."),
    ] = None,
    k: KOpt = None,
    sample: Annotated[int, typer.Option("--sample", help="Points sampled to fit the head on.")] = 50_000,
    holdout: HoldoutOpt = 200,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Points per read page and write batch.")] = 256,
    into_existing: Annotated[
        bool,
        typer.Option(
            "--into-existing",
            help="Write into a --target that already holds documents (same ids are overwritten; the count is "
            "reported). Without it such a target is refused.",
        ),
    ] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Leave out points whose vector holds NaN/inf or only zeros (listed in migration.json); without "
            "it they stop the migration before anything is written.",
        ),
    ] = False,
    api_key: ApiKeyOpt = None,
) -> None:
    """Write k-sparse codes of an existing dense collection into a sparse collection with the same ids and
    payloads; fits a label-free head on a sample unless --head is given. Resumable; ends with a fidelity report."""
    from csrv2_vdb.migrate import migrate as run_migration
    from csrv2_vdb.migrate import target_name

    with user_errors(), _open(engine, store, api_key) as db:
        name = target_name(collection, target)
        out = head_out or Path(f"{name}-head")
        out.mkdir(parents=True, exist_ok=True)
        try:
            report = run_migration(
                db, collection, vector=vector, target=name, head=head, head_out=out, k=k, sample=sample,
                holdout=holdout, batch_size=batch_size, checkpoint=out / "migrate.checkpoint",
                run={"engine": engine, "store": _store_identity(engine, store)}, into_existing=into_existing,
                skip_invalid=skip_invalid, log=say,
            )  # fmt: skip
        except KeyboardInterrupt:
            say(f"interrupted: committed batches are in {out / 'migrate.checkpoint'}; re-run to resume")
            raise typer.Exit(130) from None
    report.save(out / "migration.json")
    say(f"{name}: {report.points} points written ({report.write['rows_per_second']:.0f} rows/s), head {out}"
        + (f"; {report.overwritten} existing documents overwritten" if report.overwritten else "")
        + (f"; {len(report.skipped_points)} invalid points left out" if report.skipped_points else ""))  # fmt: skip
    for line in report.fidelity.lines() if report.fidelity else []:
        typer.echo(line)
    say(f"report: {out / 'migration.json'}; search with: csrv2-vdb search QUERY --engine {engine} --store {store} "
        f"--collection {name} --head {out} --embedder <the model that wrote the dense vectors>")  # fmt: skip


@app.command()
def check(
    store: Annotated[str, typer.Option("--store", help="Where both collections live.")],
    collection: SourceOpt,
    head: Annotated[
        str | None,
        typer.Option("--head", help="The head the target was written with; default: the head stored with it."),
    ] = None,
    vector: VectorOpt = None,
    target: TargetOpt = None,
    engine: EngineOpt = "qdrant-edge",
    holdout: HoldoutOpt = 200,
    api_key: ApiKeyOpt = None,
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="Drift instead: documents added (or to be added) to --collection, measured against the ones its "
            "head was fitted on (recall@10 against dense, reconstruction error, latent usage); says when a refit "
            "would pay.",
        ),
    ] = None,
    embedder: EmbedderOpt = None,
    embed_cache: EmbedCacheOpt = None,
) -> None:
    """The fidelity report of a migrated collection: sparse recall@10 against the dense collection's own top-10;
    and, when its head has latent labels, its latent usage (dead and hot latents, postings a query reads).
    With --input: drift of new documents against the head's fit (--collection is then the sparse collection)."""
    from csrv2_vdb.diagnostics import LatentUsage
    from csrv2_vdb.head_store import encoder_for_collection, labels_for, load_head
    from csrv2_vdb.migrate import dense_reader, fidelity_report, sample_points, target_name

    if input is not None:
        with user_errors():
            for line in _drift(engine, store, api_key, collection, input, embedder, embed_cache).lines():
                typer.echo(line)
        return
    with user_errors(), _open(engine, store, api_key) as db:
        name = _served(db, target_name(collection, target))
        if head is None and load_head(db, name) is None:
            raise fail(f"{name!r} holds no stored head (migrated before heads were stored): name it with --head")
        encoder = encoder_for_collection(db, name, None, head=head)
        reader = dense_reader(db)
        _, held = sample_points(reader.read_dense(collection, vector), 0, holdout)
        fidelity = fidelity_report(reader, collection, db, name, encoder, held, vector=vector)
        labels, size = labels_for(db, name, head, encoder.identity), db.count(name)
    for line in fidelity.lines():
        typer.echo(line)
    if labels is not None:
        for line in LatentUsage.from_labels(labels).lines(size, labels):
            typer.echo(line)


def _drift(
    engine: str, store: str, api_key: str | None, collection: str, input: Path, embedder: str | None, cache: str | None
) -> Any:
    """check --input: the new documents' codes against the fit's (csrv2_vdb.drift)."""
    import numpy as np

    from csrv2_vdb.diagnostics import LatentUsage
    from csrv2_vdb.drift import code_fidelity, drift_report
    from csrv2_vdb.head_store import load_head
    from csrv2_vdb.records import iter_records

    with _open(engine, store, api_key) as db:
        collection = _served(db, collection)
        db.collection_info(collection)
        stored = load_head(db, collection)
    fit = (stored.report or {}).get("fit_fidelity") if stored else None
    if stored is None or fit is None or stored.labels is None:
        raise fail(f"{collection!r} holds no head fitted by `index` with its fit's figures (indexed with --head, "
                   "or before drift was recorded); drift compares against them")  # fmt: skip
    texts = [r["text"] for r in iter_records(input)]
    x = open_embedder_cached(embedder, cache).embed(texts, "document")
    codes = stored.encoder().encode_embeddings(x)
    active = codes.values > 0
    new_df = np.bincount(codes.indices[active], minlength=codes.dim).astype(np.float64)
    new = code_fidelity(stored.head, stored.k, x)
    return drift_report(fit, LatentUsage.from_labels(stored.labels), new, new_df)


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def filter_value(text: str) -> str | int | float | bool:
    """A --filter value: an integer, a float, true/false, or a string ("quoted" forces a string)."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


# `heads` (list, show) and `label`: the heads and what their latents mean (csrv2_vdb/cli_heads.py)
from csrv2_vdb.cli_heads import heads_app, label  # noqa: E402

app.add_typer(heads_app, name="heads")
# `refit`: a new head written as a new version of a collection, switched to, rolled back (csrv2_vdb/cli_refit.py)
from csrv2_vdb.cli_refit import refit  # noqa: E402

app.command()(refit)
app.command()(label)


# The harness commands (demo, eval, train, finetune, bench ...): the one import from the library into
# csrv2_vdb.benchmarks, so that the harnesses share the `csrv2-vdb` app.
from csrv2_vdb.benchmarks.cli import mount  # noqa: E402

mount(app)

if __name__ == "__main__":
    app()

"""`csrv2-vdb heads` (list, show) and `csrv2-vdb label`: the shipped heads, and what a head's latents mean."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from csrv2_vdb.cli_common import (
    ApiKeyOpt,
    EmbedCacheOpt,
    EmbedderOpt,
    EngineOpt,
    fail,
    open_embedder_cached,
    say,
    user_errors,
)
from csrv2_vdb.labels import LatentLabels

heads_app = typer.Typer(help="The shipped heads (no subcommand), or one head and its latents' labels (show).")

StoreOpt = Annotated[
    str | None, typer.Option("--store", help="A store holding --collection: use the head stored with it.")
]
CollectionOpt = Annotated[str | None, typer.Option("--collection", help="The collection whose stored head to use.")]
TopOpt = Annotated[int, typer.Option("--top", help="Latents listed: the ones that fire on the most texts.")]
SampleOpt = Annotated[int, typer.Option("--sample", help="Use at most this many texts of --input (a seeded sample).")]


@heads_app.callback(invoke_without_command=True)
def heads(ctx: typer.Context) -> None:
    """List the shipped heads: name, domain, what each was trained on, and its measured quality."""
    if ctx.invoked_subcommand is not None:
        return
    from csrv2_vdb.head import DEFAULT_HEAD, head_card, pretrained_heads

    for name in pretrained_heads():
        card = head_card(name)
        typer.echo(f"{name}{' (default)' if name == DEFAULT_HEAD else ''}")
        for label, key in (("domain", "domain"), ("trained on", "trained_on"), ("measured", "evaluation")):
            typer.echo(f"  {label}: {card.get(key, '?')}")
    typer.echo("All take all-MiniLM-L6-v2 embeddings (d=384). For best quality fit a head on your corpus: "
               "csrv2-vdb train --input docs.jsonl --out my-head")  # fmt: skip


@heads_app.command("show")
def show(
    head: Annotated[str | None, typer.Argument(help="A shipped head's name or a head directory.")] = None,
    store: StoreOpt = None,
    collection: CollectionOpt = None,
    engine: EngineOpt = "qdrant-edge",
    api_key: ApiKeyOpt = None,
    top: TopOpt = 20,
    input: Annotated[
        Path | None,
        typer.Option("--input", help="A corpus to label and measure the head over now (nothing is saved)."),
    ] = None,
    sample: SampleOpt = 20_000,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG of latent usage (sorted document frequency, log).")
    ] = None,
    embedder: EmbedderOpt = None,
    embed_cache: EmbedCacheOpt = None,
) -> None:
    """One head: its size and k, the labels of its most used latents (terms, texts fired on, an example), and
    its latent usage (dead and hot latents, postings a query reads, the latency per engine that follows); a
    head without labels says how to make them."""
    from csrv2_vdb.diagnostics import LatentUsage
    from csrv2_vdb.head import resolve_head

    size = None
    with user_errors():
        if head is not None:
            loaded, labels = resolve_head(head), (LatentLabels.load(head) if Path(head).is_dir() else None)
            typer.echo(f"head {head}")
            encoder = None
        else:
            stored, size = _stored(store, collection, engine, api_key)
            loaded, labels = stored.head, stored.labels
            typer.echo(f"head of {collection!r} ({size:,} documents): {stored.describe()}")
            encoder = stored.encoder
        if input is not None:
            from csrv2_vdb.encoder import CSRv2Encoder

            model = open_embedder_cached(embedder, embed_cache)
            coder = encoder(model) if encoder is not None else CSRv2Encoder(model, loaded)
            labels = _label_over(input, coder, sample)
    typer.echo(f"  {loaded.input_dim} -> {loaded.hidden_dim} latents, k = {loaded.k}")
    if labels is None:
        where = f"--head {head}" if head else f"--store {store} --collection {collection}"
        typer.echo(f"  no latent labels; make them with: csrv2-vdb label {where} --input corpus.jsonl")
        return
    _print_labels(labels, top)
    usage = LatentUsage.from_labels(labels)
    for line in usage.lines(size, labels):
        typer.echo(f"  {line}")
    if plot is not None:
        say(f"latent usage plotted in {usage.plot(plot)}")


def _label_over(input: Path, encoder: Any, sample: int) -> LatentLabels:
    """Labels of `encoder`'s latents over (a seeded sample of at most `sample` texts of) the corpus `input`."""
    import numpy as np

    from csrv2_vdb.labels import label_latents
    from csrv2_vdb.records import iter_records

    if sample < 2:
        raise fail(f"--sample must be at least 2, got {sample}")
    rows = [r["text"] for r in iter_records(input)]
    if len(rows) > sample:
        rows = [rows[i] for i in sorted(np.random.default_rng(0).permutation(len(rows))[:sample])]
    say(f"labelling {encoder.dim:,} latents over {len(rows):,} texts (k = {encoder.k})")
    return label_latents(rows, encoder.encode_documents(rows))


def _stored(store: str | None, collection: str | None, engine: str, api_key: str | None) -> tuple[Any, int]:
    """(the head stored with the collection, its document count); an error when either option is missing or
    it has none."""
    from csrv2_vdb.cli import _open, _served
    from csrv2_vdb.head_store import load_head

    if store is None or collection is None:
        raise fail("name a head (NAME or DIR), or --store and --collection for a collection's stored head")
    with _open(engine, store, api_key) as db:
        collection = _served(db, collection)
        size = db.count(collection)  # a missing collection is named as such
        stored = load_head(db, collection)
    if stored is None:
        raise fail(f"{collection!r} holds no stored head (indexed before heads were stored); name its head")
    return stored, size


def _print_labels(labels: LatentLabels, top: int) -> None:
    fired = len(labels.labels)
    typer.echo(f"  labels: {labels.method} over {labels.documents:,} texts; {fired:,} of {labels.hidden_dim:,} "
               f"latents fired on at least one, {labels.hidden_dim - fired:,} on none")  # fmt: skip
    for lab in labels.most_used(top):
        example = lab.examples[0] if lab.examples else ""
        typer.echo(f"  {lab.latent:>6}  {lab.df:>7,} texts  {', '.join(lab.terms[:6])}")
        typer.echo(f"          e.g. {example[:110]}")


def label(
    input: Annotated[Path, typer.Option("--input", help="The corpus: rows with a text field (any input format).")],
    head: Annotated[
        str | None, typer.Option("--head", help="A shipped head's name or a head directory (or --store/--collection).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for labels.json; default: the --head directory (a shipped head needs one)."),
    ] = None,
    store: StoreOpt = None,
    collection: CollectionOpt = None,
    engine: EngineOpt = "qdrant-edge",
    api_key: ApiKeyOpt = None,
    sample: SampleOpt = 20_000,
    embedder: EmbedderOpt = None,
    embed_cache: EmbedCacheOpt = None,
    top: TopOpt = 10,
) -> None:
    """Name each latent of a head by the terms that set the texts it fires on apart (class-based TF-IDF), with
    its document frequency and two example texts; saved beside the head, or with a collection's stored head."""
    from csrv2_vdb.encoder import CSRv2Encoder
    from csrv2_vdb.head import resolve_head

    if (head is None) == (store is None or collection is None):
        raise fail("give --head NAME|DIR, or --store and --collection (the collection's stored head), not both")
    if head is not None and out is None and not Path(head).is_dir():
        raise fail(f"{head!r} is a shipped head: say where labels.json goes with --out DIR")
    with user_errors():
        model = open_embedder_cached(embedder, embed_cache)
        if head is not None:
            encoder = CSRv2Encoder(model, resolve_head(head))
        else:
            encoder = _stored(store, collection, engine, api_key)[0].encoder(model)
        labels = _label_over(input, encoder, sample)
        if head is not None:
            folder = out or Path(head)
            folder.mkdir(parents=True, exist_ok=True)
            say(f"labels written to {labels.save(folder)}")
        else:
            from csrv2_vdb.cli import _open, _served
            from csrv2_vdb.head_store import save_labels

            assert store is not None and collection is not None
            with _open(engine, store, api_key) as db:
                save_labels(db, _served(db, collection), labels)
            say(f"labels stored with the head of {collection!r}")
    _print_labels(labels, top)

"""`csrv2-vdb refit`: a new head for a collection, written as a new version and switched to (csrv2_vdb.refit)."""

from __future__ import annotations

import hashlib
from typing import Annotated

import typer

from csrv2_vdb.cli_common import (
    ApiKeyOpt,
    BalanceOpt,
    CollectionOpt,
    EmbedCacheOpt,
    EmbedderOpt,
    EngineOpt,
    KOpt,
    fail,
    open_embedder_cached,
    say,
    user_errors,
)


def refit(
    store: Annotated[str, typer.Option("--store", help="Where the collection lives (see `index --help`).")],
    collection: CollectionOpt,
    engine: EngineOpt = "qdrant-edge",
    k: KOpt = None,
    text_field: Annotated[
        str, typer.Option("--text-field", help="Payload field holding each document's text (else: stored vectors).")
    ] = "text",
    fit_sample: Annotated[
        int, typer.Option("--fit-sample", help="Fit the new head on at most this many documents (a seeded sample).")
    ] = 50_000,
    holdout: Annotated[
        int,
        typer.Option(
            "--holdout", help="Other documents (at most a tenth) on which old and new head are compared with dense."
        ),
    ] = 500,
    fit_steps: Annotated[
        int | None, typer.Option("--fit-steps", help="Optimizer steps of the fit (default 1500, measured).")
    ] = None,
    balance: BalanceOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Documents per encode-and-upsert batch.")] = 256,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Fit nothing: switch the name back to the version before.")
    ] = False,
    drop_old: Annotated[
        bool, typer.Option("--drop-old", help="Fit nothing: drop the versions that no longer answer.")
    ] = False,
    embedder: EmbedderOpt = None,
    embed_cache: EmbedCacheOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Fit a new head on the collection's current documents (texts from the payloads, through the embedding
    cache, or stored dense vectors), write them into a new version of the collection (resumable: a killed refit
    is finished by running it again), print old and new head against dense on held-out documents, then switch
    the name clients query to the new version in one write. Searches running meanwhile go on, each on one
    version with its own head. The old version is kept: --rollback switches back, --drop-old drops it."""
    from csrv2_vdb import refit as refitting
    from csrv2_vdb.cli import _fit_overrides, _open, _store_identity
    from csrv2_vdb.embed_cache import default_cache_dir
    from csrv2_vdb.versions import drop_old as drop_versions
    from csrv2_vdb.versions import read

    if rollback and drop_old:
        raise fail("--rollback and --drop-old are separate steps: run one, then the other")
    with user_errors(), _open(engine, store, api_key) as db:
        if rollback:
            say(f"{collection}: {refitting.rollback(db, collection)} answers again")
        elif drop_old:
            dropped = drop_versions(db, collection)
            say(f"{collection}: dropped {', '.join(dropped) or 'nothing (no old version kept)'}")
        else:
            key = hashlib.sha256(f"{_store_identity(engine, store)}|{collection}".encode()).hexdigest()[:16]
            checkpoint = default_cache_dir() / "refit" / f"{collection}-{key}.checkpoint"
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            report = refitting.refit(
                db, collection, open_embedder_cached(embedder, embed_cache), text_field=text_field,
                fit_sample=fit_sample, holdout=holdout, k=k, batch_size=batch_size, checkpoint=checkpoint,
                fit_overrides=_fit_overrides(fit_steps, balance), log=say,
            )  # fmt: skip
            for line in report.lines():
                typer.echo(line)
        state = read(db, collection)
        for line in state.lines() if state is not None else []:
            typer.echo(line)

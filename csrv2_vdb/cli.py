"""`csrv2-vdb`: encode, index, search, train-head and the demo, from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from csrv2_vdb.errors import CSRv2Error

app = typer.Typer(
    help="Ultra-sparse CSRv2 embeddings in vector databases: texts -> dense -> k-sparse -> engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

HeadOpt = Annotated[
    Path, typer.Option("--head", help="Head directory (config.json + model.safetensors) from train-head.")
]
KOpt = Annotated[int | None, typer.Option("--k", help="Active dims per vector; default: the head's own k.")]
BackboneOpt = Annotated[
    str | None, typer.Option("--backbone", help="Backbone model directory; default: the offline all-MiniLM-L6-v2.")
]
StoreOpt = Annotated[Path, typer.Option("--store", help="Embedded qdrant-edge store directory.")]
CollectionOpt = Annotated[str, typer.Option("--collection", help="Collection name.")]


def _encoder(head: Path, backbone: str | None, k: int | None):
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.encoder import CSRv2Encoder

    return CSRv2Encoder.load(head, Backbone(backbone), k)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(2)


@app.command()
def encode(
    input: Annotated[Path, typer.Option("--input", help=".txt (one text per line) or .jsonl with id/text fields.")],
    head: HeadOpt,
    output: Annotated[Path, typer.Option("--output", help="JSON lines: {id, indices, values}.")],
    k: KOpt = None,
    kind: Annotated[str, typer.Option("--kind", help="query or document (selects the backbone prompt).")] = "document",
    backbone: BackboneOpt = None,
) -> None:
    """Encode texts into k-sparse vectors and write them as JSON lines."""
    from csrv2_vdb.data import read_records

    try:
        records = read_records(input)
        enc = _encoder(head, backbone, k)
        texts = [r["text"] for r in records]
        batch = enc.encode_queries(texts) if kind == "query" else enc.encode_documents(texts)
    except (CSRv2Error, ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    with open(output, "w") as f:
        for rec, (idx, val) in zip(records, batch.rows(), strict=True):
            f.write(json.dumps({"id": rec["id"], "indices": idx, "values": val}) + "\n")
    console.print(f"wrote {len(records)} vectors (k={enc.k}, dim={enc.dim}) to {output}")


@app.command()
def index(
    input: Annotated[Path, typer.Option("--input", help=".jsonl (id, text, other fields become payload) or .txt.")],
    head: HeadOpt,
    store: StoreOpt,
    collection: CollectionOpt,
    k: KOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Documents per encode-and-upsert batch.")] = 256,
    backbone: BackboneOpt = None,
) -> None:
    """Encode documents and upsert them into a sparse collection (re-running overwrites, never duplicates)."""
    from tqdm.auto import tqdm

    from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore
    from csrv2_vdb.data import read_records

    try:
        records = read_records(input)
        enc = _encoder(head, backbone, k)
        with QdrantEdgeStore(store) as db:
            db.create_collection(collection, sparse_dim=enc.dim, exist_ok=True)
            with tqdm(total=len(records), desc=f"index {collection}", unit="doc") as bar:
                for start in range(0, len(records), batch_size):
                    part = records[start : start + batch_size]
                    sparse = enc.encode_documents([r["text"] for r in part])
                    payloads = [{key: v for key, v in r.items() if key != "id"} for r in part]
                    db.upsert(collection, [r["id"] for r in part], sparse=sparse, payloads=payloads)
                    bar.update(len(part))
            total = db.count(collection)
    except (CSRv2Error, ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    console.print(f"{collection}: {total} documents in {store}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Query text.")],
    head: HeadOpt,
    store: StoreOpt,
    collection: CollectionOpt,
    k: KOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Hits to return.")] = 5,
    filter: Annotated[
        list[str] | None, typer.Option("--filter", help="field=value payload filter; repeatable.")
    ] = None,
    backbone: BackboneOpt = None,
) -> None:
    """Search a sparse collection with a text query; prints JSON hits (id, score, payload)."""
    from csrv2_vdb.adapters.qdrant_edge import QdrantEdgeStore

    conditions = {}
    for item in filter or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise _fail(ValueError(f"--filter {item!r} must look like field=value"))
        conditions[key] = value
    try:
        enc = _encoder(head, backbone, k)
        with QdrantEdgeStore(store) as db:
            hits = db.search(collection, enc.encode_queries([query]), limit=limit, filter=conditions or None)[0]
    except (CSRv2Error, ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    for hit in hits:
        typer.echo(json.dumps({"id": hit.id, "score": round(hit.score, 6), "payload": hit.payload}))


@app.command("train-head")
def train_head_cmd(
    input: Annotated[
        Path, typer.Option("--input", help=".txt / .jsonl texts, or a .npy array of backbone embeddings.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the head to.")],
    k: Annotated[int, typer.Option("--k", help="Active dims the head is trained for.")] = 32,
    hidden_dim: Annotated[int | None, typer.Option("--hidden-dim", help="Latents h; default 4 x backbone dim.")] = None,
    epochs: Annotated[int, typer.Option("--epochs")] = 10,
    lr: Annotated[float, typer.Option("--lr")] = 1e-4,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 128,
    seed: Annotated[int, typer.Option("--seed")] = 1227,
    backbone: BackboneOpt = None,
) -> None:
    """Train a sparse head (reconstruction k + 4k/8 + aux) on a frozen backbone's embeddings."""
    import numpy as np

    from csrv2_vdb.training.trainer import HeadTrainConfig, train_head

    try:
        if input.suffix == ".npy":
            x = np.load(input)
        else:
            from csrv2_vdb.backbone import Backbone
            from csrv2_vdb.data import read_records

            x = Backbone(backbone).embed([r["text"] for r in read_records(input)], "document")
        config = HeadTrainConfig(k=k, hidden_dim=hidden_dim, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        result = train_head(x, config)
    except (CSRv2Error, ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    result.head.save(out)
    (out / "training.json").write_text(json.dumps(result.summary(), indent=2))
    console.print(f"head (d={result.head.input_dim}, h={result.head.hidden_dim}, k={k}) written to {out}")


@app.command()
def demo(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Folder holding graphrag-bench/; default ../shared/data or $CSRV2_DATA."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where the store, CSV and PNG go.")] = Path("demo-output"),
    cache: Annotated[Path, typer.Option("--cache", help="Embedding and head cache.")] = Path(".cache/csrv2-vdb"),
    ks: Annotated[str, typer.Option("--ks", help="Comma-separated sparse k values.")] = "2,4,8,32",
    dims: Annotated[str, typer.Option("--dims", help="Comma-separated MRL dims.")] = "2,4,8,32",
    max_questions: Annotated[
        int | None, typer.Option("--max-questions", help="Use only the first N questions.")
    ] = None,
) -> None:
    """GraphRAG-Bench medical: sparse CSRv2 (k) vs MRL dense (dims) in embedded Qdrant; prints one table."""
    from csrv2_vdb.data import find_data_dir
    from csrv2_vdb.demo import run_demo

    try:
        run_demo(
            data or find_data_dir(),
            out,
            cache,
            ks=[int(v) for v in ks.split(",")],
            dims=[int(v) for v in dims.split(",")],
            max_questions=max_questions,
            console=Console(),
        )
    except (CSRv2Error, ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from exc

"""`csrv2-vdb`: encode, index, search, train heads, evaluate and benchmark, from the shell.

Errors a user can fix (bad input, missing data or collection, a locked store) print one line and exit 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from csrv2_vdb.credentials import redact
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
CollectionOpt = Annotated[str, typer.Option("--collection", help="Collection name.")]


def _encoder(head: Path, backbone: str | None, k: int | None):
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.encoder import CSRv2Encoder

    return CSRv2Encoder.load(head, Backbone(backbone), k)


def _fail(exc: Exception) -> typer.Exit:
    console.print(Text.assemble(("error: ", "bold red"), redact(str(exc))), soft_wrap=True)
    return typer.Exit(2)


def _say(message: str) -> None:
    console.print(Text(redact(message)), soft_wrap=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the errors a user can act on into a one-line message and exit code 2 (no traceback)."""
    try:
        yield
    except (CSRv2Error, ValueError, FileNotFoundError) as exc:
        raise _fail(exc) from exc


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

    if kind not in ("query", "document"):
        raise _fail(ValueError(f"--kind must be 'query' or 'document', got {kind!r}"))
    with _user_errors():
        records = read_records(input)
        enc = _encoder(head, backbone, k)
        texts = [r["text"] for r in records]
        batch = enc.encode_queries(texts) if kind == "query" else enc.encode_documents(texts)
    with open(output, "w") as f:
        for rec, (idx, val) in zip(records, batch.rows(), strict=True):
            f.write(json.dumps({"id": rec["id"], "indices": idx, "values": val}) + "\n")
    _say(f"wrote {len(records)} vectors (k={enc.k}, dim={enc.dim}) to {output}")


EngineOpt = Annotated[
    str, typer.Option("--engine", help="qdrant-edge (embedded), qdrant (server URL), milvus or elasticsearch.")
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="Engine API key (Qdrant, Elasticsearch) or token (Milvus); default: CSRV2_QDRANT_API_KEY, "
        "CSRV2_ES_API_KEY (or CSRV2_ES_USERNAME/CSRV2_ES_PASSWORD), CSRV2_MILVUS_TOKEN. Never printed.",
        show_default=False,
    ),
]


def _open(engine: str, store: str, api_key: str | None):
    """open_store with the credential option each engine names (an explicit key beats the environment)."""
    from csrv2_vdb.adapters import open_store

    if api_key is None:
        return open_store(engine, store)
    return open_store(engine, store, **{"token" if engine == "milvus" else "api_key": api_key})


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
    head: Annotated[Path | None, typer.Option("--head", help="Head directory: index sparse codes.")] = None,
    mrl_dims: Annotated[
        int | None, typer.Option("--mrl-dims", help="Instead of a head: index MRL-truncated dense vectors.")
    ] = None,
    engine: EngineOpt = "qdrant-edge",
    k: KOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Documents per encode-and-upsert batch.")] = 256,
    writers: Annotated[int, typer.Option("--writers", help="Threads writing batches to the engine.")] = 2,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Resume file; default: <input>.<collection>.checkpoint.")
    ] = None,
    backbone: BackboneOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Encode documents and upsert them; re-running overwrites, and a killed run resumes from its checkpoint."""
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.bulk import bulk_index
    from csrv2_vdb.data import iter_records
    from csrv2_vdb.encoder import MRLEncoder

    if (head is None) == (mrl_dims is None):
        raise _fail(ValueError("give exactly one of --head (sparse) or --mrl-dims (dense baseline)"))
    checkpoint = checkpoint or input.with_name(f"{input.name}.{collection}.checkpoint")
    with _user_errors():
        if head is not None:
            sparse_enc = _encoder(head, backbone, k)
            encode, dims = sparse_enc.encode_documents, {"sparse_dim": sparse_enc.dim}
            encoder_id, base, active = f"head:{sparse_enc.head.fingerprint()}", sparse_enc.backbone, sparse_enc.k
        else:
            dense_enc = MRLEncoder(Backbone(backbone), mrl_dims or 0)
            encode, dims = dense_enc.encode_documents, {"dense_dim": dense_enc.dims}
            encoder_id, base, active = f"mrl:{dense_enc.dims}", dense_enc.backbone, dense_enc.dims
        total = sum(1 for _ in iter_records(input))  # also checks every record before anything is written
        stat = input.stat()
        run = {
            "engine": engine, "store": _store_identity(engine, store), "encoder": encoder_id, "k": active,
            "backbone": base.fingerprint("document"), "input": f"{input.resolve()}:{stat.st_size}:{stat.st_mtime_ns}",
        }  # fmt: skip
        with _open(engine, store, api_key) as db:
            db.create_collection(collection, exist_ok=True, **dims)
            try:
                report = bulk_index(
                    db, collection, iter_records(input), encode, batch_size=batch_size, checkpoint=checkpoint,
                    run=run, writers=writers, total=total, log=_say,
                )  # fmt: skip
            except KeyboardInterrupt:
                _say(f"interrupted: committed batches are recorded in {checkpoint}; re-run the same command to resume")
                raise typer.Exit(130) from None
            optimize = getattr(db, "optimize", None)  # qdrant-edge: merge segments, build the immutable index
            if callable(optimize):
                optimize(collection)
            count = db.count(collection)
    _say(
        f"{collection}: {count} documents in {store} ({report.rows_written} written at "
        f"{report.rows_per_second:.0f} rows/s, {report.batches_skipped} batches resumed, {report.retries} retries)"
    )


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Query text.")],
    head: HeadOpt,
    store: Annotated[str, typer.Option("--store", help="Where the collection lives (see `index --help`).")],
    collection: CollectionOpt,
    engine: EngineOpt = "qdrant-edge",
    k: KOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Hits to return.")] = 5,
    filter: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="field=value payload filter, repeatable. Numbers and true/false match as such; quote a value "
            "(year='\"2020\"') to match it as a string.",
        ),
    ] = None,
    backbone: BackboneOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """Search a sparse collection with a text query; prints JSON hits (id, score, payload)."""
    conditions = {}
    for item in filter or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _fail(ValueError(f"--filter {item!r} must look like field=value"))
        conditions[key] = filter_value(value)
    with _user_errors():
        enc = _encoder(head, backbone, k)
        with _open(engine, store, api_key) as db:
            hits = db.search(collection, enc.encode_queries([query]), limit=limit, filter=conditions or None)[0]
    for hit in hits:
        typer.echo(json.dumps({"id": hit.id, "score": round(hit.score, 6), "payload": hit.payload}))


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

    with _user_errors():
        if input.suffix == ".npy":
            x = np.load(input)
        else:
            from csrv2_vdb.backbone import Backbone
            from csrv2_vdb.data import read_records

            x = Backbone(backbone).embed([r["text"] for r in read_records(input, require_ids=False)], "document")
        config = HeadTrainConfig(k=k, hidden_dim=hidden_dim, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        result = train_head(x, config)
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

    with _user_errors():
        run_demo(
            data or find_data_dir(),
            out,
            cache,
            ks=[int(v) for v in ks.split(",")],
            dims=[int(v) for v in dims.split(",")],
            max_questions=max_questions,
            console=Console(),
        )


DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Folder holding graphrag-bench/ and banking77/; default ../shared/data.")
]
CacheOpt = Annotated[Path, typer.Option("--cache", help="Embedding and head cache.")]


@app.command()
def train(
    method: Annotated[str, typer.Option("--method", help="csr, csrv2, plain (reconstruction only) or mrl.")],
    task: Annotated[str, typer.Option("--task", help="banking77 (intent labels) or medical (question-chunk labels).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the head (or Matryoshka projection).")],
    k: Annotated[int | None, typer.Option("--k", help="Target active dims (CSR/CSRv2).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="JSON config; flags given here override it.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs")] = None,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")] = 200,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from <out>/checkpoint.pt.")] = False,
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """Train a CSR / CSRv2 head or a Matryoshka projection on cached frozen-backbone embeddings of a task."""
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.data import find_data_dir
    from csrv2_vdb.reproduction import banking_task, medical_task

    builders = {"banking77": banking_task, "medical": medical_task}
    if task not in builders or method not in ("csr", "csrv2", "plain", "mrl"):
        raise _fail(ValueError(f"--task must be one of {sorted(builders)}; --method one of csr, csrv2, plain, mrl"))
    with _user_errors():
        rows = builders[task](data or find_data_dir(), Backbone(), cache)
        if method == "mrl":
            from csrv2_vdb.training.mrl import train_matryoshka

            projection, summary = train_matryoshka(rows.train_x, rows.train_y)
            projection.save(out)
        else:
            from csrv2_vdb.training.trainer import HeadTrainConfig, train_head

            settings = HeadTrainConfig.load(config, method=method, k=k, epochs=epochs, lr=lr, seed=seed)
            result = train_head(
                rows.train_x, settings, rows.train_y if method == "csrv2" else None,
                checkpoint_dir=out, checkpoint_every=checkpoint_every, resume=resume,
            )  # fmt: skip
            result.head.save(out)
            settings.save(out / "training-config.json")
            summary = result.summary()
    (out / "training.json").write_text(json.dumps(summary, indent=2))
    console.print(f"{method} for {task} written to {out}")


@app.command("eval")
def evaluate(
    out: Annotated[Path, typer.Option("--out", help="Where results.csv/.md/.png go.")] = Path("docs/reproduction"),
    ks: Annotated[str, typer.Option("--ks", help="Comma-separated k for CSR and CSRv2.")] = "2,4,8,16,32,64",
    dims: Annotated[str, typer.Option("--dims", help="Comma-separated MRL dims.")] = "2,4,8,16,32,64",
    tasks: Annotated[str, typer.Option("--tasks", help="banking77 and/or medical.")] = "banking77,medical",
    epochs: Annotated[int, typer.Option("--epochs", help="Head training epochs (same for CSR and CSRv2).")] = 10,
    lr: Annotated[float, typer.Option("--lr", help="Head learning rate (same for CSR and CSRv2).")] = 1e-3,
    backbone: BackboneOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """CSRv2 vs CSR vs MRL at each k: classification, clustering, retrieval, dead latents (trains what is missing)."""
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.data import find_data_dir
    from csrv2_vdb.reproduction import run_reproduction
    from csrv2_vdb.training.trainer import HeadTrainConfig

    with _user_errors():
        run_reproduction(
            data or find_data_dir(), out, cache, backbone=Backbone(backbone),
            ks=[int(v) for v in ks.split(",")], dims=[int(v) for v in dims.split(",")], tasks=tasks.split(","),
            config=HeadTrainConfig(lr=lr, epochs=epochs), console=Console(),
        )  # fmt: skip


@app.command()
def finetune(
    task: Annotated[str, typer.Option("--task", help="banking77 (same-intent pairs) or medical (question, chunk).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the finetuned backbone (sentence-transformers).")],
    pairs: Annotated[int, typer.Option("--pairs", help="Training pairs (at most).")] = 20_000,
    epochs: Annotated[int, typer.Option("--epochs")] = 1,
    lr: Annotated[float, typer.Option("--lr")] = 1e-4,
    backbone: BackboneOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """LoRA-finetune the backbone (MultipleNegativesRanking loss) on a task's label pairs; then `eval --backbone`."""
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.data import find_data_dir
    from csrv2_vdb.reproduction import task_pairs
    from csrv2_vdb.training.finetune import FinetuneConfig, finetune_backbone

    with _user_errors():
        base = Backbone(backbone)
        texts = task_pairs(task, data or find_data_dir(), pairs)
        finetune_backbone(base, texts, out, FinetuneConfig(epochs=epochs, lr=lr, max_pairs=pairs))
    console.print(f"finetuned backbone ({len(texts)} pairs) written to {out}")


bench_app = typer.Typer(help="Benchmarks and evaluation harnesses.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("graphrag")
def bench_graphrag(
    out: Annotated[Path, typer.Option("--out", help="Where scores.csv/.md/.png and the store go.")] = Path(
        "docs/graphrag-bench"
    ),
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated csrv2:K, csr:K, mrl:DIMS, dense.")] = (
        "csrv2:8,csrv2:32,mrl:8,mrl:32,dense"
    ),
    engine: EngineOpt = "qdrant-edge",
    store: Annotated[str | None, typer.Option("--store", help="Engine location; default <out>/store.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Chunks retrieved per question.")] = 5,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Words per chunk.")] = 150,
    overlap: Annotated[int, typer.Option("--overlap", help="Words shared by neighbouring chunks.")] = 30,
    per_type: Annotated[int | None, typer.Option("--per-type", help="At most N questions per type.")] = None,
    llm: Annotated[bool, typer.Option("--llm", help="Also run the LLM-judged metrics (CSRV2_LLM_* settings).")] = False,
    llm_base_url: Annotated[str | None, typer.Option("--llm-base-url", help="OpenAI-compatible endpoint.")] = None,
    llm_model: Annotated[str | None, typer.Option("--llm-model")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Parallel LLM calls.")] = 4,
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """GraphRAG-Bench medical: sparse CSRv2/CSR vs MRL/dense collections, scored per question type."""
    from csrv2_vdb.data import find_data_dir
    from csrv2_vdb.graphrag import run_graphrag
    from csrv2_vdb.llm import ChatClient, LLMSettings

    client = None
    if llm:
        settings = LLMSettings(concurrency=concurrency)
        settings.base_url = llm_base_url or settings.base_url
        settings.model = llm_model or settings.model
        client = ChatClient(settings, cache / "llm")
    try:
        with _user_errors():
            run_graphrag(
                data or find_data_dir(), out, cache, methods.split(","), engine=engine, location=store, top_k=top_k,
                chunk_size=chunk_size, overlap=overlap, per_type=per_type, client=client, console=Console(),
            )  # fmt: skip
    finally:
        if client is not None:
            client.close()


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise _fail(ValueError(f"{what}: expected comma-separated integers, got {text!r}")) from None
    if not values or min(values) < 1:
        raise _fail(ValueError(f"{what}: expected positive integers, got {text!r}"))
    return values


def _size_label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _command_line() -> str:
    import sys

    return " ".join(["csrv2-vdb", *sys.argv[1:]])


@bench_app.command("retrieval")
def bench_retrieval(
    n: Annotated[int, typer.Option("--n", help="Documents per collection (synthetic, drawn like MiniLM's).")] = (
        1_000_000
    ),
    ks: Annotated[str, typer.Option("--ks", help="Sparse k values.")] = "2,4,8,16,32,64",
    dims: Annotated[str, typer.Option("--dims", help="MRL dims (the full 384 is always included).")] = "8,16,32,64",
    targets: Annotated[
        str, typer.Option("--targets", help="Any of qdrant-edge, milvus-lite, qdrant-local, numpy, numpy-accumulator.")
    ] = "qdrant-edge,milvus-lite,numpy",
    queries: Annotated[int, typer.Option("--queries", help="Timed single queries per config and round.")] = 200,
    batch: Annotated[int, typer.Option("--batch", help="Queries in the timed batch call.")] = 256,
    repeats: Annotated[int, typer.Option("--repeats", help="Rounds; every ratio is reported over them.")] = 3,
    components: Annotated[
        int, typer.Option("--components", help="Gaussian mixture components (1: one Gaussian).")
    ] = 256,
    full: Annotated[bool, typer.Option("--full/--no-full", help="Include the full 384-dim dense vectors.")] = True,
    even_control: Annotated[
        bool, typer.Option("--even-control", help="Also time the smallest k's codes on uniformly drawn latents.")
    ] = False,
    real_rows: Annotated[
        int | None, typer.Option("--real-rows", help="Real chunks/questions to embed for the fit; default all.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for retrieval-<n>.json/.md/.png.")] = Path(
        "docs/benchmarks"
    ),
    name: Annotated[str | None, typer.Option("--name", help="File stem; default retrieval-<n>.")] = None,
    work: Annotated[Path, typer.Option("--work", help="Where the engines write (removed after).")] = Path(
        ".cache/csrv2-vdb/bench-work"
    ),
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """Latency, throughput, bytes and recall of sparse k vs MRL dims vs dense, per engine, side by side."""
    from csrv2_vdb.bench import report as rep
    from csrv2_vdb.bench.retrieval import RetrievalSettings, run_retrieval_bench
    from csrv2_vdb.bench.targets import TARGETS
    from csrv2_vdb.data import find_data_dir

    chosen = tuple(t.strip() for t in targets.split(",") if t.strip())
    unknown = sorted(set(chosen) - set(TARGETS))
    if unknown or not chosen:
        raise _fail(ValueError(f"--targets: unknown {unknown or targets!r}; choose from {', '.join(TARGETS)}"))
    if min(n, queries, batch, repeats, components) < 1:
        raise _fail(ValueError("--n, --queries, --batch, --repeats and --components must be at least 1"))
    settings = RetrievalSettings(
        n=n, ks=_ints(ks, "--ks"), dims=_ints(dims, "--dims"), targets=chosen, queries=queries, batch=batch,
        repeats=repeats, components=components, floor_rows=min(1_000, n), real_rows=real_rows,
        even_control=even_control, full=full,
    )  # fmt: skip
    stem = out / (name or f"retrieval-{_size_label(n)}")
    with _user_errors():
        result = run_retrieval_bench(
            settings, data or find_data_dir(), cache, work, stem.with_suffix(".json"), Console()
        )
    text = rep.markdown(result, _command_line())
    stem.with_suffix(".md").write_text(text)
    rep.plot(result, stem.with_suffix(".png"), Path("docs/reproduction/results.csv"))
    Console().print(text)
    console.print(f"results in {stem}.json, .md and .png")


@bench_app.command("encoder")
def bench_encoder(
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Batch sizes to time.")] = "1,8,32,64,128,256",
    texts: Annotated[int, typer.Option("--texts", help="Texts timed per batch size.")] = 256,
    k: Annotated[int, typer.Option("--k", help="Active dims the head keeps.")] = 32,
    out: Annotated[Path, typer.Option("--out", help="Folder for encoder.json/.md.")] = Path("docs/benchmarks"),
    data: DataOpt = None,
) -> None:
    """Texts/s of the backbone alone and with the sparse head, per batch size."""
    from csrv2_vdb.bench.encoder import EncoderSettings, markdown, run_encoder_bench
    from csrv2_vdb.data import find_data_dir

    settings = EncoderSettings(batch_sizes=_ints(batch_sizes, "--batch-sizes"), texts_per_size=texts, k=k)
    with _user_errors():
        rows = run_encoder_bench(settings, data or find_data_dir())
    out.mkdir(parents=True, exist_ok=True)
    (out / "encoder.json").write_text(json.dumps(rows, indent=1))
    text = markdown(rows, settings, _command_line())
    (out / "encoder.md").write_text(text)
    Console().print(text)


if __name__ == "__main__":
    app()

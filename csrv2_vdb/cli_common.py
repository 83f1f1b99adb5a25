"""What the `csrv2-vdb` commands share: the app's error handling and console, and the options named alike.

Errors a user can fix (bad input, missing data or collection, a locked store) print one line, with any
credential redacted, and exit 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from csrv2_vdb.adapters import ENGINES
from csrv2_vdb.credentials import redact
from csrv2_vdb.embedders import Embedder
from csrv2_vdb.errors import CSRv2Error, InvalidArgumentError

console = Console(stderr=True)

HeadOpt = Annotated[
    str | None,
    typer.Option(
        "--head",
        help="Head directory (from `csrv2-vdb train`) or a shipped head's name (`csrv2-vdb heads`); default: "
        "the general head. A head fitted on your corpus gives the best quality.",
    ),
]
NormalizeOpt = Annotated[
    bool | None,
    typer.Option(
        "--normalize/--no-normalize",
        help="L2-normalise the codes so the engine's dot product ranks by cosine (default: on; measured better "
        "or equal at every k). A collection records it, and search follows the collection when not given.",
        show_default=False,
    ),
]
KOpt = Annotated[int | None, typer.Option("--k", help="Active dims per vector; default: the head's own k.")]
BalanceOpt = Annotated[
    float | None,
    typer.Option(
        "--balance",
        min=0.0,
        help="Weight of a term that evens out latent use while fitting (shorter posting lists); default 0 (off): "
        "measured in docs/quality.md, 'Balance as a lever'.",
    ),
]
EmbedderOpt = Annotated[
    str | None,
    typer.Option(
        "--embedder",
        "--backbone",
        help="Dense embedder: a transformers model directory or hub name; st:NAME (sentence-transformers); "
        "openai:MODEL[@DIMS] (an OpenAI-compatible endpoint: CSRV2_EMBED_BASE_URL or OPENAI_BASE_URL, key in "
        "CSRV2_EMBED_API_KEY or OPENAI_API_KEY, never printed). Default: the offline all-MiniLM-L6-v2.",
    ),
]
EmbedCacheOpt = Annotated[
    str | None,
    typer.Option(
        "--embed-cache",
        help="Embedding cache (SQLite file) shared by index, encode, train and eval, or 'off'; default "
        "$CSRV2_CACHE_DIR/embeddings.sqlite, else ~/.cache/csrv2-vdb/embeddings.sqlite.",
    ),
]
CollectionOpt = Annotated[str, typer.Option("--collection", help="Collection name.")]
EngineOpt = Annotated[str, typer.Option("--engine", help=f"One of {', '.join(ENGINES)} (qdrant-edge is embedded).")]
DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Folder holding graphrag-bench/ and banking77/; default ../shared/data.")
]
CacheOpt = Annotated[Path, typer.Option("--cache", help="Embedding and head cache.")]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="Engine API key (Qdrant, Elasticsearch) or token (Milvus); default: CSRV2_QDRANT_API_KEY, "
        "CSRV2_ES_API_KEY (or CSRV2_ES_USERNAME/CSRV2_ES_PASSWORD), CSRV2_MILVUS_TOKEN. Never printed.",
        show_default=False,
    ),
]


def open_embedder_cached(spec: str | None, cache: str | None) -> Embedder:
    """The embedder `spec` names (see EmbedderOpt) behind the embedding cache unless `cache` is 'off'."""
    from csrv2_vdb.embed_cache import CachedEmbedder
    from csrv2_vdb.embedders import open_embedder

    model, _, dims = (spec or "").partition("@") if (spec or "").startswith("openai:") else (spec, "", "")
    if dims and not dims.isdigit():
        raise InvalidArgumentError(f"--embedder {spec!r}: the part after @ is the vector size, a positive integer")
    embedder = open_embedder(model, dimensions=int(dims) if dims else None)
    return embedder if cache == "off" else CachedEmbedder(embedder, cache)


def fail(exc: Exception | str) -> typer.Exit:
    """Print `exc` (an error or a message) as one redacted line; the caller raises the returned exit (code 2)."""
    console.print(Text.assemble(("error: ", "bold red"), redact(str(exc))), soft_wrap=True)
    return typer.Exit(2)


def say(message: str) -> None:
    console.print(Text(redact(message)), soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can act on into a one-line message and exit code 2 (no traceback)."""
    try:
        yield
    except CSRv2Error as exc:  # every error the package raises on bad input derives from it
        raise fail(exc) from exc
    except Exception as exc:
        if not _client_error(exc):
            raise
        # A connection the engine client could not make or keep (a wrong host, a server down): one line.
        raise fail(f"the engine client failed ({type(exc).__name__}): {_first_line(exc)}") from exc


_CLIENT_MODULES = ("grpc", "httpx", "httpcore", "elastic_transport", "elasticsearch", "pymilvus", "qdrant_client",
                   "psycopg", "psycopg_pool")  # fmt: skip


def _client_error(exc: Exception) -> bool:
    """A connection or protocol error raised by an engine client (not a bug of this package)."""
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, ConnectionError | TimeoutError) or module in _CLIENT_MODULES


def _first_line(exc: Exception) -> str:
    details = getattr(exc, "details", None)  # grpc errors keep their message here
    text = details() if callable(details) else str(exc)
    return (text or type(exc).__name__).strip().splitlines()[0][:300]

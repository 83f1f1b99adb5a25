"""Haystack: sparse embedder components producing Haystack `SparseEmbedding`s from CSRv2 codes.

    indexing = Pipeline()
    indexing.add_component("sparse", CSRv2SparseDocumentEmbedder())         # fits a head on the documents
    indexing.add_component("writer", DocumentWriter(store))                  # store = QdrantDocumentStore(...)
    querying.add_component("sparse", CSRv2SparseTextEmbedder(document_store=store))  # finds that head
    querying.add_component("retriever", QdrantSparseEmbeddingRetriever(document_store=store))
    querying.connect("sparse.sparse_embedding", "retriever.query_sparse_embedding")

Both take what they need as plain settings (a head directory or shipped name, an embedder spec as for the CLI's
`--embedder`, k, normalize), so pipelines serialise with `to_dict`; the encoder loads in `warm_up`. Pass
`sparse_idf=False` (the default) to QdrantDocumentStore: IDF would re-weight the codes.

With no head named, the document embedder fits a label-free head on the documents of its first run, exactly as
`csrv2-vdb index` does on the same texts (at least MIN_FIT_ROWS of them; fewer: the general head, said in the
log), and saves it under `heads_dir` (default: the cache directory's `heads/`, one folder per head) so that other
components find it; from then on its `head` setting is that folder (what `to_dict` writes).

The head travels with the documents: the document embedder writes its encoder identity into each document's
`meta["csrv2_encoder"]`. A component given `document_store=` and no head codes with the head that coded the
store's documents (found under `heads_dir` by that identity); one given a head refuses, at warm-up, a store coded
by another. Without `document_store` and `head`, a text embedder codes with the general head: name one of the two.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import SparseEmbedding

from csrv2_vdb.encoder import CSRv2Encoder, identity_head_hash, writes_normalized
from csrv2_vdb.errors import DataNotFoundError, EncoderMismatchError

logger = logging.getLogger(__name__)
ENCODER_META = "csrv2_encoder"  # the meta field naming the head that coded a document


def default_heads_dir() -> Path:
    """Where document embedders save the heads they fit: the cache directory's `heads/`."""
    from csrv2_vdb.embed_cache import default_cache_dir

    return default_cache_dir() / "heads"


def store_identities(document_store: Any) -> list[str]:
    """The encoder identities found in a Haystack document store's `meta["csrv2_encoder"]` (at most two)."""
    unique = getattr(document_store, "get_metadata_field_unique_values", None)
    if unique is not None:
        values, _ = unique(ENCODER_META, size=2)
        return [str(v) for v in values if v is not None]
    found = {d.meta.get(ENCODER_META) for d in document_store.filter_documents()}
    return sorted(str(v) for v in found if v is not None)[:2]


class _CSRv2Component:
    """Settings, serialisation, the lazily loaded encoder and the store's head, shared by the two embedders."""

    def __init__(
        self,
        head: str | None = None,
        embedder: str | None = None,
        k: int | None = None,
        normalize: bool = True,
        document_store: Any = None,
        heads_dir: str | None = None,
    ) -> None:
        self.head, self.embedder, self.k, self.normalize = head, embedder, k, normalize
        self.document_store, self.heads_dir = document_store, heads_dir
        self.encoder: CSRv2Encoder | None = None
        self._model: Any = None

    def warm_up(self) -> None:
        """Load the embedder and the head (once): the named one, else the one that coded `document_store`."""
        if self.encoder is not None:
            return
        from csrv2_vdb.embedders import open_embedder

        if self._model is None:
            self._model = open_embedder(self.embedder)
        if self.head is None and self.document_store is not None:
            self._adopt_store_head()
        if self.head is None and self._fits():
            return  # the document embedder decides at its first run
        self.encoder = CSRv2Encoder.load(self.head, self._model, self.k, self.normalize)
        self._check_store()

    def _fits(self) -> bool:
        """Whether a component with no head fits one on its first documents (the document embedder)."""
        return False

    def _heads(self) -> Path:
        return Path(self.heads_dir) if self.heads_dir else default_heads_dir()

    def _adopt_store_head(self) -> None:
        """Name the head that coded the store's documents: a folder of `heads_dir` by its identity, or a shipped
        head (the general head for a first run below MIN_FIT_ROWS documents); nothing when the store holds no
        coded document."""
        from csrv2_vdb.head_store import unstored_head

        found = store_identities(self.document_store)
        if not found:
            return
        if len(found) > 1:
            raise EncoderMismatchError(f"the document store holds documents coded by more than one head ({found[0]}, "
                                       f"{found[1]}, ...); index it again with one head")  # fmt: skip
        identity = found[0]
        head_hash = identity_head_hash(identity)
        if head_hash is None:
            raise EncoderMismatchError(f"the document store's meta[{ENCODER_META!r}] holds {identity!r}, not a CSRv2 "
                                       "head identity; name the head with head=")  # fmt: skip
        self.normalize = writes_normalized(identity)
        folder = self._heads() / head_hash
        name, shipped = unstored_head(identity)
        if folder.is_dir():
            self.head = str(folder)
        elif CSRv2Encoder(None, shipped, normalize=self.normalize).identity == identity:
            self.head = name
        else:
            raise DataNotFoundError(
                f"the document store's documents were coded by {identity}, whose head is not in {self._heads()} "
                "(where the document embedder that fitted it saved it, unless given another heads_dir); pass "
                "head=<that folder> or heads_dir="
            )

    def _check_store(self) -> None:
        """Refuse a store whose documents were coded by another head than this component's."""
        store, encoder = self.document_store, self.encoder
        if store is None or encoder is None:
            return
        other = {"field": f"meta.{ENCODER_META}", "operator": "!=", "value": encoder.identity}
        count = getattr(store, "count_documents_by_filter", None)
        found = count(other) if count is not None else len(store.filter_documents(other))
        if found:
            sample = store.filter_documents(other)[:1] if count is not None else []
            theirs = sample[0].meta.get(ENCODER_META) if sample else "another head"
            raise EncoderMismatchError(
                f"the document store holds {found} documents coded by {theirs}; this component codes with "
                f"{encoder.identity} (head {self.head or 'the general head'}, k={encoder.k}, normalize="
                f"{self.normalize}). Use the head that indexed the store, or index again"
            )

    def _encoder(self) -> CSRv2Encoder:
        self.warm_up()
        assert self.encoder is not None
        return self.encoder

    def _settings(self) -> dict[str, Any]:
        return {"head": self.head, "embedder": self.embedder, "k": self.k, "normalize": self.normalize,
                "heads_dir": self.heads_dir}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        data = default_to_dict(self, **self._settings())
        if self.document_store is not None:
            data["init_parameters"]["document_store"] = self.document_store.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        from haystack.core.serialization import import_class_by_name

        store = data.get("init_parameters", {}).get("document_store")
        if store is not None:
            store_class: Any = import_class_by_name(store["type"])
            data["init_parameters"]["document_store"] = store_class.from_dict(store)
        return default_from_dict(cls, data)


@component
class CSRv2SparseTextEmbedder(_CSRv2Component):
    """A query text -> its CSRv2 code as a Haystack SparseEmbedding; with `document_store` and no head, coded by
    the head that coded the store's documents; with both, a store coded by another head is refused at warm-up."""

    @component.output_types(sparse_embedding=SparseEmbedding)
    def run(self, text: str) -> dict[str, SparseEmbedding]:
        ((indices, values),) = self._encoder().encode_queries([text]).rows()
        return {"sparse_embedding": SparseEmbedding(indices=indices, values=values)}


@component
class CSRv2SparseDocumentEmbedder(_CSRv2Component):
    """Documents -> copies with `sparse_embedding` set from their content (the inputs are not changed). With no
    head named (and none found in `document_store`), the first run fits one on its documents (see the module)."""

    def __init__(
        self,
        head: str | None = None,
        embedder: str | None = None,
        k: int | None = None,
        normalize: bool = True,
        document_store: Any = None,
        heads_dir: str | None = None,
        fit_sample: int = 50_000,
        fit_overrides: dict[str, Any] | None = None,
    ) -> None:
        _CSRv2Component.__init__(self, head, embedder, k, normalize, document_store, heads_dir)  # no super(): see
        self.fit_sample, self.fit_overrides = fit_sample, fit_overrides  # @component, which rebuilds the class

    def _settings(self) -> dict[str, Any]:
        return {**_CSRv2Component._settings(self), "fit_sample": self.fit_sample, "fit_overrides": self.fit_overrides}

    def _fits(self) -> bool:
        return True

    def _fit(self, texts: list[str]) -> tuple[CSRv2Encoder, Any]:
        """The encoder for a first run with no head: fitted on `texts` (a seeded sample of at most `fit_sample`,
        as `index` chooses) and saved under `heads_dir`, or the general head below MIN_FIT_ROWS; and the texts'
        embeddings (computed once, for the fit and the codes)."""
        from csrv2_vdb.head import DEFAULT_HEAD
        from csrv2_vdb.head_store import MIN_FIT_ROWS, fit_collection_head, sample_rows

        x = self._model.embed(texts, "document")
        if len(texts) < MIN_FIT_ROWS:
            logger.warning(
                "%d documents: fewer than %d, too few to fit a head on; coding with the general head %s (name one "
                "with head= for better quality)", len(texts), MIN_FIT_ROWS, DEFAULT_HEAD,
            )  # fmt: skip
            return CSRv2Encoder.load(None, self._model, self.k, self.normalize), x
        keep = sample_rows(len(texts), self.fit_sample)
        rows = (x, texts) if keep is None else (x[keep], [texts[i] for i in keep])
        encoder, report, labels = fit_collection_head(self._model, lambda: rows, len(texts), "the documents", self.k,
                                                      self.normalize, self.fit_overrides, logger.info)  # fmt: skip
        folder = self._heads() / str(identity_head_hash(encoder.identity))
        encoder.head.save(folder)
        if labels is not None:
            labels.save(folder)
        (folder / "fit-report.json").write_text(json.dumps(report, indent=2, default=float))
        logger.info("head fitted on %d documents saved to %s (name it with head= on other machines)", len(rows[1]),
                    folder)  # fmt: skip
        self.head = str(folder)
        return encoder, x

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        self.warm_up()
        texts = [d.content or "" for d in documents]
        if self.encoder is None:
            self.encoder, x = self._fit(texts)
            codes = self.encoder.encode_embeddings(x).rows()
        else:
            codes = self.encoder.encode_documents(texts).rows()
        identity = self.encoder.identity
        out = [
            dataclasses.replace(
                d, sparse_embedding=SparseEmbedding(indices=i, values=v), meta={**d.meta, ENCODER_META: identity}
            )
            for d, (i, v) in zip(documents, codes, strict=True)
        ]
        return {"documents": out}


@component
class CSRv2Explainer:
    """Retrieved documents -> copies with `meta["explain"]`: the latents each shares with the query, with their
    labels and contributions (query value x document value, largest first; they add up to the score of a
    sparse inner-product retriever). Documents must carry their `sparse_embedding` (Qdrant's retrievers:
    `return_embedding=True`). Labels come from `head`'s labels.json when it is a directory that has one."""

    def __init__(self, head: str | None = None) -> None:
        self.head = head
        self._labels: Any = None

    def warm_up(self) -> None:
        from pathlib import Path

        from csrv2_vdb.labels import LatentLabels

        if self._labels is None and self.head is not None and Path(self.head).is_dir():
            self._labels = LatentLabels.load(self.head)

    @component.output_types(documents=list[Document])
    def run(self, sparse_embedding: SparseEmbedding, documents: list[Document]) -> dict[str, list[Document]]:
        from csrv2_vdb.errors import InvalidArgumentError
        from csrv2_vdb.explain import contributions

        self.warm_up()
        query = (sparse_embedding.indices, sparse_embedding.values)
        out = []
        for d in documents:
            if d.sparse_embedding is None:
                raise InvalidArgumentError(f"document {d.id!r} carries no sparse_embedding to explain; ask the "
                                           "retriever for it (return_embedding=True)")  # fmt: skip
            code = (d.sparse_embedding.indices, d.sparse_embedding.values)
            out.append(dataclasses.replace(d, meta={**d.meta, "explain": contributions(query, code, self._labels)}))
        return {"documents": out}

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, head=self.head)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        return default_from_dict(cls, data)

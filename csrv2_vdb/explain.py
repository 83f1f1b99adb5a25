"""Why a document was retrieved: the latents its code shares with the query's, each with its share of the score.

A sparse hit's score is the inner product of two codes, sum over shared latents j of q_j * d_j, so the terms
q_j * d_j are an exact decomposition of the score: listed largest first, they add up to it (up to float32
rounding, and on Elasticsearch to Lucene's 9-bit storage of each value, which the engine's score carries
too). Codes are L2-normalised by default, so the score is a cosine between the codes and each contribution
its share of that cosine. The documents' codes are read back from the engine (`SparseStore.codes`); the
labels come from the head's `LatentLabels`, when it has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from csrv2_vdb.labels import LatentLabels
from csrv2_vdb.sparse import SparseBatch
from csrv2_vdb.store import CodesReadable, Hit


def contributions(
    query: tuple[Sequence[int], Sequence[float]],
    document: tuple[Sequence[int], Sequence[float]],
    labels: LatentLabels | None = None,
) -> list[dict[str, Any]]:
    """[{"latent", "label", "contribution"}, ...] for the latents both codes hold, largest contribution first."""
    doc = {int(i): float(v) for i, v in zip(*document, strict=True) if v != 0}
    shared = [(int(i), float(q) * doc[int(i)]) for i, q in zip(*query, strict=True) if q != 0 and int(i) in doc]
    shared.sort(key=lambda item: (-item[1], item[0]))
    return [{"latent": j, "label": labels.label(j) if labels else "", "contribution": c} for j, c in shared]


def explain_hits(
    store: CodesReadable,
    collection: str,
    queries: SparseBatch,
    hits: Sequence[Sequence[Hit]],
    labels: LatentLabels | None = None,
) -> list[list[list[dict[str, Any]]]]:
    """For each query (row of `queries`) and each of its hits, the hit's explanation (see `contributions`);
    one engine call reads every hit's code."""
    ids = list(dict.fromkeys(h.id for row in hits for h in row))
    stored = dict(zip(ids, store.codes(collection, ids).rows(), strict=True)) if ids else {}
    return [
        [contributions(query, stored[h.id], labels) for h in row]
        for query, row in zip(queries.rows(), hits, strict=True)
    ]

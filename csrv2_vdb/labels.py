"""Names for latents: the terms that set the texts a latent fires on apart from the rest of the corpus.

Class-based TF-IDF (c-TF-IDF, Grootendorst 2022, "BERTopic", arXiv:2203.05794): each latent is a class whose
document is every text it fires on. A term's weight in class c is

    W(t, c) = tf(t, c) * log(1 + A / f(t))

with tf(t, c) the term's share of the class's words, f(t) the term's count over all classes and A the mean
number of words per class: frequent in the latent's texts, rare across latents. A latent gets its top terms,
its document frequency (texts it fires on) and the openings of the two texts it fires on most strongly.
Latents that never fire get no label. The labels are a JSON file (`labels.json`) beside a head's files and
travel with a collection's stored head.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from csrv2_vdb.errors import InvalidArgumentError
from csrv2_vdb.sparse import SparseBatch

LABELS_NAME = "labels.json"
METHOD = "c-tf-idf"
SNIPPET_CHARS = 160
_TOKEN = re.compile(r"[^\W\d_][\w'-]*[^\W_]", re.UNICODE)  # words of 2+ characters, starting with a letter
# Function words that name nothing (a short English list; corpora in other languages keep theirs).
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just may me might more most must my
    myself no nor not now of off on once only or other our ours ourselves out over own same shall she should so
    some such than that the their theirs them themselves then there these they this those through to too under
    until up upon very was we were what when where which while who whom why will with would you your yours
    yourself yourselves one two also using used use many much well however within without may often""".split()
)


@dataclass
class LatentLabel:
    """One latent: its top terms (best first), how many texts it fires on, and two of them."""

    latent: int
    terms: list[str]
    df: int
    examples: list[str]

    @property
    def label(self) -> str:
        """The short name: its three best terms."""
        return ", ".join(self.terms[:3])


@dataclass
class LatentLabels:
    """Labels of a head's latents over one corpus."""

    labels: dict[int, LatentLabel]
    documents: int  # texts the labels were computed on
    hidden_dim: int
    method: str = METHOD

    def label(self, latent: int) -> str:
        """The latent's short name ("" when it fired on none of the texts)."""
        found = self.labels.get(int(latent))
        return found.label if found else ""

    def most_used(self, n: int) -> list[LatentLabel]:
        """The n latents that fire on the most texts."""
        return sorted(self.labels.values(), key=lambda lab: (-lab.df, lab.latent))[:n]

    def to_json(self) -> str:
        ordered = sorted(self.labels.values(), key=lambda lab: lab.latent)
        body = {"method": self.method, "documents": self.documents, "hidden_dim": self.hidden_dim,
                "labels": [asdict(lab) for lab in ordered]}  # fmt: skip
        return json.dumps(body, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> LatentLabels:
        body = json.loads(text)
        labels = {int(r["latent"]): LatentLabel(int(r["latent"]), list(r["terms"]), int(r["df"]), list(r["examples"]))
                  for r in body["labels"]}  # fmt: skip
        return cls(labels, int(body["documents"]), int(body["hidden_dim"]), str(body.get("method", METHOD)))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / LABELS_NAME
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> LatentLabels | None:
        """The labels saved in a head directory, or None when it has none."""
        path = Path(directory) / LABELS_NAME
        return cls.from_json(path.read_text(encoding="utf-8")) if path.is_file() else None


def tokens(text: str) -> list[str]:
    """Lower-cased words of two or more characters, function words left out."""
    return [w for w in (m.group(0).lower() for m in _TOKEN.finditer(text)) if w not in STOPWORDS]


def label_latents(
    texts: Sequence[str], codes: SparseBatch, *, terms: int = 8, examples: int = 2, min_df: int = 2
) -> LatentLabels:
    """Label every latent that fires on `texts` (row i of `codes` is text i's code) by c-TF-IDF; terms found in
    fewer than `min_df` texts are left out (typos, ids)."""
    if len(texts) != len(codes):
        raise InvalidArgumentError(f"{len(texts)} texts but {len(codes)} codes: one code per text")
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for r, text in enumerate(texts):
        for word in tokens(text):
            rows.append(r)
            cols.append(vocabulary.setdefault(word, len(vocabulary)))
    words = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(vocabulary)))
    words.sum_duplicates()
    keep = np.flatnonzero(np.diff(words.tocsc().indptr) >= min_df)  # document frequency per term
    words = words[:, keep]
    names = np.array(list(vocabulary))[keep] if len(keep) else np.array([], dtype=str)

    fires = codes.to_scipy().tocsc()  # texts x latents, activation values
    fires.eliminate_zeros()
    membership = fires.copy()
    membership.data[:] = 1.0
    per_class = (membership.T @ words).tocsr()  # latents x terms: counts in the texts each latent fires on
    class_words = np.asarray(per_class.sum(axis=1)).ravel()
    used = class_words > 0
    mean_words = class_words[used].mean() if used.any() else 1.0
    term_total = np.asarray(per_class.sum(axis=0)).ravel()
    idf = np.log1p(mean_words / np.maximum(term_total, 1e-12))
    df = np.diff(fires.indptr)
    out: dict[int, LatentLabel] = {}
    for latent in np.flatnonzero(df):
        start, stop = per_class.indptr[latent], per_class.indptr[latent + 1]
        found, counts = per_class.indices[start:stop], per_class.data[start:stop]
        weights = counts / max(class_words[latent], 1.0) * idf[found]
        best = found[np.argsort(-weights, kind="stable")[:terms]]
        texts_of = fires.indices[fires.indptr[latent] : fires.indptr[latent + 1]]
        strongest = texts_of[np.argsort(-fires.data[fires.indptr[latent] : fires.indptr[latent + 1]])[:examples]]
        out[int(latent)] = LatentLabel(int(latent), [str(names[t]) for t in best], int(df[latent]),
                                       [_snippet(texts[i]) for i in strongest])  # fmt: skip
    return LatentLabels(out, len(texts), codes.dim)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + "…"

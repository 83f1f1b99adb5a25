"""Write a retrieval set from WordNet 3.0 (Debian's `wordnet-base`), text no head of this project was trained on:
documents are the glosses of a seeded sample of noun synsets, each query is one of a synset's words, and the
relevant document is that synset's gloss (a term -> its definition, which rarely repeats the term).

    apt-get download wordnet-base && dpkg -x wordnet-base_*.deb wn
    python scripts/wordnet-eval-files.py wn/usr/share/wordnet runs/wordnet     # corpus.jsonl, queries.jsonl
    CORPUS=runs/wordnet/corpus.jsonl QUERIES=runs/wordnet/queries.jsonl scripts/own-head-eval.sh runs/own-head-wn
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

DOCUMENTS, QUERIES, SEED = 6000, 400, 0


def noun_synsets(directory: Path) -> list[tuple[str, list[str], str]]:
    """(offset, words, definition) per noun synset; the definition is the gloss before its quoted examples."""
    out = []
    for line in (directory / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):  # the licence header
            continue
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        words = [fields[4 + 2 * i].replace("_", " ").split("(")[0] for i in range(int(fields[3], 16))]
        definition = gloss.split('; "')[0].strip().rstrip(";")
        if len(definition.split()) >= 6:
            out.append((fields[0], words, definition))
    return out


def main(directory: Path, out: Path) -> None:
    rng = random.Random(SEED)
    chosen = rng.sample(noun_synsets(directory), DOCUMENTS)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": f"wn-{o}", "text": d}) + "\n" for o, _, d in chosen)
    with open(out / "queries.jsonl", "w", encoding="utf-8") as f:
        for o, words, _ in rng.sample(chosen, QUERIES):
            f.write(json.dumps({"id": f"q-{o}", "text": rng.choice(words), "relevant": [f"wn-{o}"]}) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

"""Write a real-text corpus of about 178k rows for `csrv2-vdb bench retrieval --corpus`: every distinct Debian
package description in ../shared/data plus the WordNet 3.0 glosses (Debian's `wordnet-base` package), and the
300 Debian titles `bench quality` asks as queries.

    apt-get download wordnet-base && dpkg -x wordnet-base_*.deb wn
    python scripts/real-corpus.py wn/usr/share/wordnet runs/real-corpus
    csrv2-vdb bench retrieval --corpus runs/real-corpus/docs.jsonl --query-file runs/real-corpus/titles.jsonl ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from csrv2_vdb.benchmarks.datasets import find_data_dir, load_debian
from csrv2_vdb.benchmarks.quality import debian_retrieval_set


def wordnet_glosses(directory: Path) -> list[str]:
    """ "word, synonym: gloss" per synset of WordNet's four data files."""
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        for line in (directory / f"data.{pos}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  "):  # the licence header
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            words = [fields[4 + 2 * i].replace("_", " ").split("(")[0] for i in range(int(fields[3], 16))]
            out.append(f"{', '.join(words)}: {gloss.strip()}")
    return out


def main(wordnet: Path, out: Path) -> None:
    data = find_data_dir()
    texts = list(dict.fromkeys([p.body for p in load_debian(data)] + wordnet_glosses(wordnet)))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "docs.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts))
    with open(out / "titles.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in debian_retrieval_set(data).query_texts)
    print(f"{len(texts):,} documents in {out / 'docs.jsonl'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

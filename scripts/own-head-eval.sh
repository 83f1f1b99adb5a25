#!/usr/bin/env bash
# The index's own head against `train --input` + `index --head` (issue 28): GraphRAG-Bench medical, scored as
# served on the held-out final half of the questions, at k = 2 and 8. Both fits use the same defaults, so the
# two rows should agree. About 10 min on 2 cores (the texts are embedded once, through the cache).
# Usage: [CORPUS=F QUERIES=F] scripts/own-head-eval.sh [WORK_DIR]   (results: WORK_DIR/*/eval.csv, summary printed)
set -euo pipefail
BIN=${BIN:-.venv/bin}
WORK=${1:-runs/own-head}
GENERAL=${GENERAL:-minilm-general-csrv2}  # the shipped general head (the default before heads were fitted was -v1)
rm -rf "$WORK" && mkdir -p "$WORK"
if [ -z "${CORPUS:-}" ]; then  # another corpus: CORPUS=... QUERIES=... (e.g. scripts/wordnet-eval-files.py)
  "$BIN/csrv2-vdb" bench eval-files --out "$WORK/files" >/dev/null
  CORPUS=$WORK/files/medical/corpus.jsonl
  QUERIES=$WORK/files/medical/queries-final.jsonl
fi
for k in 2 8; do
  start=$(date +%s)
  "$BIN/csrv2-vdb" index --input "$CORPUS" --store "$WORK/own-$k" --collection med --k "$k" \
    --checkpoint "$WORK/own-$k.ckpt"
  own=$(( $(date +%s) - start ))
  "$BIN/csrv2-vdb" eval --store "$WORK/own-$k" --collection med --queries "$QUERIES" --out "$WORK/own-$k-eval"
  "$BIN/csrv2-vdb" train --input "$CORPUS" --k "$k" --out "$WORK/head-$k"
  "$BIN/csrv2-vdb" index --input "$CORPUS" --store "$WORK/named-$k" --collection med --head "$WORK/head-$k" \
    --checkpoint "$WORK/named-$k.ckpt"
  "$BIN/csrv2-vdb" eval --store "$WORK/named-$k" --collection med --queries "$QUERIES" --out "$WORK/named-$k-eval"
  "$BIN/csrv2-vdb" index --input "$CORPUS" --store "$WORK/general-$k" --collection med --head "$GENERAL" --k "$k" \
    --checkpoint "$WORK/general-$k.ckpt"
  "$BIN/csrv2-vdb" eval --store "$WORK/general-$k" --collection med --queries "$QUERIES" --out "$WORK/general-$k-eval"
  echo "k=$k index without --head: ${own}s in all" >> "$WORK/summary.txt"
done
for f in "$WORK"/*-eval/eval.csv; do echo "== $f"; cat "$f"; done | tee -a "$WORK/summary.txt"

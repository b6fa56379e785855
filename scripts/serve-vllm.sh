#!/usr/bin/env bash
# Serve a bigger model on a GPU with vLLM's OpenAI-compatible server, for citeqa's
# `openai-compatible` backend. See docs/gpu.md.
#
#   scripts/serve-vllm.sh [MODEL] [extra vllm args...]    # MODEL: a Hugging Face id or a local folder
#   PORT=8000 HOST=0.0.0.0 scripts/serve-vllm.sh Qwen/Qwen2.5-7B-Instruct --max-model-len 8192
#
# Then, from any machine that can reach it:
#   CITEQA_BACKEND=openai-compatible CITEQA_BASE_URL=http://HOST:8000/v1 citeqa ask "..."
#
# Needs `pip install vllm` (in its own venv: it pins its own torch) and an NVIDIA GPU. A Hugging Face
# id is downloaded on first start; with no network, pass a local folder holding the weights.
set -euo pipefail
MODEL="${1:-${CITEQA_SERVE_MODEL:-Qwen/Qwen2.5-7B-Instruct}}"
[ $# -gt 0 ] && shift
PORT="${PORT:-8000}"
HOST="${HOST:-0.0.0.0}"
command -v vllm >/dev/null || { echo "vllm is not installed: pip install vllm (in its own venv)" >&2; exit 2; }
echo "serving $MODEL on http://$HOST:$PORT/v1 -- then:" >&2
echo "  CITEQA_BACKEND=openai-compatible CITEQA_BASE_URL=http://$(hostname -f 2>/dev/null || echo HOST):$PORT/v1 citeqa ask \"...\"" >&2
exec vllm serve "$MODEL" --host "$HOST" --port "$PORT" "$@"

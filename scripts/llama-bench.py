#!/usr/bin/env python
"""Time llama.cpp (llama-cpp-python) on the local backend's exact chat prompts: load time, time to
first token, prompt and generation tokens/s. No index and no citeqa needed, so it runs on a bare GPU box.

    .venv/bin/python scripts/bench-local.py --dump-prompts prompts.json      # once, where citeqa runs
    python scripts/llama-bench.py --model X.gguf --prompts prompts.json --gpu-layers -1 --json out.json

`--synthesize HEADER --size N` first writes X.gguf from a saved GGUF header (the bytes before the
tensor data, see --save-header) followed by zeros: the real model's exact tensor shapes and types
with all-zero weights. It times the same as the real model (llama.cpp does not skip zeros) and always
generates the full --max-tokens (every logit ties, so the end token never wins); its text is
meaningless. Use it where the real 1.1 GB file cannot be copied.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def save_header(model: Path, out: Path, gguf_py: str | None) -> None:
    if gguf_py:
        sys.path.insert(0, gguf_py)
    from gguf import GGUFReader

    offset = GGUFReader(str(model)).data_offset
    with open(model, "rb") as f:
        out.write_bytes(f.read(offset))
    print(f"wrote {offset} header bytes of {model.stat().st_size} to {out}")


def synthesize(header: Path, size: int, out: Path) -> None:
    with open(out, "wb") as f:
        f.write(header.read_bytes())
        f.truncate(size)  # zeros (sparse)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--prompts", type=Path)
    ap.add_argument("--gpu-layers", type=int, default=-1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--limit", type=int, default=0, help="first N prompts only")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--synthesize", type=Path, metavar="HEADER")
    ap.add_argument("--size", type=int)
    ap.add_argument("--save-header", type=Path, metavar="OUT")
    ap.add_argument("--gguf-py", help="folder holding the gguf package (llama.cpp's gguf-py)")
    args = ap.parse_args()

    if args.save_header:
        save_header(args.model, args.save_header, args.gguf_py)
        return 0
    if args.synthesize:
        synthesize(args.synthesize, args.size, args.model)

    import llama_cpp

    info = {"llama_cpp": llama_cpp.__version__, "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "model": args.model.name, "gpu_layers": args.gpu_layers, "threads": args.threads,
            "synthetic_zero_weights": bool(args.synthesize)}
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=str(args.model), n_ctx=4096, n_threads=args.threads,
                          n_gpu_layers=args.gpu_layers, verbose=False)
    info["load_s"] = round(time.perf_counter() - t0, 2)
    prompts = json.loads(args.prompts.read_text())
    if args.limit:
        prompts = prompts[:args.limit]
    rows = []
    for i, p in enumerate([prompts[0]] + prompts):  # the first is a warm-up, not counted
        llm.reset()  # no prompt-cache reuse between questions: every prompt is evaluated in full
        t = time.perf_counter()
        first, n, text = None, 0, []
        for chunk in llm.create_chat_completion(messages=p["messages"], stream=True, temperature=0,
                                                max_tokens=args.max_tokens):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                first = first or time.perf_counter()
                n += 1
                text.append(piece)
        end = time.perf_counter()
        prompt_tokens = llm.n_tokens - n
        row = {"id": p.get("id"), "prompt_tokens": prompt_tokens, "completion_tokens": n,
               "first_token_s": round((first or end) - t, 4), "total_s": round(end - t, 4),
               "answer": "".join(text)[:200]}
        if i:
            rows.append(row)
        print(json.dumps(row), flush=True)
    decode = [r for r in rows if r["completion_tokens"] > 1]
    info.update(
        prompts=len(rows),
        prompt_tokens_mean=round(statistics.mean(r["prompt_tokens"] for r in rows)),
        completion_tokens_mean=round(statistics.mean(r["completion_tokens"] for r in rows), 1),
        first_token_s_mean=round(statistics.mean(r["first_token_s"] for r in rows), 4),
        total_s_mean=round(statistics.mean(r["total_s"] for r in rows), 4),
        prompt_tokens_per_s=round(sum(r["prompt_tokens"] for r in rows) / sum(r["first_token_s"] for r in rows), 1),
        generation_tokens_per_s=round(sum(r["completion_tokens"] - 1 for r in decode) /
                                      sum(r["total_s"] - r["first_token_s"] for r in decode), 1) if decode else None)
    print(json.dumps(info, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": info, "rows": rows}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

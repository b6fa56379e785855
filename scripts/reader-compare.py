"""Two reader files on the same held-out passages (docs/reader.md, "Export"): reading time of B as a
share of A's, measured interleaved in one process (the same batches, alternating, so the machine's
state is shared), and how far B's outputs move from A's (answerability logit, span). Reads only the
held-out *training* articles (no eval set).

    .venv/bin/python scripts/reader-compare.py A/reader.onnx B/reader.onnx [--passages 6000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from agent.reader import MODEL_DIR, tokenizer
from citeqa.train_reader import DATA_DIR, _batches, _encode_batch, _onnx_runner, held_sample, predict, split


def timed(run, encoded) -> float:
    t0 = time.perf_counter()
    for enc in encoded:
        run(enc.ids, enc.mask, enc.types)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    ap.add_argument("--passages", type=int, default=6000, help="held-out passages compared")
    ap.add_argument("--timed", type=int, default=640, help="held-out passages timed, in batches of 10 (as the agent reads)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    held = held_sample(split(args.data, random.Random(args.seed), False)[1], args.seed)[:args.passages]
    tok = tokenizer(MODEL_DIR / "tokenizer.json")
    runs = [_onnx_runner(p) for p in (args.a, args.b)]
    encoded = [_encode_batch(tok, chunk) for chunk in _batches(held[:args.timed], 10, None)]
    for run in runs:
        timed(run, encoded[:5])  # warm-up
    seconds = np.zeros(2)
    for _ in range(args.rounds):
        for k, run in enumerate(runs):
            seconds[k] += timed(run, encoded)
    print(f"reading time B / A: {seconds[1] / seconds[0]:.3f} ({seconds[0] / args.rounds:.2f} s vs "
          f"{seconds[1] / args.rounds:.2f} s for {len(encoded)} batches of 10)")
    pa, pb = (predict(run, tok, held) for run in runs)
    dlogit = np.abs(np.array([p["logit"] for p in pa]) - np.array([p["logit"] for p in pb]))
    same = np.mean([x["answer"] == y["answer"] for x, y in zip(pa, pb)])
    print(f"{len(held)} passages: |logit B - logit A| mean {dlogit.mean():.3f}, max {dlogit.max():.3f}; same span {same:.3f}")


if __name__ == "__main__":
    main()

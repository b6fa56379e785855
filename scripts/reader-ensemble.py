"""Held-out figures of an ensemble of readers: the mean of their heads' outputs (docs/reader.md, "Tried
and dropped"). Reads only the held-out *training* articles; calibrated and measured as
`citeqa.train_reader` does for one reader.

    .venv/bin/python scripts/reader-ensemble.py DIR DIR [DIR ...] [--data ../shared/data/squad-train]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from agent.reader import tokenizer
from citeqa.train_reader import DATA_DIR, _onnx_runner, calibrated_report, held_sample, predict, split


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", type=Path, nargs="+", help="reader folders (reader.onnx, tokenizer.json)")
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    held = held_sample(split(args.data, random.Random(args.seed), False)[1], args.seed)
    runners = [_onnx_runner(d / "reader.onnx") for d in args.models]

    def run(ids, mask, types):
        outs = [r(ids, mask, types) for r in runners]
        return [np.mean([np.asarray(o[i]) for o in outs], axis=0) for i in range(3)]

    print(json.dumps(calibrated_report(predict(run, tokenizer(args.models[0] / "tokenizer.json"), held))[2]))


if __name__ == "__main__":
    main()

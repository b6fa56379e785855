"""The reader's held-out analysis in docs/reader.md: the threshold curve, other refusal scores, and the
question-word-coverage reranking. Reads only the held-out *training* articles (no eval set).

    .venv/bin/python scripts/reader-heldout.py [--model agent/models/reader] [--data ../shared/data/squad-train]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from agent.reader import MODEL_DIR, best_span, encode, platt, tokenizer
from agent.text import content_words, tokens
from citeqa.train_reader import DATA_DIR, _batches, _onnx_runner, split


def rows(model: Path, data: Path, seed: int = 13) -> list[dict]:
    """Per held-out passage: question id, kind, raw logit, log P(span), SQuAD 2 null score, coverage."""
    _, held = split(data, random.Random(seed), False)
    held = random.Random(seed + 1).sample(held, min(len(held), 6000))  # the sample calibration used
    tok, run = tokenizer(model / "tokenizer.json"), _onnx_runner(model / "reader.onnx")
    out = []
    for chunk in _batches(held, 64, None):
        enc = encode(tok, [(e.question, e.passage) for e in chunk])
        start, end, has = run(enc.ids, enc.mask, enc.types)
        for k, ex in enumerate(chunk):
            a, b, p = best_span(start[k], end[k], enc.passage[k])
            q, t = content_words(ex.question), set(tokens(ex.passage))
            out.append({"qid": ex.qid, "kind": ex.kind, "logit": float(has[k]), "log_span": float(np.log(p + 1e-9)),
                        "null": float(start[k][0] + end[k][0] - start[k][a] - end[k][b]),
                        "cover": sum(w in t for w in q) / max(1, len(q))})
    return out


def refused_at(rs: list[dict], score, thresholds=None, false_refusals=(0.03, 0.05)) -> list[str]:
    """Share of v2 near misses and other-article passages refused, at thresholds on `score` (or at the
    thresholds that refuse the given shares of answerable questions, judged on each question's best)."""
    by_q: dict[str, list[dict]] = {}
    for r in rs:
        by_q.setdefault(r["qid"], []).append(r)
    ans = np.sort([max(score(r) for r in g) for g in by_q.values() if any(r["kind"] == "pos" for r in g)])
    v2 = [max(score(r) for r in g) for g in by_q.values() if all(r["kind"] == "v2" for r in g)]
    off = [score(r) for r in rs if r["kind"] == "other"]
    cuts = thresholds if thresholds is not None else [ans[int(f * len(ans))] for f in false_refusals]
    return [f"t={t:.3f} answerable {np.mean(ans < t):.3f} v2 {np.mean(np.array(v2) < t):.3f} "
            f"other-article {np.mean(np.array(off) < t):.3f}" for t in cuts]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=MODEL_DIR)
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    args = ap.parse_args()
    meta = json.loads((args.model / "reader.json").read_text(encoding="utf-8"))
    rs = rows(args.model, args.data)
    prob = lambda r: float(platt(r["logit"], meta["scale"], meta["bias"]))  # noqa: E731
    print("threshold curve (calibrated P):")
    print("\n".join(refused_at(rs, prob, [0.05, meta["threshold"], 0.15, 0.3, 0.5, 0.7])))
    for name, score in [("logit", lambda r: r["logit"]), ("logit + log P(span)", lambda r: r["logit"] + r["log_span"]),
                        ("- null score", lambda r: -r["null"])]:
        print(f"{name} at 3 % / 5 % answerable refused:", *refused_at(rs, score), sep="\n  ")
    by_q: dict[str, list[dict]] = {}
    for r in rs:
        by_q.setdefault(r["qid"], []).append(r)
    groups = [g for g in by_q.values() if any(r["kind"] == "pos" for r in g) and len(g) > 1]
    for w in (0, 0.5, 1, 2, 4):
        first = np.mean([max(g, key=lambda r: r["logit"] + w * r["cover"])["kind"] == "pos" for g in groups])
        print(f"gold passage ranked first, logit + {w} * coverage: {first:.3f} of {len(groups)}")


if __name__ == "__main__":
    main()

"""The reader's held-out analysis in docs/reader.md: the threshold curve, other refusal scores, the
question-word-coverage reranking and span decoding by answer type. Reads only the held-out *training*
articles (no eval set).

    .venv/bin/python scripts/reader-heldout.py [--model agent/models/reader] [--data ../shared/data/squad-train]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from agent.answertype import expected
from agent.reader import MODEL_DIR, best_span, encode, platt, span_probs, tokenizer
from agent.text import content_words, has_number, has_time, new_words, tokens
from evals.metrics import token_f1
from citeqa.train_reader import DATA_DIR, _batches, _onnx_runner, held_sample, split


TYPED = {"number": has_number, "time": has_time}


def typed_span(question: str, passage: str, offsets, joint: np.ndarray, top: int = 20) -> str:
    """The most probable span; for a question that expects a number or a time, the most probable of
    the `top` spans that holds one when the best does not."""
    cands = [np.unravel_index(int(o), joint.shape) for o in np.argsort(-joint, axis=None)[:top]]
    texts = [passage[offsets[i][0]:offsets[j][1]] for i, j in cands]
    check = TYPED.get(expected(question))
    if check and not check(new_words(texts[0], question)):
        return next((t for t in texts if check(new_words(t, question))), texts[0])
    return texts[0]


def rows(model: Path, data: Path, seed: int = 13) -> list[dict]:
    """Per held-out passage: question id, kind, raw logit, log P(span), SQuAD 2 null score, coverage;
    for answerable ones the span F1 of the best span and of `typed_span`."""
    held = held_sample(split(data, random.Random(seed), False)[1], seed)  # the sample calibration used
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
            if ex.kind == "pos":
                gold = [ex.passage[ex.start:ex.end]]
                off = enc.offsets[k]
                typed = typed_span(ex.question, ex.passage, off, span_probs(start[k], end[k], enc.passage[k]))
                out[-1].update(f1=token_f1(ex.passage[off[a][0]:off[b][1]], gold), f1_typed=token_f1(typed, gold))
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
    pos = [r for r in rs if "f1" in r]
    print(f"span F1 of {len(pos)} answerable passages: best span {np.mean([r['f1'] for r in pos]):.4f}, "
          f"typed (number, time) {np.mean([r['f1_typed'] for r in pos]):.4f}")


if __name__ == "__main__":
    main()

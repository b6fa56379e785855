"""Fit the ranking weights (`agent.select.WEIGHTS`) on held-out training articles, by grid search.

    python -m citeqa.fit_ranking [--data ../shared/data/squad-train]

The ranking decides which `agent.answer.READ_TOP` retrieved sentences the reader reads. The articles
that `citeqa.train_reader` holds out from training are indexed as `citeqa.fit_answerable` does, and
the answerable questions of the indexed ones go through the agent's retrieval and ranking. A sentence
is a hit when it holds the question's gold answer. Every weighting of the grid (the dense similarity's
weight fixed at 1) is scored by the share of questions with a hit among the retrieved candidates that
have one in the first `READ_TOP` (then in the first place, to break ties). It prints the best and the
shipped weights' figures; the best go into `agent/select.py` by hand. No evaluation set is read.
About 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.answer import READ_TOP
from agent.answertype import expected
from agent.retrieve import CANDIDATES
from agent.select import WEIGHTS, score
from citeqa.fit_answerable import held_out_collection
from citeqa.train_reader import DATA_DIR, log
from evals.metrics import normalize_answer

FEATURES = tuple(WEIGHTS)
GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def collect(data_dir: Path, work: Path, seed: int, quick: bool, log) -> tuple[np.ndarray, np.ndarray]:
    """(features, hits): (questions, CANDIDATES, len(FEATURES)) and (questions, CANDIDATES), padded
    with nan features and no hit, for the questions with a hit among their candidates."""
    retriever, indexed, _, _ = held_out_collection(data_dir, work, seed, quick)
    qas = [qa for a in indexed for p in a["paragraphs"] for qa in p["qas"] if not qa.get("is_impossible")]
    log(f"{len(qas)} answerable questions of {len(indexed)} indexed articles")
    feats, hits = [], []
    for n, qa in enumerate(qas):
        question = qa["question"]
        ranked = score(question, expected(question), retriever.search(question), top=CANDIDATES).best
        golds = [g for g in (normalize_answer(a["text"]) for a in qa["answers"]) if g]
        hit = [any(g in normalize_answer(s.sentence.text) for g in golds) for s in ranked]
        if any(hit):
            f = np.full((CANDIDATES, len(FEATURES)), np.nan)
            f[:len(ranked)] = [[s.features[k] for k in FEATURES] for s in ranked]
            feats.append(f)
            hits.append(np.pad(hit, (0, CANDIDATES - len(hit))))
        if n % 500 == 0:
            log(f"{n}/{len(qas)} questions")
    return np.array(feats), np.array(hits, dtype=bool)


def figures(feats: np.ndarray, hits: np.ndarray, weights: dict[str, float]) -> tuple[float, float]:
    """(share with a hit in the first READ_TOP, share with a hit first) under `weights`.

    >>> f = np.array([[[0.9, 0.0], [0.5, 1.0]]]); h = np.array([[False, True]])
    >>> figures(f, h, {"dense": 1.0, "cover": 0.0}), figures(f, h, {"dense": 1.0, "cover": 1.0})
    ((1.0, 0.0), (1.0, 1.0))
    """
    w = np.array(list(weights.values()))  # in the order of the feature columns
    s = np.nan_to_num(feats @ w, nan=-np.inf)  # padded candidates rank last
    order = np.argsort(-s, axis=1, kind="stable")
    ranked_hits = np.take_along_axis(hits, order, axis=1)
    return float(ranked_hits[:, :READ_TOP].any(1).mean()), float(ranked_hits[:, 0].mean())


def grid_search(feats: np.ndarray, hits: np.ndarray) -> dict[str, float]:
    """The weights of the grid with the best `figures` (the first of equals, in grid order)."""
    grid = (dict(zip(FEATURES, (1.0,) + values)) for values in itertools.product(GRID, repeat=len(FEATURES) - 1))
    return max(grid, key=lambda weights: figures(feats, hits, weights))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    ap.add_argument("--seed", type=int, default=13, help="train_reader's seed (the same held-out articles)")
    ap.add_argument("--quick", action="store_true", help="the quick recipe's held-out articles")
    args = ap.parse_args(argv)
    assert FEATURES[0] == "dense", "the grid fixes the dense weight at 1"
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="citeqa-fit-ranking-", ignore_cleanup_errors=True) as work:
        feats, hits = collect(args.data, Path(work), args.seed, args.quick, log)
    best = grid_search(feats, hits)
    for name, weights in (("shipped", WEIGHTS), ("best", best)):
        top, first = figures(feats, hits, weights)
        log(f"{name} {weights}: hit in the first {READ_TOP} {top:.4f}, first {first:.4f} ({len(hits)} questions)")
    log(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

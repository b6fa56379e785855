"""Fit the answerability judge (`agent.answerable`) through the agent, on held-out training articles.

    python -m citeqa.fit_answerable [--data ../shared/data/squad-train] [--reader agent/models/reader]

The articles that `citeqa.train_reader` holds out from training (the same seed) are written as text
files. Half of the v1.1 ones and all the v2 ones are indexed in a temporary Chroma store; then the agent's
own retrieval and reader answer questions of three kinds:
- answerable: questions of the indexed articles;
- not indexed: questions of the other half (the document that would answer them is missing);
- near misses: the v2 articles' unanswerable questions;
- reworded: answerable questions of the indexed articles as the local model paraphrased them
  (`citeqa.paraphrase`, the "held" rows). Measured only: the judge is not fitted on them.

Every passage the agent reads for a question is a row: label 1 when the question is answerable and the
passage holds its gold answer, else 0. A logistic regression over `agent.answerable.FEATURES` fits the
rows. The threshold is the highest that refuses at most 3 % of the answerable questions, judged on each
question's most probable passage, as the agent answers. The result goes into `reader.json` under
"answerable". About 10 minutes on 2 cores; no evaluation set is read.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from agent.answer import readings
from agent.answerable import FEATURES, Judge, features
from agent.answertype import expected
from agent.reader import MODEL_DIR, Reader
from agent.retrieve import Retriever
from citeqa.paraphrase import load as paraphrases
from citeqa.train_reader import DATA_DIR, fit_logistic, load_articles, log, refusal_threshold, split_articles
from evals.metrics import normalize_answer
from index import ingest
from citeqa.config import Config


def _questions(article: dict, answerable: bool, n: int, rng: random.Random) -> list[dict]:
    qas = [qa for p in article["paragraphs"] for qa in p["qas"] if bool(qa.get("is_impossible")) != answerable]
    return rng.sample(qas, min(n, len(qas)))


def doc_name(article: dict, i: int) -> str:
    return f"{i:02d}-{re.sub(r'[^A-Za-z0-9]+', '-', article['title'])[:60]}.txt"


def held_out_articles(data_dir: Path, seed: int, quick: bool) -> tuple[list[dict], list[dict], list[dict]]:
    """The held-out training articles of `citeqa.train_reader` (the same seed) as (indexed, missing, v2):
    half of the v1.1 ones and all the v2 ones are indexed (`indexed` holds the v2 ones too)."""
    held_v1, _, held_v2, _ = split_articles(*load_articles(data_dir), random.Random(seed), quick)
    return held_v1[0::2] + held_v2, held_v1[1::2], held_v2


def article_text(article: dict) -> tuple[str, list[int]]:
    """An article as one text file, its paragraphs (stripped) joined by blank lines, and where each
    paragraph's unstripped context would start in it (answer offsets are into the unstripped context).

    >>> article_text({"paragraphs": [{"context": "Ab."}, {"context": " Cd. "}]})
    ('Ab.\\n\\nCd.\\n', [0, 4])
    """
    text, starts = "", []
    for p in article["paragraphs"]:
        if text:
            text += "\n\n"
        ctx = p["context"]
        starts.append(len(text) - (len(ctx) - len(ctx.lstrip())))
        text += ctx.strip()
    return text + "\n", starts


def write_docs(articles: list[dict], docs: Path) -> list[Path]:
    """Write `articles` as text files under `docs` (named by `doc_name`); returns their paths."""
    docs.mkdir(parents=True, exist_ok=True)
    paths = [docs / doc_name(a, i) for i, a in enumerate(articles)]
    for path, article in zip(paths, articles):
        path.write_text(article_text(article)[0], encoding="utf-8")
    return paths


def held_out_collection(data_dir: Path, work: Path, seed: int, quick: bool):
    """Index under `work` the held-out articles of `held_out_articles`. Returns (retriever, indexed,
    missing, v2) articles."""
    indexed, missing, held_v2 = held_out_articles(data_dir, seed, quick)
    cfg = Config.resolve(home=work / "home", collection="fit-answerable")
    ingest.add(write_docs(indexed, work / "docs"), cfg, progress=False)
    store, embedder = ingest.open_store(cfg, create=False)
    return Retriever(store, embedder, mode=cfg.retrieval), indexed, missing, held_v2


def asked_questions(indexed: list[dict], missing: list[dict], held_v2: list[dict], per_article: int,
                    seed: int) -> list[tuple[dict, str]]:
    """The (question, kind) pairs `collect` asks (see the module doc)."""
    rng = random.Random(seed + 2)
    asked = [(qa, "answerable") for a in indexed for qa in _questions(a, True, per_article, rng)]
    asked += [(qa, "not indexed") for a in missing for qa in _questions(a, True, per_article, rng)]
    asked += [(qa, "near miss") for a in held_v2 for qa in _questions(a, False, per_article, rng)]
    reworded = {r["qid"]: r["paraphrase"] for r in paraphrases("held")}
    asked += [({**qa, "id": qa["id"] + "-reworded", "question": reworded[qa["id"]]}, "reworded")
              for a in indexed for p in a["paragraphs"] for qa in p["qas"] if qa["id"] in reworded]
    return asked


def collect(data_dir: Path, reader: Reader, work: Path, per_article: int, seed: int, quick: bool,
            log) -> list[dict]:
    """Index the held-out articles under `work` and return one row per passage read (see the module doc)."""
    retriever, indexed, missing, held_v2 = held_out_collection(data_dir, work, seed, quick)
    asked = asked_questions(indexed, missing, held_v2, per_article, seed)
    log(f"indexed {len(indexed)} articles; asking {len(asked)} questions")
    rows = []
    for n, (qa, kind) in enumerate(asked):
        retrieval = retriever.search(qa["question"])
        _, picks = readings(qa["question"], expected(qa["question"]), retrieval, reader)
        golds = [normalize_answer(a["text"]) for a in qa.get("answers", [])] if kind in ("answerable", "reworded") else []
        for p in picks:
            passage = normalize_answer(" ".join(s.text for s in p.window))
            rows.append({"qid": qa["id"], "kind": kind, "label": int(any(g and g in passage for g in golds)),
                         "f": features(p, retrieval.qvec)})
        if n % 100 == 0:
            log(f"{n}/{len(asked)} questions")
    return rows


def best_passages(rows: list[dict], judge: Judge) -> dict[str, tuple[str, float]]:
    """Per question, its kind and the judge's probability of its most probable passage."""
    best: dict[str, tuple[str, float]] = {}
    for r in rows:
        p = judge.prob(r["f"])
        if r["qid"] not in best or p > best[r["qid"]][1]:
            best[r["qid"]] = (r["kind"], p)
    return best


def refusal_rates(rows: list[dict], judge: Judge) -> dict:
    """Per kind of question, the share refused (best passage below the threshold)."""
    best = best_passages(rows, judge).values()
    return {k: round(float(np.mean([p < judge.threshold for kk, p in best if kk == k])), 4)
            for k in sorted({k for k, _ in best})}


def at_threshold(judge: Judge, rows: list[dict]) -> Judge:
    """`judge` with the threshold of `train_reader.refusal_threshold` over the answerable questions."""
    probs = [p for kind, p in best_passages(rows, judge).values() if kind == "answerable"]
    return replace(judge, threshold=refusal_threshold(probs))


def fit(rows: list[dict]) -> Judge:
    rows = [r for r in rows if r["kind"] != "reworded"]
    w = fit_logistic(np.array([r["f"] for r in rows], dtype=float), np.array([r["label"] for r in rows], dtype=float))
    return at_threshold(Judge(tuple(float(x) for x in w[:-1]), float(w[-1]), 0.0), rows)


def run(data_dir: Path, reader_dir: Path, per_article: int = 40, seed: int = 13, quick: bool = False,
        log=print) -> dict:
    """Fit the judge for the reader in `reader_dir` and write it into its `reader.json`; returns it."""
    with tempfile.TemporaryDirectory(prefix="citeqa-fit-", ignore_cleanup_errors=True) as work:
        rows = collect(data_dir, Reader(reader_dir), Path(work), per_article, seed, quick, log)
    return write_judge(reader_dir, rows)


def write_judge(reader_dir: Path, rows: list[dict]) -> dict:
    """Fit the judge on `rows` and record it, with its held-out figures, in `reader_dir/reader.json`."""
    judge = fit(rows)
    reader_only = at_threshold(Judge((1.0,) + (0.0,) * (len(FEATURES) - 1), 0.0, 0.0), rows)  # the reader alone
    meta_path = reader_dir / "reader.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["answerable"] = {
        "weights": dict(zip(FEATURES, (round(w, 4) for w in judge.weights))), "bias": round(judge.bias, 4),
        "threshold": round(judge.threshold, 4),
        "held_out": {"questions": len({r["qid"] for r in rows}), "passages": len(rows),
                     "refused": refusal_rates(rows, judge), "refused_reader_only": refusal_rates(rows, reader_only)},
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return meta["answerable"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA_DIR)
    ap.add_argument("--reader", type=Path, default=MODEL_DIR, help="the reader folder whose reader.json to update")
    ap.add_argument("--per-article", type=int, default=40, help="questions asked per article and kind")
    ap.add_argument("--seed", type=int, default=13, help="train_reader's seed (the same held-out articles)")
    ap.add_argument("--quick", action="store_true", help="the quick recipe's held-out articles")
    args = ap.parse_args(argv)
    t0 = time.time()
    out = run(args.data, args.reader, args.per_article, args.seed, args.quick, log)
    log(f"answerable judge {json.dumps(out)} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

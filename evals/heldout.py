"""The held-out suite (`citeqa eval --set held-out`): the agent on training articles it never trained on.

The eval sets are for measuring, never for choosing. A change to how the agent answers (which passage
it answers from, when it refuses) is chosen on this suite, then measured on the eval sets. Its
documents are the articles that `citeqa.train_reader` holds out of training (the same seed), indexed
as `citeqa.fit_answerable` indexes them: half of the v1.1 ones and all the v2 ones. Four kinds of
question (the row's `type`):

- `answerable`: a question of an indexed article;
- `reworded`: such a question as the local model reworded it (`citeqa.paraphrase`, the "held" rows);
- `near-miss`: a SQuAD 2.0 unanswerable question of an indexed v2 article;
- `off-index`: a question of a held-out v1.1 article that is not indexed.

The questions `fit_answerable` fits the judge on are left out; the rest are sampled, `per_article` of
each kind per article. The reworded ones are all asked (fit_answerable measures them but fits nothing on
them). It needs the training data (`../shared/data/squad-train/`).

>>> suite = load()                                                       # doctest: +SKIP
>>> sorted({r["type"] for r in suite.rows})                              # doctest: +SKIP
['answerable', 'near-miss', 'off-index', 'reworded']
"""

from __future__ import annotations

import atexit
import random
import shutil
import tempfile
from pathlib import Path

from citeqa.errors import ConfigError
from citeqa.fit_answerable import article_text, asked_questions, doc_name, held_out_articles, write_docs
from citeqa.train_reader import DATA_DIR
from evals.runner import Suite

FIT_PER_ARTICLE = 40  # the questions per article and kind that `make fit-answerable` fits the judge on


def _row(qa: dict, kind: str, doc_id: str, start: int, text: str) -> dict:
    answers = [a["text"] for a in qa.get("answers", [])] if kind in ("answerable", "reworded") else []
    row = {"id": qa["id"], "user_input": qa["question"], "reference": answers[0] if answers else "",
           "answers": list(dict.fromkeys(answers)), "doc_id": doc_id, "type": kind}
    if answers:
        at = start + qa["answers"][0]["answer_start"]
        if text[at:at + len(answers[0])] == answers[0]:
            row["answer_start_in_doc"] = at
    return row


def rows(indexed: list[dict], missing: list[dict], held_v2: list[dict], per_article: int = 10,
         seed: int = 13, fit_per_article: int = FIT_PER_ARTICLE) -> list[dict]:
    """The suite's question rows (see the module doc), in the eval format of `evals/squad-dev`."""
    asked = asked_questions(indexed, missing, held_v2, fit_per_article, seed)
    fitted = {qa["id"] for qa, kind in asked if kind != "reworded"}
    reworded = {qa["id"].removesuffix("-reworded"): qa for qa, kind in asked if kind == "reworded"}
    rng = random.Random(seed + 7)
    v2 = {id(a) for a in held_v2}  # the indexed articles that have near misses
    out = []
    for i, article in enumerate(indexed + missing):
        on_index = i < len(indexed)
        doc_id = doc_name(article, i) if on_index else f"not-indexed-{doc_name(article, i - len(indexed))}"
        text, starts = article_text(article)
        found = [(qa, starts[j]) for j, p in enumerate(article["paragraphs"]) for qa in p["qas"]]
        for qa, start in found:
            if on_index and qa["id"] in reworded:
                out.append(_row(reworded[qa["id"]], "reworded", doc_id, start, text))
        pools = [("answerable" if on_index else "off-index",
                  [(qa, s) for qa, s in found if not qa.get("is_impossible") and qa["id"] not in fitted])]
        if id(article) in v2:
            pools.append(("near-miss", [(qa, s) for qa, s in found if qa.get("is_impossible") and qa["id"] not in fitted]))
        for kind, pool in pools:
            for qa, start in rng.sample(pool, min(per_article, len(pool))):
                out.append(_row(qa, kind, doc_id, start, text))
    return out


def load(data_dir: Path = DATA_DIR, per_article: int = 10, seed: int = 13,
         fit_per_article: int = FIT_PER_ARTICLE) -> Suite:
    """The suite, its indexed articles written to a temporary folder removed when the process ends."""
    if not (data_dir / "train-v1.1.json").is_file():
        raise ConfigError(f"the held-out suite needs the SQuAD training data, not found in {data_dir}",
                          fix="put train-v1.1.json and v2-dev-extra.json there (../shared/data/squad-train/)")
    indexed, missing, held_v2 = held_out_articles(data_dir, seed, quick=False)
    docs = Path(tempfile.mkdtemp(prefix="citeqa-held-out-"))
    atexit.register(shutil.rmtree, docs, ignore_errors=True)
    write_docs(indexed, docs)
    return Suite("held-out", rows(indexed, missing, held_v2, per_article, seed, fit_per_article), [docs])

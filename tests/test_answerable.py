"""The answerability judge: its features and fit (pure), and its fit through the real agent parts
(real Chroma, embedder and shipped reader) on a small SQuAD-format collection written here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.answerable import FEATURES, Judge, features
from agent.read import Pick
from agent.reader import MODEL_DIR
from agent.retrieve import Sentence
from citeqa import fit_answerable
from citeqa.train_reader import fit_logistic
from citeqa.errors import ConfigError


def _pick(vecs: list[tuple[float, float]], prob: float = 0.5) -> Pick:
    window = [Sentence(f"d#x:s{i}", "d", "d.txt", "d#c0", i, 0, 0, f"Sentence {i}.", np.array(v))
              for i, v in enumerate(vecs)]
    return Pick(window[len(window) // 2], "", prob, window)


def test_features_measure_the_passage_against_the_question() -> None:
    q = np.array([1.0, 0.0])
    close, far = features(_pick([(0.9, 0.1), (1.0, 0.0), (0.8, 0.2)], 0.9), q), features(_pick([(0, 1.0)] * 3, 0.9), q)
    assert close[0] == far[0] > 0 and close[1] == 1.0 and far[1] == 0.0 and close[2] > 0.95 > far[2]


def test_fit_logistic_recovers_known_weights() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (20_000, 2))
    labels = (rng.random(20_000) < 1 / (1 + np.exp(-(x @ [1.5, -2.0] + 0.5)))).astype(float)
    w = fit_logistic(x, labels)
    assert w == pytest.approx([1.5, -2.0, 0.5], abs=0.1)


def test_shipped_judge_is_complete_and_weighs_coverage() -> None:
    meta = json.loads((MODEL_DIR / "reader.json").read_text(encoding="utf-8"))
    judge = Judge.from_meta(meta)
    assert len(judge.weights) == len(FEATURES) and 0 < judge.threshold < 1
    assert judge.prob([2.0, 0.7, 0.7]) > judge.prob([2.0, 0.2, 0.2])  # a passage further from the question
    with pytest.raises(ConfigError, match="fit_answerable"):
        Judge.from_meta({"name": "bare"})


def _article(title: str, facts: list[tuple[str, str, str]], impossible: list[str] = ()) -> dict:
    """One SQuAD-format article: each fact is (sentence, question, answer) in its own paragraph."""
    paragraphs = []
    for i, (sentence, question, answer) in enumerate(facts):
        qas = [{"id": f"{title}-{i}", "question": question,
                "answers": [{"text": answer, "answer_start": sentence.index(answer)}]}]
        qas += [{"id": f"{title}-{i}-x{j}", "question": q, "answers": [], "is_impossible": True}
                for j, q in enumerate(impossible[i:i + 1])]
        paragraphs.append({"context": sentence, "qas": qas})
    return {"title": title, "paragraphs": paragraphs}


BRIDGE = [("The Halden bridge was built by Acme Steel in 1932.", "Who built the Halden bridge?", "Acme Steel"),
          ("Its main span is 240 metres long.", "How long is the main span of the Halden bridge?", "240 metres"),
          ("Tolls on the bridge were abolished in 1990.", "When were the bridge tolls abolished?", "1990")]
FERRY = [("The Marrow Island ferry carries up to 180 passengers.", "How many passengers does the ferry carry?",
          "180"),
         ("It was launched at the Brekke yard in 1987.", "Where was the Marrow Island ferry launched?",
          "the Brekke yard")]
ORCHARD = [("Kestrel Valley Orchard was founded in 1952 by two brothers.", "When was Kestrel Valley Orchard founded?",
            "1952"),
           ("The orchard grows forty kinds of apple.", "How many kinds of apple does the orchard grow?", "forty")]
CASTLE = [("Lyon castle was designed by Mathurin Crucy.", "Who designed Lyon castle?", "Mathurin Crucy")]


def _squad(tmp_path: Path) -> Path:
    """A SQuAD-format training folder of the articles above (v1.1 and v2)."""
    data = tmp_path / "squad"
    data.mkdir()
    v1 = [_article("Bridge", BRIDGE), _article("Ferry", FERRY), _article("Orchard", ORCHARD), _article("Castle", CASTLE)]
    v2 = [_article("Harbour", [("The harbour opened in 1901.", "When did the harbour open?", "1901")],
                   ["When did the harbour close?"])]
    (data / "train-v1.1.json").write_text(json.dumps({"data": v1}), encoding="utf-8")
    (data / "v2-dev-extra.json").write_text(json.dumps({"data": v2}), encoding="utf-8")
    return data


def test_fit_ranking_ranks_the_agents_candidates_and_finds_the_weight_that_separates(tmp_path: Path) -> None:
    """`citeqa.fit_ranking`: the candidates come from the real retrieval and ranking of the held-out
    articles, one row of features each; the grid search prefers the weighting that puts the hit first."""
    from agent.retrieve import CANDIDATES
    from citeqa import fit_ranking

    feats, hits = fit_ranking.collect(_squad(tmp_path), tmp_path / "work", 13, True, lambda m: None)
    assert len(hits) >= 2 and feats.shape[1:] == (CANDIDATES, len(fit_ranking.FEATURES)) and hits.any(1).all()
    assert fit_ranking.figures(feats, hits, fit_ranking.WEIGHTS)[0] == 1.0  # a few sentences: all are read
    # Two candidates: the hit is less similar (dense, the first column) but covers the question (second).
    f = np.zeros((1, 2, len(fit_ranking.FEATURES)))
    f[0, :, 0], f[0, 1, 1] = (0.9, 0.5), 1.0
    best = fit_ranking.grid_search(f, np.array([[False, True]]))
    assert best[fit_ranking.FEATURES[1]] > 0.4 and fit_ranking.figures(f, np.array([[False, True]]), best) == (1.0, 1.0)


def test_fit_through_the_agent_writes_a_judge(tmp_path: Path) -> None:
    data = _squad(tmp_path)
    reader = tmp_path / "reader"
    shutil.copytree(MODEL_DIR, reader)
    meta = json.loads((reader / "reader.json").read_text(encoding="utf-8"))
    del meta["answerable"]
    (reader / "reader.json").write_text(json.dumps(meta), encoding="utf-8")

    out = fit_answerable.run(data, reader, per_article=5, quick=True, log=lambda m: None)

    judge = Judge.from_meta(json.loads((reader / "reader.json").read_text(encoding="utf-8")))
    assert judge.threshold == out["threshold"] and set(out["weights"]) == set(FEATURES)
    held = out["held_out"]
    assert held["questions"] >= 4 and set(held["refused"]) <= {"answerable", "not indexed", "near miss"}
    assert "answerable" in held["refused"] and held["refused"]["answerable"] <= 0.5


def test_held_out_suite_asks_what_the_judge_was_not_fitted_on(tmp_path: Path) -> None:
    """`citeqa eval --set held-out` (evals.heldout): the questions left over by fit_answerable, of four kinds,
    with answer offsets into the files indexed; run through the real agent on the articles above."""
    from evals import heldout, runner
    from citeqa.config import Config

    data = _squad(tmp_path)
    harbour = _article("Harbour", [("The harbour opened in 1901.", "When did the harbour open?", "1901"),
                                   ("Its pier is 90 metres long.", "How long is the harbour pier?", "90 metres")],
                       ["When did the harbour close?", "How wide is the harbour pier?"])
    (data / "v2-dev-extra.json").write_text(json.dumps({"data": [harbour]}), encoding="utf-8")
    indexed, missing, v2 = fit_answerable.held_out_articles(data, 13, quick=False)
    fitted = {qa["id"] for qa, kind in fit_answerable.asked_questions(indexed, missing, v2, 1, 13)}
    suite = heldout.load(data, per_article=5, fit_per_article=1)
    rows = suite.rows
    assert rows and not {r["id"] for r in rows} & fitted
    assert {r["type"] for r in rows} == {"answerable", "near-miss", "off-index"}  # no reworded rows here
    docs = {p.name: p.read_text(encoding="utf-8") for p in suite.doc_paths[0].iterdir()}
    for r in rows:
        if r["type"] == "answerable":
            at = r["answer_start_in_doc"]
            assert docs[r["doc_id"]][at:at + len(r["reference"])] == r["reference"]
        else:
            assert r["answers"] == [] and (r["type"] == "near-miss") == (r["doc_id"] in docs)
    summary, scored = runner.run_suite(suite, Config.resolve(home=tmp_path / "home"))
    assert summary["n"] == len(rows) and set(summary["by_type"]) == {r["type"] for r in rows}


def test_held_out_suite_of_the_real_split_leaves_out_the_fitted_questions() -> None:
    from citeqa.train_reader import DATA_DIR
    from evals import heldout

    if not (DATA_DIR / "train-v1.1.json").is_file():
        pytest.skip(f"no SQuAD training data at {DATA_DIR}")
    indexed, missing, v2 = fit_answerable.held_out_articles(DATA_DIR, 13, quick=False)
    fitted = {qa["id"] for qa, kind in fit_answerable.asked_questions(indexed, missing, v2, 40, 13) if kind != "reworded"}
    rows = heldout.rows(indexed, missing, v2)
    kinds = [r["type"] for r in rows]
    assert not {r["id"] for r in rows} & fitted and len({r["id"] for r in rows}) == len(rows)
    assert {k: kinds.count(k) for k in set(kinds)} == {"answerable": 160, "reworded": 111, "off-index": 100,
                                                        "near-miss": 60}
    assert all("answer_start_in_doc" in r for r in rows if r["answers"])

"""Eval metrics against hand-computed cases, the eval files' integrity, and the runner with fakes.

No network and no model: indexing and the agent are replaced by fakes where the runner is exercised.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from pathlib import Path

import pytest

from evals import metrics as m
from evals.runner import ARTICLE, EVALS_DIR, Suite, baseline_dict, check, load_suite, run_suite, write_report

DOC = "isil-retakes-syria-border-town.txt"


# -- the official SQuAD v1.1 functions, verbatim, as the reference for normalisation and F1 -----------
def official_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_f1_score(prediction, ground_truth):
    prediction_tokens = official_normalize_answer(prediction).split()
    ground_truth_tokens = official_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


PAIRS = [("The Denver Broncos", "Denver Broncos"), ("Broncos won", "Denver Broncos"),
         ("red red red", "red"), ("the big red dog", "a red dog"), ("It's 1973!", "October 1973"),
         ("al-Bukamal crossing", "al-Bukamal"), ("nothing", "something"), ("", "x"), ("An  apple, a day", "apple")]


# -- normalisation, contains, F1 -------------------------------------------------------------------
def test_normalize_hand_cases():
    assert m.normalize_answer("The Quick, Brown-Fox!") == "quick brownfox"
    assert m.normalize_answer("An apple a day") == "apple day"
    assert m.normalize_answer("theater  Anthem") == "theater anthem"  # articles only as whole words
    assert m.normalize_answer("  ") == ""


@pytest.mark.parametrize("pred,gold", PAIRS)
def test_normalize_and_f1_match_official(pred, gold):
    assert m.normalize_answer(pred) == official_normalize_answer(pred)
    assert m.token_f1(pred, [gold]) == pytest.approx(official_f1_score(pred, gold))


def test_token_f1_hand_values_and_max_over_aliases():
    assert m.token_f1("the big red dog", ["a red dog"]) == pytest.approx(0.8)   # p 2/3, r 1
    assert m.token_f1("Denver Broncos", ["Broncos"]) == pytest.approx(2 / 3)    # p 1/2, r 1
    assert m.token_f1("red red red", ["red"]) == pytest.approx(0.5)            # p 1/3, r 1
    assert m.token_f1("Broncos", ["Carolina Panthers", "Denver Broncos"]) == pytest.approx(2 / 3)
    assert m.token_f1("anything", []) == 0.0


def test_exact_contains_whole_tokens():
    assert not m.exact_contains("ISIL captured the town", ["ap"])
    assert not m.exact_contains("ISILs", ["ISIL"])
    assert m.exact_contains("It lies between Syria and Iraq.", ["Iraq and Syria", "Syria and Iraq"])
    assert m.exact_contains("isil", ["The ISIL"])                 # articles and case normalised away
    assert m.exact_contains("the al-Bukamal crossing", ["al-Bukamal"])
    assert not m.exact_contains("anything at all", ["the", ""])    # empty aliases never match
    assert not m.exact_contains("Syria, Iraq and Jordan", ["Syria and Iraq"])  # must be contiguous


def test_markers_are_not_answer_tokens():
    assert m.strip_markers("Eight [8], five [1, 2].") == "Eight , five ."
    row = {"answers": ["8"], "evidence_spans": []}
    assert not m.score_row(row, {"answer": "Eight [8].", "refused": False})["correct"]


# -- citations ------------------------------------------------------------------------------------
def cit(n, start, end, doc="d"):
    return {"n": n, "doc_id": doc, "start_char": start, "end_char": end, "text": f"c{n}"}


EV = [{"doc_id": "d", "start_char": 0, "end_char": 10}]


def test_split_claims():
    assert m.split_claims("ISIL retook it [1]. Rebels had it.[2][3] Then it fell") == [
        ("ISIL retook it .", [1]), ("Rebels had it.", [2, 3]), ("Then it fell", [])]
    assert m.split_claims("The U.S. military helped [1].") == [("The U.S. military helped .", [1])]
    assert m.split_claims("Eight. [4]") == [("Eight.", [4])]
    assert m.split_claims("") == []


def test_citation_recall_precision_hand_cases():
    # one supported sentence of two; one precise citation of two
    assert m.citation_scores("A [1]. B [2].", [cit(1, 5, 8), cit(2, 20, 30)], EV) == (0.5, 0.5)
    # one sentence citing a relevant and an irrelevant passage: supported, precision 1/2
    assert m.citation_scores("A [1][2].", [cit(1, 9, 12), cit(2, 10, 30)], EV) == (1.0, 0.5)
    # [1, 2] list form; both relevant
    assert m.citation_scores("A [1, 2].", [cit(1, 0, 3), cit(2, 4, 6)], EV) == (1.0, 1.0)
    # an uncited sentence is unsupported; a marker with no citation behind it is imprecise
    assert m.citation_scores("A [1]. B. C [7].", [cit(1, 0, 3)], EV) == (pytest.approx(1 / 3), 0.5)
    # other document: no overlap even at the same offsets
    assert m.citation_scores("A [1].", [cit(1, 0, 10, doc="e")], EV) == (0.0, 0.0)
    # no markers at all: every sentence cites every citation
    assert m.citation_scores("ISIL", [cit(1, 0, 4)], EV) == (1.0, 1.0)
    assert m.citation_scores("ISIL", [], EV) == (0.0, 0.0)


def test_evidence_hit_overlap_and_cover():
    ev = [{"doc_id": "d", "start_char": 50, "end_char": 60}]
    assert m.evidence_hit([cit(1, 55, 90)], ev)
    assert not m.evidence_hit([cit(1, 60, 90)], ev)            # half-open: touching is not overlapping
    assert not m.evidence_hit([cit(1, 55, 90)], ev, cover=True)
    assert m.evidence_hit([cit(1, 50, 60)], ev, cover=True)


def test_retrieval_rank():
    ev = [{"doc_id": "d", "start_char": 50, "end_char": 60}]
    chunks = [cit(1, 0, 55), cit(2, 0, 60, doc="e"), cit(3, 40, 90)]
    assert m.retrieval_rank(chunks, ev) == 3
    assert m.retrieval_rank(chunks[:2], ev) is None
    multi = ev + [{"doc_id": "d", "start_char": 0, "end_char": 20}]
    assert m.retrieval_rank(chunks, multi) == 1                # any evidence span counts


# -- per question and aggregate ---------------------------------------------------------------------
SQUAD_ROW = {"id": "q1", "answers": ["Paris", "the city of Paris"], "reference": "Paris",
             "doc_id": "f.txt", "answer_start_in_doc": 100}


def test_score_row_squad_needs_cover():
    answer = {"answer": "It is Paris [1].", "refused": False, "citations": [cit(1, 90, 103, doc="f.txt")],
              "retrieved": [cit(0, 0, 200, doc="f.txt")]}
    s = m.score_row(SQUAD_ROW, answer)
    assert s["correct"] and s["f1"] == 0.5 and s["retrieval_rank"] == 1  # p 1/3, r 1
    assert s["evidence_hit"] is False and s["citation_recall"] == 1.0   # partial: overlaps but not covers
    answer["citations"] = [cit(1, 90, 110, doc="f.txt")]
    assert m.score_row(SQUAD_ROW, answer)["evidence_hit"] is True


def test_score_row_refusals():
    unans = {"answers": []}
    assert m.score_row(unans, {"answer": "", "refused": True}) | {} == {
        "answerable": False, "refused": True, "correct": True, "f1": 1.0, "evidence_hit": None,
        "short_em": None, "short_f1": None, "citation_recall": None, "citation_precision": None, "retrieval_rank": None}
    assert m.score_row(unans, {"answer": "Paris", "refused": False})["correct"] is False
    s = m.score_row(SQUAD_ROW, {"answer": "I cannot find that.", "refused": True, "retrieved": []})
    assert (s["correct"], s["f1"], s["evidence_hit"], s["citation_recall"]) == (False, 0.0, False, None)


def scored(answerable, correct, refused, rank=None, cr=None, cp=None, hit=None, ms=100, t="factoid"):
    return {"answerable": answerable, "correct": correct, "f1": float(correct), "refused": refused,
            "evidence_hit": hit, "citation_recall": cr, "citation_precision": cp, "retrieval_rank": rank,
            "latency_ms": ms, "type": t}


def test_aggregate_hand_case():
    rows = [scored(True, True, False, rank=1, cr=1.0, cp=1.0, hit=True, ms=100),
            scored(True, False, False, rank=4, cr=0.5, cp=0.0, hit=False, ms=200),
            scored(True, False, True, rank=None, hit=False, ms=300, t="number"),
            scored(False, True, True, ms=400, t="unanswerable")]
    a = m.aggregate(rows)
    assert a["n"] == 4
    assert a["accuracy"] == 0.5 and a["answer_accuracy"] == pytest.approx(0.3333)
    assert a["refusal_recall"] == 1.0 and a["false_refusal_rate"] == pytest.approx(0.3333)
    assert a["evidence_hit"] == pytest.approx(0.3333)
    assert a["citation_recall"] == 0.75 and a["citation_precision"] == 0.5   # the two answered rows
    assert a["retrieval_recall_at_5"] == pytest.approx(0.6667)
    assert a["mrr"] == pytest.approx((1 + 0.25 + 0) / 3, abs=1e-4)
    assert a["latency_p50_ms"] == 250.0 and a["latency_p95_ms"] == 385.0
    assert a["by_type"] == {"factoid": 0.5, "number": 0.0, "unanswerable": 1.0}
    assert a["refused_by_type"] == {"factoid": 0.0, "number": 1.0, "unanswerable": 1.0}
    assert m.aggregate([scored(True, True, False, rank=1)])["refusal_recall"] is None


# -- baseline gate and report ----------------------------------------------------------------------
def summary_rows():
    rows = [{"id": "a", "type": "factoid", "question": "Q|a?", "answer": "x" * 300, "correct": True,
             "cited": ["c1"]},
            {"id": "b", "type": "factoid", "question": "Qb?", "answer": "y", "correct": False, "cited": []}]
    summary = {"suite": "t", "n": 2, "accuracy": 0.5, "f1": 0.5, "refusal_recall": None,
               "false_refusal_rate": 0.0, "evidence_hit": 0.5, "citation_recall": 0.5,
               "citation_precision": 0.5, "retrieval_recall_at_5": 1.0, "mrr": 1.0, "latency_p50_ms": 10.0}
    return summary, rows


def test_check_passes_on_equal_baseline_and_ignores_latency():
    summary, rows = summary_rows()
    base = baseline_dict(summary, rows)
    assert base["questions"] == {"a": True, "b": False}
    assert check(summary, rows, base) == []
    assert check(summary, rows, {**base, "accuracy": 0.51, "latency_p50_ms": 1.0}) == []  # within tolerance


def test_check_fails_on_unmeetable_baseline_naming_metric_and_flips():
    summary, rows = summary_rows()
    base = {**baseline_dict(summary, rows), "accuracy": 1.0, "false_refusal_rate": -1.0,
            "refusal_recall": 1.0, "questions": {"a": True, "b": True}}
    failures = check(summary, rows, base)
    assert len(failures) == 3
    acc = next(f for f in failures if f.startswith("accuracy"))
    assert "1.0" in acc and "0.5" in acc and "b" in acc.split("flipped to wrong:")[1]
    assert any(f.startswith("false_refusal_rate") for f in failures)
    assert any(f.startswith("refusal_recall") for f in failures)   # baseline had it, current is null


def test_write_report(tmp_path):
    summary, rows = summary_rows()
    out = tmp_path / "r" / "report.md"
    write_report(out, summary, rows)
    text = out.read_text(encoding="utf-8")
    assert "| accuracy | 0.5 |" in text and "Q\\|a?" in text and "x" * 201 not in text
    assert "| a | factoid |" in text and "| pass |" in text and "| fail |" in text


# -- eval files ------------------------------------------------------------------------------------
def test_article_jsonl_is_valid():
    article = ARTICLE.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in (EVALS_DIR / "article.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 60
    assert len({r["id"] for r in rows}) == len(rows)
    assert sum(1 for r in rows if not r["answers"]) >= 10
    for r in rows:
        assert r["user_input"] and isinstance(r["history"], list), r["id"]
        if r["type"] == "follow_up":
            assert r["history"], r["id"]
        if r["answers"]:
            assert r["evidence_spans"], r["id"]
        for span in r["evidence_spans"]:
            assert span["doc_id"] == DOC
            assert article[span["start_char"]:span["end_char"]] in r["reference_contexts"], r["id"]


def test_squad_dev_answer_spans_are_valid():
    suite = load_suite("squad-dev")
    docs = suite.doc_paths[0]
    answerable = [r for r in suite.rows if r["answers"]]
    assert len(answerable) == 200 and len({r["id"] for r in suite.rows}) == len(suite.rows) == 248
    for r in suite.rows:
        assert (docs / r["doc_id"]).is_file(), r["id"]
    for r in answerable:
        text = (docs / r["doc_id"]).read_text(encoding="utf-8")
        (span,), cover = m.evidence_of(r)
        assert cover and text[span["start_char"]:span["end_char"]] == r["reference"], r["id"]


def test_everyday_evidence_spans_are_the_stored_document_text():
    """Spans index the text citeqa stores (an HTML page's visible text, not its markup), whitespace and all."""
    from index.loaders import load_file

    suite = load_suite("everyday")
    texts = {p.name: load_file(p).text for p in sorted(suite.doc_paths[0].iterdir())}
    assert len(suite.rows) == 44 and len({r["id"] for r in suite.rows}) == 44
    assert sum(1 for r in suite.rows if not r["answers"]) == 10
    assert all(r["history"] for r in suite.rows if r["type"] == "follow_up")
    for r in suite.rows:
        assert bool(r["answers"]) == bool(r["evidence_spans"]), r["id"]
        for span in r["evidence_spans"]:
            cited = texts[span["doc_id"]][span["start_char"]:span["end_char"]]
            assert " ".join(cited.split()) in r["reference_contexts"], r["id"]


def test_load_suite(tmp_path):
    art = load_suite("article")
    assert art.name == "article" and art.doc_paths == [ARTICLE] and ARTICLE.is_file()
    own = tmp_path / "mine.jsonl"
    own.write_text(json.dumps({"id": "x", "user_input": "q", "answers": []}) + "\n", encoding="utf-8")
    assert load_suite(own).doc_paths == [ARTICLE]
    (tmp_path / "docs").mkdir()
    assert load_suite(str(own)) == Suite("mine", [{"id": "x", "user_input": "q", "answers": []}], [tmp_path / "docs"])
    with pytest.raises(FileNotFoundError):
        load_suite("no-such-set")


# -- runner with a fake index and agent --------------------------------------------------------------
class FakeAnswer:
    def __init__(self, d):
        self.d = d

    def to_dict(self):
        return self.d


class FakeAgent:
    """Answers from the gold data: right for answerable rows, refuses the rest."""

    def __init__(self, rows):
        self.by_q = {r["user_input"]: r for r in rows}
        self.calls = []

    def ask(self, question, history=None):
        self.calls.append((question, history))
        r = self.by_q[question]
        if not r["answers"]:
            return FakeAnswer({"answer": "Not in the documents.", "refused": True, "citations": [],
                               "retrieved": [], "latency_ms": 5, "backend": "fake", "model": "m"})
        ev = r["evidence_spans"][0]
        c = {"n": 1, "doc_id": ev["doc_id"], "start_char": ev["start_char"], "end_char": ev["end_char"],
             "text": r["reference_contexts"][0], "chunk_id": "c", "source": "s", "score": 1.0}
        return FakeAnswer({"answer": f"{r['answers'][0]} [1].", "refused": False, "citations": [c],
                           "retrieved": [c], "latency_ms": 10, "backend": "fake", "model": "m"})


def test_run_suite_with_fakes(monkeypatch, tmp_path):
    from index import ingest
    from citeqa.config import Config

    suite = load_suite("article")
    seen = {}
    monkeypatch.setattr(ingest, "add", lambda paths, cfg, progress=None: seen.update(paths=paths, cfg=cfg))
    agent = FakeAgent(suite.rows)
    summary, rows = run_suite(suite, Config.resolve(home=tmp_path, chroma_url=""), progress=False,
                              agent_factory=lambda cfg: agent)
    assert seen["paths"] == [ARTICLE] and seen["cfg"].home != tmp_path and not seen["cfg"].home.exists()
    assert len(agent.calls) == len(suite.rows)
    assert all(h is None for q, h in agent.calls if not suite_row(suite, q)["history"])
    assert all(h for q, h in agent.calls if suite_row(suite, q)["type"] == "follow_up")
    for key in ("accuracy", "f1", "refusal_recall", "evidence_hit", "citation_recall", "citation_precision",
                "retrieval_recall_at_5", "mrr", "answer_accuracy"):
        assert summary[key] == 1.0, key
    assert summary["false_refusal_rate"] == 0.0 and summary["n"] == len(suite.rows)
    assert (summary["suite"], summary["backend"], summary["citation_method"]) == ("article", "fake", "span-overlap")
    assert set(rows[0]) >= {"id", "type", "question", "answer", "refused", "correct", "f1", "evidence_hit",
                            "cited", "latency_ms"}
    assert check(summary, rows, baseline_dict(summary, rows)) == []


def suite_row(suite, question):
    return next(r for r in suite.rows if r["user_input"] == question)

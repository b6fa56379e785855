"""Pure scoring functions for citeqa evaluations (no model, no network, standard library only).

Answer correctness follows the official SQuAD v1.1 evaluation script (normalisation and token F1).
Citation quality follows ALCE (Gao et al., 2023, "Enabling Large Language Models to Generate Text
with Citations"), except that "a passage supports a sentence" is decided by character-span overlap
with the gold evidence spans, not by an NLI model (no NLI model ships in a package here).

>>> exact_contains("It was ISIL [1].", ["ISIL", "Islamic State"])
True
>>> round(token_f1("the big red dog", ["a red dog"]), 3)
0.8
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any, Iterable

Span = dict[str, Any]  # {"doc_id": str, "start_char": int, "end_char": int}

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
# A sentence ends at . ! ? (plus closing quotes/brackets and any [n] markers right after it), when
# followed by the end of text or by whitespace and a character that is not a lower-case letter
# (so "the U.S. military" stays one sentence).
_SENT_END = re.compile(r"[.!?]+[\"')\u201d\u2019]*(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])*(?=\s*$|\s+(?![a-z]))")


# -- answer text ------------------------------------------------------------------------------------
def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation, drop articles, squeeze whitespace.

    >>> normalize_answer("The  Islamic State, (ISIL)!")
    'islamic state isil'
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def strip_markers(text: str) -> str:
    """Remove citation markers such as [1] or [1, 2] so they are not scored as answer tokens.

    >>> strip_markers("Eight [1][2], five [3].")
    'Eight , five .'
    """
    return " ".join(_MARKER.sub(" ", text).split())


def exact_contains(answer: str, aliases: Iterable[str]) -> bool:
    """True when some normalised alias occurs in the normalised answer as whole tokens.

    >>> exact_contains("ISIL captured the town", ["ap"])   # not a raw substring match
    False
    >>> exact_contains("They are from the Islamic State.", ["islamic state"])
    True
    """
    tokens = normalize_answer(answer).split()
    for alias in aliases:
        want = normalize_answer(alias).split()
        if want and any(tokens[i:i + len(want)] == want for i in range(len(tokens) - len(want) + 1)):
            return True
    return False


def _f1(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(answer: str, aliases: Iterable[str]) -> float:
    """Official SQuAD token F1, maximised over the gold aliases (0.0 when there are none).

    Worked example: "the big red dog" -> [big, red, dog]; "a red dog" -> [red, dog];
    2 tokens shared, precision 2/3, recall 2/2, F1 = 2*(2/3)*1/(2/3+1) = 0.8.

    >>> round(token_f1("the big red dog", ["a red dog", "cat"]), 3)
    0.8
    """
    return max((_f1(answer, a) for a in aliases), default=0.0)


# -- spans ------------------------------------------------------------------------------------------
def evidence_of(row: dict) -> tuple[list[Span], bool]:
    """Gold evidence spans of a row, and whether a citation must *cover* them (else overlap is enough).

    Rows with `evidence_spans` (article suite) use them with overlap. SQuAD rows have none: the
    evidence is the gold answer span `[answer_start_in_doc, +len(reference))` and must be covered.

    >>> evidence_of({"doc_id": "d.txt", "reference": "Paris", "answer_start_in_doc": 10})
    ([{'doc_id': 'd.txt', 'start_char': 10, 'end_char': 15}], True)
    """
    if "evidence_spans" in row:
        return list(row["evidence_spans"]), False
    if "answer_start_in_doc" in row:
        start = int(row["answer_start_in_doc"])
        return [{"doc_id": row["doc_id"], "start_char": start, "end_char": start + len(row["reference"])}], True
    return [], False


def overlaps(a: Span, b: Span) -> bool:
    """Same document and the half-open ranges [start, end) share at least one character."""
    return a["doc_id"] == b["doc_id"] and a["start_char"] < b["end_char"] and b["start_char"] < a["end_char"]


def covers(outer: Span, inner: Span) -> bool:
    """Same document and `outer` contains all of `inner`."""
    return (outer["doc_id"] == inner["doc_id"] and outer["start_char"] <= inner["start_char"]
            and inner["end_char"] <= outer["end_char"])


def evidence_hit(citations: list[Span], evidence: list[Span], cover: bool = False) -> bool:
    """True when some citation overlaps (or, with `cover`, fully contains) some evidence span."""
    match = covers if cover else overlaps
    return any(match(c, e) for c in citations for e in evidence)


def retrieval_rank(retrieved: list[Span], evidence: list[Span]) -> int | None:
    """1-based rank of the first retrieved chunk that contains an evidence span; None if none does.

    >>> ev = [{"doc_id": "d", "start_char": 50, "end_char": 60}]
    >>> chunks = [{"doc_id": "d", "start_char": 0, "end_char": 55}, {"doc_id": "d", "start_char": 40, "end_char": 90}]
    >>> retrieval_rank(chunks, ev)
    2
    """
    for rank, chunk in enumerate(retrieved, 1):
        if any(covers(chunk, e) for e in evidence):
            return rank
    return None


# -- citations (ALCE, span overlap) -----------------------------------------------------------------
def split_claims(answer: str) -> list[tuple[str, list[int]]]:
    """Answer sentences with the citation numbers they carry; marker-only fragments are dropped.

    >>> split_claims("ISIL retook it [1]. Rebels had taken it.[2][3] Then it fell")
    [('ISIL retook it .', [1]), ('Rebels had taken it.', [2, 3]), ('Then it fell', [])]
    """
    pieces, start = [], 0
    for m in _SENT_END.finditer(answer):
        pieces.append(answer[start:m.end()])
        start = m.end()
    pieces.append(answer[start:])
    claims = []
    for piece in pieces:
        numbers = [int(n) for group in _MARKER.findall(piece) for n in re.split(r"\s*[,;]\s*", group)]
        text = strip_markers(piece)
        if any(ch.isalnum() for ch in text):
            claims.append((text, numbers))
        elif numbers and claims:  # markers left over after the last sentence end belong to it
            claims[-1][1].extend(numbers)
    return claims


def citation_scores(answer: str, citations: list[dict], evidence: list[Span]) -> tuple[float, float]:
    """ALCE citation (recall, precision) of one answer, with span overlap as the support test.

    A sentence is supported when the union of the spans it cites overlaps an evidence span;
    recall = supported sentences / sentences. A citation (each [n] in each sentence) is precise
    when it alone supports its sentence, or the sentence is supported and would not be without it;
    precision = precise citations / citations. An answer with no [n] markers at all but with
    citations is read as every sentence citing every citation. Worked example, evidence = chars
    0-10 of d: "A [1]. B [2]." with [1] = d:5-8 and [2] = d:20-30 -> recall 1/2, precision 1/2.

    >>> cits = [{"n": 1, "doc_id": "d", "start_char": 5, "end_char": 8},
    ...         {"n": 2, "doc_id": "d", "start_char": 20, "end_char": 30}]
    >>> citation_scores("A [1]. B [2].", cits, [{"doc_id": "d", "start_char": 0, "end_char": 10}])
    (0.5, 0.5)
    """
    claims = split_claims(answer)
    if not claims:
        return 0.0, 0.0
    by_n = {c.get("n"): c for c in citations}
    if citations and not any(numbers for _, numbers in claims):
        claims = [(text, list(by_n)) for text, _ in claims]

    def supports(numbers: list) -> bool:
        return any(overlaps(by_n[n], e) for n in numbers if n in by_n for e in evidence)

    supported = precise = total = 0
    for _, numbers in claims:
        whole = supports(numbers)
        supported += whole
        for i, n in enumerate(numbers):
            total += 1
            rest = numbers[:i] + numbers[i + 1:]
            precise += supports([n]) or (whole and not supports(rest))
    return supported / len(claims), (precise / total if total else 0.0)


# -- one question -----------------------------------------------------------------------------------
def score_row(row: dict, answer: dict) -> dict:
    """Score one eval row against one `Answer.to_dict()`.

    Returns answerable, correct, f1, short_em, short_f1, refused, evidence_hit, citation_recall,
    citation_precision and retrieval_rank; metrics that do not apply to the row are None (evidence,
    retrieval and the short answer's SQuAD EM / F1 only for answerable rows, a refusal or a missing
    short answer scoring 0; citation scores only for answerable rows that were answered).

    >>> row = {"answers": ["ISIL"], "evidence_spans": [{"doc_id": "d", "start_char": 0, "end_char": 9}]}
    >>> ans = {"answer": "ISIL did [1].", "refused": False,
    ...        "citations": [{"n": 1, "doc_id": "d", "start_char": 0, "end_char": 9}],
    ...        "retrieved": [{"doc_id": "d", "start_char": 0, "end_char": 200}]}
    >>> s = score_row(row, {**ans, "short_answer": "ISIL"})
    >>> (s["correct"], s["f1"], s["short_em"], s["citation_recall"], s["retrieval_rank"])
    (True, 0.6667, True, 1.0, 1)
    """
    aliases = list(row.get("answers") or [])
    answerable = bool(aliases)
    refused = bool(answer.get("refused"))
    citations = list(answer.get("citations") or [])
    text = strip_markers(answer.get("answer") or "")
    out: dict[str, Any] = {"answerable": answerable, "refused": refused, "evidence_hit": None,
                           "short_em": None, "short_f1": None,
                           "citation_recall": None, "citation_precision": None, "retrieval_rank": None}
    if not answerable:
        out.update(correct=refused, f1=1.0 if refused else 0.0)
        return out
    evidence, cover = evidence_of(row)
    out["correct"] = not refused and exact_contains(text, aliases)
    out["f1"] = 0.0 if refused else round(token_f1(text, aliases), 4)
    short = "" if refused else answer.get("short_answer") or ""
    out["short_em"] = bool(short) and any(normalize_answer(short) == normalize_answer(a) for a in aliases)
    out["short_f1"] = round(token_f1(short, aliases), 4) if short else 0.0
    out["evidence_hit"] = not refused and evidence_hit(citations, evidence, cover)
    out["retrieval_rank"] = retrieval_rank(list(answer.get("retrieved") or []), evidence)
    if not refused:
        recall, precision = citation_scores(answer.get("answer") or "", citations, evidence)
        out["citation_recall"], out["citation_precision"] = round(recall, 4), round(precision, 4)
    return out


# -- aggregate --------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (as numpy's default), q in [0, 100]; None for no values.

    >>> percentile([10, 20, 30, 40], 50)
    25.0
    """
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def _mean(values: Iterable[float | bool | None]) -> float | None:
    xs = [float(v) for v in values if v is not None]
    return round(sum(xs) / len(xs), 4) if xs else None


def aggregate(scored: list[dict]) -> dict:
    """Suite metrics from `score_row` results (each also carrying `type` and `latency_ms`).

    accuracy is over all rows (answerable answered right + unanswerable refused); answer_accuracy,
    false_refusal_rate, evidence_hit, retrieval_recall_at_5 and mrr over answerable rows;
    citation_recall/precision over answerable rows that were answered; refusal_recall over
    unanswerable rows. A metric with no rows to average over is None.

    >>> aggregate([{"answerable": True, "correct": True, "f1": 1.0, "refused": False, "evidence_hit": True,
    ...             "citation_recall": 1.0, "citation_precision": 0.5, "retrieval_rank": 2, "latency_ms": 100,
    ...             "type": "factoid"},
    ...            {"answerable": False, "correct": False, "f1": 0.0, "refused": False, "evidence_hit": None,
    ...             "citation_recall": None, "citation_precision": None, "retrieval_rank": None,
    ...             "latency_ms": 300, "type": "unanswerable"}])["mrr"]
    0.5
    """
    ans = [s for s in scored if s["answerable"]]
    unans = [s for s in scored if not s["answerable"]]
    answered = [s for s in ans if not s["refused"]]
    latencies = [s["latency_ms"] for s in scored if s.get("latency_ms") is not None]
    ranks = [s["retrieval_rank"] for s in ans]
    types: dict[str, list[dict]] = {}
    for s in scored:
        types.setdefault(s.get("type") or "untyped", []).append(s)
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    return {
        "n": len(scored),
        "accuracy": _mean(s["correct"] for s in scored),
        "answer_accuracy": _mean(s["correct"] for s in ans),
        "f1": _mean(s["f1"] for s in scored),
        "short_em": _mean(s.get("short_em") for s in ans),
        "short_f1": _mean(s.get("short_f1") for s in ans),
        "refusal_recall": _mean(s["refused"] for s in unans),
        "false_refusal_rate": _mean(s["refused"] for s in ans),
        "evidence_hit": _mean(s["evidence_hit"] for s in ans),
        "citation_recall": _mean(s["citation_recall"] for s in answered),
        "citation_precision": _mean(s["citation_precision"] for s in answered),
        "retrieval_recall_at_5": _mean(r is not None and r <= 5 for r in ranks),
        "mrr": _mean(1 / r if r else 0.0 for r in ranks),
        "latency_p50_ms": None if p50 is None else round(p50, 1),
        "latency_p95_ms": None if p95 is None else round(p95, 1),
        "by_type": {t: _mean(s["correct"] for s in v) for t, v in sorted(types.items())},
        "refused_by_type": {t: _mean(s["refused"] for s in v) for t, v in sorted(types.items())},
    }


__all__ = ["normalize_answer", "strip_markers", "exact_contains", "token_f1", "evidence_of", "overlaps",
           "covers", "evidence_hit", "retrieval_rank", "split_claims", "citation_scores", "score_row",
           "percentile", "aggregate"]

"""Run an eval suite through the real `Agent.ask` path, score it, gate it against a baseline, report it.

>>> suite = load_suite("article")                                  # doctest: +SKIP
>>> summary, rows = run_suite(suite, Config.resolve())             # doctest: +SKIP
>>> check(summary, rows, json.load(open("evals/baseline.json")))   # doctest: +SKIP
[]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from citeqa import BUNDLED_ARTICLE as ARTICLE
from evals.metrics import aggregate, score_row

EVALS_DIR = Path(__file__).parent

GATED_UP = ("accuracy", "f1", "short_f1", "refusal_recall", "evidence_hit", "citation_recall", "citation_precision",
            "retrieval_recall_at_5", "mrr")  # higher is better
GATED_DOWN = ("false_refusal_rate",)        # lower is better


@dataclass
class Suite:
    name: str
    rows: list[dict]
    doc_paths: list[Path]


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


SQUAD_DIR = EVALS_DIR / "squad-dev"
SUITES = ("article", "squad-dev", "squad-v2", "off-index", "held-out", "everyday")


def load_suite(name_or_path: str | Path) -> Suite:
    """"article", "squad-dev", "squad-v2", "off-index", "held-out", a .jsonl file (docs: a sibling docs/
    folder, else the article) or a folder holding questions.jsonl and docs/.

    - squad-v2: the 200 squad-dev questions plus 250 SQuAD v2.0 unanswerable ones over the same documents.
    - off-index: only every other squad-dev document is indexed; all 200 questions are asked, and those
      about a document that is not indexed must be refused.
    - held-out: training articles the reader never trained on, for choosing (`evals.heldout`).
    - everyday: five short documents of other genres (a library page with a table, a router guide, a
      price list, an HTML news page, two biographies) and 44 questions, follow-ups among them, written
      here while trying citeqa as a user (evals/everyday/README.md).
    """
    name = str(name_or_path)
    if name == "held-out":
        from evals.heldout import load

        return load()
    if name == "article":
        return Suite("article", _read_jsonl(EVALS_DIR / "article.jsonl"), [ARTICLE])
    if name == "squad-v2":
        rows = _read_jsonl(SQUAD_DIR / "questions.jsonl") + _read_jsonl(SQUAD_DIR / "unanswerable-v2.jsonl")
        return Suite("squad-v2", rows, [SQUAD_DIR / "docs"])
    if name == "off-index":
        return off_index_suite(_read_jsonl(SQUAD_DIR / "questions.jsonl"), sorted((SQUAD_DIR / "docs").glob("*.txt")))
    path = {"squad-dev": SQUAD_DIR, "everyday": EVALS_DIR / "everyday"}.get(name) or Path(name_or_path)
    extra: list[dict] = []
    if path.is_dir():  # a suite folder: questions.jsonl, plus unanswerable.jsonl when there is one
        if (path / "unanswerable.jsonl").is_file():
            extra = _read_jsonl(path / "unanswerable.jsonl")
        path = path / "questions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no eval set {name!r}: use one of {', '.join(SUITES)} or a .jsonl path")
    docs = path.parent / "docs"
    name = path.parent.name if path.stem == "questions" else path.stem
    return Suite(name, _read_jsonl(path) + extra, [docs] if docs.is_dir() else [ARTICLE])


def off_index_suite(rows: list[dict], docs: list[Path]) -> Suite:
    """Index every other document (sorted by name); a question about one left out becomes unanswerable.

    >>> s = off_index_suite([{"id": "1", "doc_id": "a.txt", "answers": ["x"]},
    ...                      {"id": "2", "doc_id": "b.txt", "answers": ["y"]}], [Path("a.txt"), Path("b.txt")])
    >>> [p.name for p in s.doc_paths], [(r["answers"], r["type"]) for r in s.rows]
    (['a.txt'], [(['x'], 'indexed'), ([], 'off-index')])
    """
    indexed = docs[::2]
    names = {p.name for p in indexed}
    out = [{**r, "type": "indexed"} if r["doc_id"] in names else
           {**r, "answers": [], "reference": "", "type": "off-index"} for r in rows]
    return Suite("off-index", out, indexed)


def _drop_collection(cfg: Any) -> None:
    """Delete the eval collection (and its companion collections) from a Chroma server."""
    from index.store import connect

    client = connect(cfg)
    for c in client.list_collections():
        name = c if isinstance(c, str) else c.name
        if name == cfg.collection or name.startswith(cfg.collection + "-"):
            client.delete_collection(name)


def run_suite(suite: Suite, cfg: Any, backend: str | None = None, progress: bool | None = None,
              agent_factory: Callable[[Any], Any] | None = None) -> tuple[dict, list[dict]]:
    """Index the suite's documents into a fresh temporary collection, ask every question with one
    Agent (`agent.ask(question, history=...)`, as users do) and score the answers.

    Returns (summary, rows): summary holds the metrics of `evals.metrics.aggregate` plus suite,
    backend, model and citation_method; rows hold one scored record per question.
    """
    from index import ingest

    if progress is None:
        progress = sys.stderr.isatty()
    home = Path(tempfile.mkdtemp(prefix="citeqa-eval-"))
    run_cfg = cfg.with_(home=home, collection=f"citeqa-eval-{uuid.uuid4().hex[:12]}", backend=backend)
    try:
        ingest.add(list(suite.doc_paths), run_cfg, progress=progress)
        if agent_factory is None:
            from agent import Agent

            agent_factory = lambda c: Agent(config=c)  # noqa: E731
        agent = agent_factory(run_cfg)
        answers, rows = [], []
        for row in _bar(suite.rows, progress, suite.name):
            answer = agent.ask(row["user_input"], history=row.get("history") or None).to_dict()
            answers.append(answer)
            rows.append(_result(row, answer))
    finally:
        if run_cfg.chroma_url:
            try:
                _drop_collection(run_cfg)
            except Exception as exc:  # cleanup must not hide the run's own error
                print(f"warning: could not delete eval collection {run_cfg.collection}: {exc}", file=sys.stderr)
        shutil.rmtree(home, ignore_errors=True)
    first = answers[0] if answers else {}
    summary = {"suite": suite.name, **aggregate(rows),
               "backend": first.get("backend") or run_cfg.backend,
               "model": first.get("model") or run_cfg.model,
               "citation_method": "span-overlap"}
    return summary, rows


def _bar(rows: list[dict], enabled: bool, name: str):
    from tqdm import tqdm

    return tqdm(rows, desc=f"eval {name}", unit="q", disable=not enabled, file=sys.stderr)


def _result(row: dict, answer: dict) -> dict:
    return {"id": row["id"], "type": row.get("type") or ("answerable" if row.get("answers") else "unanswerable"),
            "question": row["user_input"], "answer": answer.get("answer", ""),
            **score_row(row, answer),
            "cited": [c.get("text", "") for c in answer.get("citations") or []],
            "latency_ms": answer.get("latency_ms")}


def baseline_dict(summary: dict, rows: list[dict]) -> dict:
    """The summary plus {"questions": {id: correct}}: what `evals/baseline.json` holds."""
    return {**summary, "questions": {r["id"]: bool(r["correct"]) for r in rows}}


def check(summary: dict, rows: list[dict], baseline: dict, tolerance: float = 0.02) -> list[str]:
    """Regressions against a baseline, one line per failing metric; an empty list means pass.

    Latency is not gated. Metrics the baseline does not have (or has as null) are skipped.
    """
    was = baseline.get("questions") or {}
    flipped = [r["id"] for r in rows if was.get(r["id"]) is True and not r["correct"]]
    flips = f"; flipped to wrong: {', '.join(flipped)}" if flipped else ""
    failures = []
    for metric in GATED_UP + GATED_DOWN:
        base, now = baseline.get(metric), summary.get(metric)
        if base is None:
            continue
        worse = now is None or (now < base - tolerance if metric in GATED_UP else now > base + tolerance)
        if worse:
            failures.append(f"{metric}: baseline {base}, current {now} (tolerance {tolerance}){flips}")
    return failures


def _cell(value: Any, limit: int | None = None) -> str:
    text = "" if value is None else str(value)
    if limit and len(text) > limit:
        text = text[:limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def write_report(path: str | Path, summary: dict, rows: list[dict]) -> None:
    """Markdown report: a metrics table, then one table row per question."""
    lines = [f"# Eval report: {summary.get('suite', '')}", "",
             "Generated by `make eval` (`citeqa eval --report`): do not edit; the figures that matter are in "
             "docs/evals.md.", "",
             f"backend `{summary.get('backend')}`, model `{summary.get('model') or '-'}`, "
             f"citations scored by {summary.get('citation_method')}", "",
             "| metric | value |", "|---|---|"]
    for key, value in summary.items():
        if key in ("suite", "backend", "model", "citation_method", "by_type", "refused_by_type", "questions"):
            continue
        lines.append(f"| {key} | {_cell(value)} |")
    for t, acc in (summary.get("by_type") or {}).items():
        lines.append(f"| accuracy[{_cell(t)}] | {_cell(acc)} |")
    for t, refused in (summary.get("refused_by_type") or {}).items():
        lines.append(f"| refused[{_cell(t)}] | {_cell(refused)} |")
    lines += ["", "| id | type | question | answer | result | cited |", "|---|---|---|---|---|---|"]
    for r in rows:
        cited = " / ".join(r.get("cited") or [])
        lines.append(f"| {_cell(r['id'])} | {_cell(r['type'])} | {_cell(r['question'])} | "
                     f"{_cell(r['answer'], 200)} | {'pass' if r['correct'] else 'fail'} | {_cell(cited, 200)} |")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = ["Suite", "load_suite", "run_suite", "baseline_dict", "check", "write_report"]

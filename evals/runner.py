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

from evals.metrics import aggregate, score_row

EVALS_DIR = Path(__file__).parent
DATA_DIR = EVALS_DIR.parent / "data"
ARTICLE = DATA_DIR / "isil-retakes-syria-border-town.txt"

GATED_UP = ("accuracy", "f1", "refusal_recall", "evidence_hit", "citation_recall", "citation_precision",
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


def load_suite(name_or_path: str | Path) -> Suite:
    """"article", "squad-dev", a .jsonl file (docs: a sibling docs/ folder, else the article) or a
    folder holding questions.jsonl and docs/."""
    if str(name_or_path) == "article":
        return Suite("article", _read_jsonl(EVALS_DIR / "article.jsonl"), [ARTICLE])
    path = EVALS_DIR / "squad-dev" if str(name_or_path) == "squad-dev" else Path(name_or_path)
    extra: list[dict] = []
    if path.is_dir():  # a suite folder: questions.jsonl, plus unanswerable.jsonl when there is one
        if (path / "unanswerable.jsonl").is_file():
            extra = _read_jsonl(path / "unanswerable.jsonl")
        path = path / "questions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no eval set {str(name_or_path)!r}: use article, squad-dev or a .jsonl path")
    docs = path.parent / "docs"
    name = path.parent.name if path.stem == "questions" else path.stem
    return Suite(name, _read_jsonl(path) + extra, [docs] if docs.is_dir() else [ARTICLE])


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
             f"backend `{summary.get('backend')}`, model `{summary.get('model') or '-'}`, "
             f"citations scored by {summary.get('citation_method')}", "",
             "| metric | value |", "|---|---|"]
    for key, value in summary.items():
        if key in ("suite", "backend", "model", "citation_method", "by_type", "questions"):
            continue
        lines.append(f"| {key} | {_cell(value)} |")
    for t, acc in (summary.get("by_type") or {}).items():
        lines.append(f"| accuracy[{_cell(t)}] | {_cell(acc)} |")
    lines += ["", "| id | type | question | answer | result | cited |", "|---|---|---|---|---|---|"]
    for r in rows:
        cited = " / ".join(r.get("cited") or [])
        lines.append(f"| {_cell(r['id'])} | {_cell(r['type'])} | {_cell(r['question'])} | "
                     f"{_cell(r['answer'], 200)} | {'pass' if r['correct'] else 'fail'} | {_cell(cited, 200)} |")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = ["Suite", "load_suite", "run_suite", "baseline_dict", "check", "write_report"]

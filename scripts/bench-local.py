#!/usr/bin/env python
"""Seconds per answer and tokens/s of the `local` backend against `extractive`, on article questions.

    .venv/bin/python scripts/bench-local.py                       # 10 answerable + 5 unanswerable
    .venv/bin/python scripts/bench-local.py --answerable 3 --unanswerable 1 --json out.json
    .venv/bin/python scripts/bench-local.py --dump-prompts prompts.json   # the local model's exact
        chat messages, no model run (feeds scripts/gpu-llama-bench.py on a machine without the index)

Scoring is loose: an answerable question is right when the answer contains one of the row's
`answers` (case-insensitive) and is not refused; an unanswerable one is right when refused.
The article is indexed into a temporary CITEQA_HOME; the local model comes from CITEQA_MODEL_PATH, else
the default GGUF assembled (once) under your usual CITEQA_HOME (default ./.citeqa; `make setup-local`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pick(rows: list[dict], answerable: int, unanswerable: int) -> list[dict]:
    plain = [r for r in rows if not r.get("history")]
    return ([r for r in plain if r["answers"]][:answerable] + [r for r in plain if not r["answers"]][:unanswerable])


def right(row: dict, answer) -> bool:
    if not row["answers"]:
        return answer.refused
    return not answer.refused and any(a.lower() in answer.answer.lower() for a in row["answers"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--answerable", type=int, default=10)
    ap.add_argument("--unanswerable", type=int, default=5)
    ap.add_argument("--json", help="write per-question results and the summary here")
    ap.add_argument("--dump-prompts", help="write the local model's chat messages per question and stop")
    args = ap.parse_args()

    from agent.answer import Agent
    from agent.backends.generative import GenerativeBackend
    from agent.backends.local import LocalBackend
    from agent.backends.prompting import answer_messages
    from citeqa import BUNDLED_ARTICLE
    from index import ingest
    from citeqa.config import Config

    rows = pick([json.loads(line) for line in open(ROOT / "evals" / "article.jsonl") if line.strip()],
                args.answerable, args.unanswerable)
    if not args.dump_prompts and not os.environ.get("CITEQA_MODEL_PATH"):
        from agent.backends.local import default_model_path

        # assembled once under the checkout's default home, not in every temporary one
        os.environ["CITEQA_MODEL_PATH"] = str(default_model_path(Config.resolve().home))
    home = tempfile.mkdtemp(prefix="citeqa-bench-local-")
    os.environ["CITEQA_HOME"] = home
    ingest.add([BUNDLED_ARTICLE], Config.resolve(home=home), progress=False)

    if args.dump_prompts:
        class Capture(GenerativeBackend):  # a generative backend that records its prompt and declines
            name, model, context_size = "capture", "capture", LocalBackend.context_size

            def draft(self, question, passages):
                captured.append({"id": row["id"], "question": question, "messages": answer_messages(question, passages)})
                yield "I don't know"

        agent, captured = Agent(backend="extractive"), []
        agent.backend = Capture()
        for row in rows:
            agent.ask(row["user_input"])
        Path(args.dump_prompts).write_text(json.dumps(captured, indent=1, ensure_ascii=False))
        print(f"wrote {len(captured)} prompts to {args.dump_prompts}")
        return 0

    results, summary = [], {}
    for backend in ("extractive", "local"):
        t0 = time.perf_counter()
        agent = Agent(backend=backend)
        load_s = time.perf_counter() - t0
        agent.ask("warm-up: who retook the border crossing?")  # first call pays one-off costs (imports, caches)
        per = []
        for row in rows:
            t = time.perf_counter()
            a = agent.ask(row["user_input"])
            secs = time.perf_counter() - t
            stats = dict(getattr(agent.backend, "last_stats", {}) or {})
            ok = right(row, a)
            per.append({"backend": backend, "id": row["id"], "type": row["type"], "seconds": round(secs, 2),
                        "right": ok, "refused": a.refused, "answer": a.answer, **{k: round(v, 3) if isinstance(v, float)
                                                                                   else v for k, v in stats.items()}})
            print(f"{backend:10} {row['id']} {secs:6.2f}s {'ok ' if ok else 'BAD'} {a.answer[:90]!r}", flush=True)
        secs = [p["seconds"] for p in per]
        s = {"load_s": round(load_s, 1), "questions": len(per), "right": sum(p["right"] for p in per),
             "seconds_mean": round(statistics.mean(secs), 2), "seconds_median": round(statistics.median(secs), 2),
             "seconds_max": round(max(secs), 2)}
        gen = [p for p in per if p.get("completion_tokens")]
        if gen:
            decode_s = sum(p["total_s"] - p["first_token_s"] for p in gen)
            s.update(prompt_tokens_mean=round(statistics.mean(p["prompt_tokens"] for p in gen)),
                     completion_tokens_mean=round(statistics.mean(p["completion_tokens"] for p in gen), 1),
                     prompt_tokens_per_s=round(sum(p["prompt_tokens"] for p in gen) /
                                               sum(p["first_token_s"] for p in gen), 1),
                     generation_tokens_per_s=round(sum(p["completion_tokens"] - 1 for p in gen) / decode_s, 1))
        summary[backend] = s
        results += per
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "rows": results}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

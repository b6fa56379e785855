#!/usr/bin/env python
"""Load test of the web chat: N concurrent API clients for a bounded time, with an `index add` running.

    .venv/bin/python scripts/loadtest.py                       # 16 clients, 60 s (docs/reliability.md)
    .venv/bin/python scripts/loadtest.py --clients 4 --seconds 10

1. starts `python app.py --port FREE` on 127.0.0.1 over a fresh CITEQA_HOME (the app indexes the
   bundled article on first start) and waits until it serves;
2. runs CLIENTS gradio_client clients in threads, each asking questions from evals/article.jsonl
   through api_name="/chat" in a loop until SECONDS have passed (each request is bounded too);
3. meanwhile runs one `citeqa index add` of another document into the same home;
4. reports requests, errors, answers that are error messages, p50/p95/max latency, throughput, and
   checks the index afterwards: `citeqa index list --json` shows both documents, the store passes
   scripts/killtest.py's invariant check, and the chat still answers.

Prints one JSON line; exit status 1 when the index is not intact or more than 1 % of requests failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from citeqa.servers import ServerStartError, free_port, start, stop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXTRA_DOC = ROOT / "evals" / "squad-dev" / "docs" / "Oxygen.txt"


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--request-timeout", type=float, default=120)
    p.add_argument("--no-index-add", action="store_true", help="skip the concurrent `citeqa index add`")
    args = p.parse_args(argv)

    from gradio_client import Client

    work = Path(tempfile.mkdtemp(prefix="citeqa-load-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update(CITEQA_HOME=str(work / "home"), GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    questions = [json.loads(line)["user_input"] for line in (ROOT / "evals" / "article.jsonl").open()
                 if line.strip() and not json.loads(line).get("history")]
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    result: dict = {"clients": args.clients, "seconds": args.seconds}
    t0 = time.monotonic()
    with (work / "app.log").open("w") as log:  # the app writes to its own copy of the file
        try:
            app = start([sys.executable, str(ROOT / "app.py"), "--port", str(port)], port, 300, what="app.py",
                        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        except ServerStartError as exc:
            raise SystemExit(str(exc)) from None
    result["startup_s"] = round(time.monotonic() - t0, 1)
    try:
        latencies: list[float] = []
        errors: list[str] = []
        error_answers: list[str] = []
        lock = threading.Lock()
        run: dict[str, float] = {}  # t0: when every client is connected (set before any is released)
        begin = threading.Barrier(args.clients + 1, action=lambda: run.update(t0=time.monotonic()))

        def client(k: int) -> None:
            try:
                c = Client(url, verbose=False, download_files=False)
            except Exception as exc:  # noqa: BLE001
                with lock:
                    errors.append(f"connect: {type(exc).__name__}: {exc}")
                begin.wait()
                return
            begin.wait()
            i = k
            while time.monotonic() < run["t0"] + args.seconds:
                q = questions[i % len(questions)]
                i += args.clients
                t = time.monotonic()
                try:
                    job = c.submit(q, api_name="/chat")
                    answer = job.result(timeout=args.request_timeout)
                    with lock:
                        latencies.append(time.monotonic() - t)
                        if not isinstance(answer, str) or answer.startswith("⚠️"):
                            error_answers.append(str(answer)[:200])
                except Exception as exc:  # noqa: BLE001
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}"[:200])

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.clients)]
        for t in threads:
            t.start()
        begin.wait()
        t_run = run["t0"]
        adder = None
        if not args.no_index_add:
            adder = subprocess.Popen([sys.executable, "-m", "citeqa.cli", "index", "add", str(EXTRA_DOC), "--json"],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for t in threads:
            t.join(args.seconds + args.request_timeout + 30)
        wall = time.monotonic() - t_run
        if adder is not None:
            out, err = adder.communicate(timeout=600)
            result["index_add"] = {"returncode": adder.returncode,
                                   "report": json.loads(out.strip().splitlines()[-1]) if out.strip() else None,
                                   "stderr_tail": err.strip()[-300:]}
        n = len(latencies) + len(errors)
        result.update({
            "requests": n, "completed": len(latencies), "errors": len(errors), "error_answers": len(error_answers),
            "error_samples": (errors + error_answers)[:5],
            "p50_s": round(pct(latencies, 0.5), 2), "p95_s": round(pct(latencies, 0.95), 2),
            "max_s": round(max(latencies, default=0.0), 2),
            "mean_s": round(statistics.fmean(latencies), 2) if latencies else 0.0,
            "throughput_rps": round(len(latencies) / wall, 2), "wall_s": round(wall, 1),
        })
        # still serving?
        after = Client(url, verbose=False, download_files=False).predict("Who retook the al-Hamdan airbase?",
                                                                          api_name="/chat")
        result["answers_after"] = isinstance(after, str) and "[1]" in after
        result["answer_after"] = str(after)[:200]
    finally:
        stop(app, 30)

    # the index afterwards: both documents listed, the write protocol's invariants hold
    listing = subprocess.run([sys.executable, "-m", "citeqa.cli", "index", "list", "--json"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    docs = [d["doc_id"] for d in json.loads(listing.stdout)["documents"]] if listing.returncode == 0 else []
    os.environ["CITEQA_HOME"] = env["CITEQA_HOME"]
    from citeqa.config import Config
    from scripts.killtest import check, open_store  # noqa: E402

    problems = check(open_store(Config.resolve(home=env["CITEQA_HOME"])))
    expect = {"isil-retakes-syria-border-town.txt"} | (set() if args.no_index_add else {EXTRA_DOC.name})
    result["index_after"] = {"documents": docs, "problems": problems}
    ok = (set(docs) == expect and not problems and result.get("answers_after")
          and result["errors"] + result["error_answers"] <= 0.01 * max(1, result["requests"]))
    result["ok"] = bool(ok)
    app_log = (work / "app.log").read_text(errors="replace")
    result["app_log_errors"] = [line for line in app_log.splitlines() if "Error" in line][-8:]
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        result["kept"] = str(work)
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Crash test: `kill -9` a real `citeqa index add` at random moments and check nothing is lost.

    .venv/bin/python scripts/killtest.py 50            # 50 kills (slow: each start loads the model)
    .venv/bin/python scripts/killtest.py 3 --json      # what tests/test_reliability.py runs

Set-up: ~20 generated documents in two versions, v0/ and v1/ (v1 changes 8 of them). Cycle i copies
v{i%2} over the files of one folder, docs/ (an edit in place, so the add replaces documents: a file
from another folder would get its own doc id), and starts `python -m citeqa.cli index add docs` as a subprocess
and kills it with SIGKILL at one of three kinds of moment: "pending" (40 %) the moment a read-only
peek at Chroma's SQLite file shows a manifest record marked pending/stale, i.e. a document half
written; "write window" (40 %) a random time within the write phase (after the Chroma files first
change); "random" (20 %) a uniformly random time since start (loading, opening, recovering).
After each kill this script

1. opens the store (no model needed) and counts what the killed writer left half done (pending /
   stale manifest records), then runs `Store.recover()`, and checks the invariants below;
2. re-runs `index add docs` to completion (in-process, the same `ingest.add` the CLI calls), and
   checks the invariants again plus: the manifest is exactly the doc ids of v{i%2} at their sha256.

Invariants: no pending/stale left; for each ready document, the chunk and sentence records carrying
its committed sha256 number exactly `chunks` / `sentences` of its manifest record, with no gaps or
duplicate positions; no record whose (doc_id, sha256) is not committed; a dense query works.

Prints one JSON line: {"kills", "survived", "finished_before_kill", "half_done_found", "failures", ...}.
Exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("river bridge council harbour engine winter market garden tower station museum village "
         "railway festival mountain library factory island valley forest castle theatre school "
         "hospital airport canal quarry mill lighthouse orchard vineyard stadium cathedral").split()
VERBS = "opened closed rebuilt expanded sold repaired renamed visited flooded painted".split()


def make_docs(folder: Path, n: int, seed: int) -> None:
    """v0/doc-XX.txt and v1/doc-XX.txt: v1 changes every doc whose number is divisible by 5 or by 3 (8 of 20)."""
    rng = random.Random(seed)
    for v in ("v0", "v1"):
        (folder / v).mkdir(parents=True, exist_ok=True)
    for d in range(n):
        sentences = []
        for s in range(rng.randint(10, 18)):
            a, b = rng.sample(WORDS, 2)
            sentences.append(f"In {1800 + rng.randint(0, 220)} the {a} of Town{d} was {rng.choice(VERBS)} "
                             f"near the {b}, and {rng.randint(2, 900)} people came to see it.")
        text = f"Document {d} about Town{d}.\n\n" + " ".join(sentences) + "\n"
        (folder / "v0" / f"doc-{d:02d}.txt").write_text(text, encoding="utf-8")
        if d % 5 == 0 or d % 3 == 0:
            text = text.replace("people", "visitors") + f"Town{d} was revised in version one.\n"
        (folder / "v1" / f"doc-{d:02d}.txt").write_text(text, encoding="utf-8")


def expected(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.txt"))}


def _release() -> None:
    """Drop this process's cached Chroma clients so the next subprocess is the only writer."""
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


def open_store(cfg):
    from index.embedding import BUNDLED_MODEL_NAME
    from index.store import Store

    return Store(cfg, BUNDLED_MODEL_NAME, 384, create=False)


def check(store, want: dict[str, str] | None = None) -> list[str]:
    """Violations of the write protocol's invariants (empty list = consistent)."""
    import numpy as np

    problems = []
    docs = store.documents()
    committed = {}
    for d in docs.values():
        if d.pending or d.stale:
            problems.append(f"{d.doc_id}: pending={d.pending[:8]} stale={d.stale[:8]} left after recovery")
        if d.status != "ready":
            problems.append(f"{d.doc_id}: status {d.status!r} after recovery")
        else:
            committed[d.doc_id] = d
    for name, col, count_key, pos_key in (("chunks", store.chunks, "chunks", "chunk_index"),
                                          ("sentences", store.sents, "sentences", "pos")):
        got = col.get(include=["metadatas"])
        positions: dict[str, list[int]] = {}
        for rid, m in zip(got["ids"], got["metadatas"]):
            rec = committed.get(m.get("doc_id"))
            if rec is None or rec.sha256 != m.get("sha256"):
                problems.append(f"{name} record {rid} belongs to no committed version")
                continue
            positions.setdefault(rec.doc_id, []).append(int(m.get(pos_key, -1)))
        for doc_id, rec in committed.items():
            pos = sorted(positions.get(doc_id, []))
            if pos != list(range(getattr(rec, count_key))):
                dup = len(pos) - len(set(pos))
                problems.append(f"{doc_id}: {len(pos)} {name} records ({dup} duplicate positions), "
                                f"manifest says {getattr(rec, count_key)}")
        if col.count():
            vec = np.random.default_rng(0).normal(size=384).astype("float32")
            try:
                col.query(query_embeddings=[vec / np.linalg.norm(vec)], n_results=min(5, col.count()))
            except Exception as exc:  # noqa: BLE001 — any failure here is a finding
                problems.append(f"{name}: dense query failed ({type(exc).__name__}: {exc})")
    if want is not None:
        have = {d.doc_id: d.sha256 for d in committed.values()}
        if have != want:
            missing = sorted(set(want) - set(have))
            wrong = sorted(k for k in want if k in have and have[k] != want[k])
            extra = sorted(set(have) - set(want))
            problems.append(f"manifest differs from the folder: missing {missing}, wrong version {wrong}, "
                            f"extra {extra}")
    return problems


def sqlite_mtime(chroma: Path) -> float:
    try:
        return max(p.stat().st_mtime_ns for p in chroma.rglob("*") if p.is_file())
    except ValueError:
        return 0.0


def half_written(chroma: Path) -> bool:
    """Whether the manifest holds a pending/stale mark now (read-only peek at Chroma's SQLite file)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{chroma / 'chroma.sqlite3'}?mode=ro", uri=True, timeout=0.2)
        try:
            return bool(con.execute("SELECT 1 FROM embedding_metadata WHERE key IN ('pending', 'stale') "
                                    "AND string_value != '' LIMIT 1").fetchone())
        finally:
            con.close()
    except sqlite3.Error:
        return False


def checkout(version: Path, folder: Path) -> Path:
    """Make `folder` hold the files of `version` (the same paths, edited in place)."""
    shutil.copytree(version, folder, dirs_exist_ok=True)
    return folder


def start_add(folder: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "citeqa.cli", "index", "add", str(folder), "--json"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def timed_full_add(folder: Path, env: dict, chroma: Path) -> tuple[float, float]:
    """Run add to completion; return (seconds to first write, seconds of writing)."""
    before = sqlite_mtime(chroma)
    t0 = time.monotonic()
    proc = start_add(folder, env)
    first = None
    while proc.poll() is None:
        if first is None and sqlite_mtime(chroma) != before:
            first = time.monotonic() - t0
        time.sleep(0.02)
    total = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"calibration add failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    first = first if first is not None else total * 0.7
    return first, total - first


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("kills", type=int, nargs="?", default=10)
    p.add_argument("--docs", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", help="keep files here (default: a temporary folder, removed after)")
    p.add_argument("--random-share", type=float, default=0.2,
                   help="share of kills at a uniformly random time since start")
    p.add_argument("--pending-share", type=float, default=0.4,
                   help="share of kills the moment a half-written document (pending/stale) is seen")
    p.add_argument("--json", action="store_true", help="only the JSON summary on stdout")
    args = p.parse_args(argv)

    from index import ingest
    from citeqa.config import Config

    work = Path(args.workdir or tempfile.mkdtemp(prefix="citeqa-killtest-"))
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    make_docs(work / "src", args.docs, args.seed)
    versions = [work / "src" / "v0", work / "src" / "v1"]
    wants = [expected(v) for v in versions]
    docs = work / "docs"
    shutil.rmtree(docs, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update(CITEQA_HOME=str(home), PYTHONUNBUFFERED="1")
    os.environ["CITEQA_HOME"] = str(home)
    cfg = Config.resolve(home=str(home))
    chroma = cfg.chroma_path
    rng = random.Random(args.seed)
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    t_start = time.monotonic()

    failures: list[dict] = []
    # calibration: v0 from scratch, to completion, timing when writing starts and how long it lasts
    load0, write0 = timed_full_add(checkout(versions[0], docs), env, chroma)
    problems = check(open_store(cfg), wants[0])
    _release()
    if problems:
        failures.append({"cycle": 0, "phase": "calibration", "problems": problems})
    say(f"calibration: first write after {load0:.1f} s, writing for {write0:.1f} s")
    load1, write1 = load0, write0 * 0.6  # later cycles rewrite 8 of 20 documents

    kills = finished = half_done = 0
    modes: dict[str, int] = {}
    survived = 0
    for i in range(1, args.kills + 1):
        ver = i % 2  # v0 is in the store after calibration: cycle 1 writes v1 over it, cycle 2 v0, ...
        before = sqlite_mtime(chroma)
        r = rng.random()
        mode = "random" if r < args.random_share else \
            "pending" if r < args.random_share + args.pending_share else "write window"
        t0 = time.monotonic()
        proc = start_add(checkout(versions[ver], docs), env)
        if mode == "pending":
            while proc.poll() is None and not half_written(chroma):
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.05))
        elif mode == "write window":
            deadline = None
            while proc.poll() is None:
                now = time.monotonic()
                if deadline is None and sqlite_mtime(chroma) != before:
                    deadline = now + rng.uniform(0, max(write1, 0.5))
                if deadline is not None and now >= deadline:
                    break
                time.sleep(0.01)
        else:
            deadline = t0 + rng.uniform(0, load1 + write1)
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
        at = time.monotonic() - t0
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            what = "killed"
        else:
            finished += 1
            what = f"finished (rc {proc.returncode}) before the kill"
        proc.stderr.close()

        store = open_store(cfg)
        left = [d.doc_id for d in store.documents().values() if d.pending or d.stale or d.status != "ready"]
        half_done += bool(left)
        store.recover()
        problems = check(store)
        _release()
        ingest.add([docs], cfg, progress=False)  # re-run to completion (recovers first)
        _release()
        problems += check(open_store(cfg), wants[ver])
        _release()
        if problems:
            failures.append({"cycle": i, "killed_at_s": round(at, 2), "mode": mode,
                             "half_done": left, "problems": problems[:10]})
        elif what == "killed":
            survived += 1
        modes[mode] = modes.get(mode, 0) + 1
        say(f"cycle {i}: {what} at {at:.1f} s ({mode}); "
            f"half-done docs {len(left)}; {'OK' if not problems else 'FAIL ' + '; '.join(problems[:3])}")

    summary = {"kills": kills, "survived": survived, "finished_before_kill": finished,
               "half_done_found": half_done, "failures": failures, "docs": args.docs, "modes": modes,
               "calibration": {"first_write_s": round(load1, 1), "write_window_s": round(write1, 1)},
               "seconds": round(time.monotonic() - t_start, 1)}
    print(json.dumps(summary))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

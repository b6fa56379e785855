"""Ingest time and peak memory of one big text file: `citeqa index add` in a fresh CITEQA_HOME.

    .venv/bin/python scripts/bench-ingest.py 1 10 50              # sizes in MB; one JSON line per size
    .venv/bin/python scripts/bench-ingest.py --no-encoder 1 10 50 # everything but the sentence encoder

The file is the bundled article repeated, each copy numbered ("Part 17.") so that no two sentences
are the same. Each size is indexed by its own subprocess (`ingest.add`, what `citeqa index add`
runs) in a fresh CITEQA_HOME; peak RSS and CPU time (user + system: what the
run costs whatever else the machine runs) are that process's own (`os.wait4`). With `--no-encoder` the
model is still loaded but `Embedder.encode` returns random unit vectors: the run then measures
loading, chunking, chunk vectors and Chroma writes, the steps that grew quadratically or held the
whole document (issue 16), at sizes the encoder would take hours for on 2 shared cores.
docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from citeqa import BUNDLED_ARTICLE as ARTICLE

ROOT = Path(__file__).resolve().parent.parent


def make_text(path: Path, mb: float) -> int:
    article, size, parts = ARTICLE.read_text(encoding="utf-8"), int(mb * 2**20), []
    n = i = 0
    while n < size:
        parts.append(f"Part {i}. {article}")
        n, i = n + len(parts[-1].encode()) + 2, i + 1
    path.write_text("\n\n".join(parts), encoding="utf-8")
    return path.stat().st_size


def child(doc: str, no_encoder: bool) -> None:
    """Index `doc` into $CITEQA_HOME and print the report as JSON."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from index import ingest
    from citeqa.config import Config
    from index.embedding import Embedder

    if no_encoder:
        rng = np.random.default_rng(0)

        def encode(self, texts, batch_size=0):
            v = rng.normal(size=(len(texts), self.dim)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

        Embedder.encode = encode
    print(json.dumps(ingest.add([Path(doc)], Config.resolve(), progress=False).to_dict()))


def run(mb: float, work: Path, no_encoder: bool) -> dict:
    doc = work / f"big-{mb:g}mb.txt"
    size = make_text(doc, mb)
    env = {**os.environ, "CITEQA_HOME": str(work / f"home-{mb:g}"), "CITEQA_MAX_FILE_MB": "100"}
    t0 = time.perf_counter()
    argv = [sys.executable, __file__, "--child", str(doc)] + (["--no-encoder"] if no_encoder else [])
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    seconds = time.perf_counter() - t0
    report = json.loads(out.strip().splitlines()[-1])
    return {"mb": mb, "encoder": not no_encoder, "bytes": size, "seconds": round(seconds, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "chunks": report["chunks_added"],
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "exit": os.waitstatus_to_exitcode(status)}


def main(argv: list[str]) -> int:
    no_encoder = "--no-encoder" in argv
    if argv and argv[0] == "--child":
        child(argv[1], no_encoder)
        return 0
    sizes = [float(a) for a in argv if a != "--no-encoder"] or [1.0]
    with tempfile.TemporaryDirectory() as tmp:
        for mb in sizes:
            print(json.dumps(run(mb, Path(tmp), no_encoder)), flush=True)
            for p in Path(tmp).iterdir():  # keep the disk use of one size at a time
                subprocess.run(["rm", "-rf", str(p)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

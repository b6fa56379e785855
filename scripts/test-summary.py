"""The last lines of `make test`: tests, eval gate and quick-bench figures, from the reports it wrote.

usage: python scripts/test-summary.py DIR   (DIR holds junit.xml, eval.json and bench.json, as `make test` writes them)
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def tests_line(junit: Path) -> str:
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n, failed, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    counts = [f"{n - failed - errors - skipped} passed"] + [f"{v} {k}" for k, v in
                                                            (("failed", failed), ("errors", errors), ("skipped", skipped)) if v]
    t = float(suite.get("time", 0))
    return f"{', '.join(counts)} in " + (f"{t:.0f} s" if t < 120 else f"{t / 60:.1f} min")


def eval_line(summary: dict) -> str:
    return (f"passed on {summary['suite']} ({summary['n']} questions): answer accuracy {summary['answer_accuracy']:.3f}, "
            f"evidence hit {summary['evidence_hit']:.3f}, refusal {summary['refusal_recall']:.3f}, "
            f"false refusals {summary['false_refusal_rate']:.3f}")


BENCH = [("ask_p50_ms", "ask p50 {:.0f} ms"), ("ask_p95_ms", "p95 {:.0f} ms"), ("cold_start_s", "cold start {:.2f} s"),
         ("cold_start_rss_mb", "cold RSS {:.0f} MB"), ("peak_rss_mb", "peak RSS {:.0f} MB"),
         ("ingest_chunks_per_s", "ingest {:.0f} chunks/s")]


def bench_line(r: dict) -> str:
    return ", ".join(fmt.format(r[key]) for key, fmt in BENCH if isinstance(r.get(key), (int, float)))


def last_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8").strip().splitlines()[-1])


def main(folder: str) -> int:
    d = Path(folder)
    print("\n== make test ==")
    print(f"tests      {tests_line(d / 'junit.xml')}")
    print(f"eval gate  {eval_line(last_json(d / 'eval.json'))}")
    print(f"bench      {bench_line(last_json(d / 'bench.json'))}")
    print(f"reports    {d}/ (junit.xml, eval.json, bench.json: the full JSON)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

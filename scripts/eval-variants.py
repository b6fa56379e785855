"""The article eval on two variants of its document, for docs/evals.md ("The same article, worded as users
keep it"): the article hard-wrapped at 72 columns, as PDFs and plain-text mail come (a space becomes a
line break, so every evidence offset stays), and the article indexed next to the 8 squad-dev documents
(other topics that retrieval must pass over). Each variant is a `citeqa eval --set PATH.jsonl` run over a
temporary folder, about a minute each on 2 cores.

    .venv/bin/python scripts/eval-variants.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTICLE = ROOT / "citeqa" / "data" / "isil-retakes-syria-border-town.txt"
SHOWN = ("answer_accuracy", "refusal_recall", "false_refusal_rate", "short_f1", "evidence_hit", "citation_recall")


def wrapped(text: str, width: int = 72) -> str:
    """Each paragraph filled to `width` columns; the same length as `text`, line breaks for spaces.

    >>> wrapped("One two three four.", 9)
    'One two\\nthree\\nfour.'
    """
    return "\n\n".join(textwrap.fill(p, width, break_long_words=False, break_on_hyphens=False)
                       for p in text.split("\n\n"))


def run(folder: Path) -> dict:
    (folder / "article.jsonl").write_bytes((ROOT / "evals" / "article.jsonl").read_bytes())
    out = subprocess.run([sys.executable, "-m", "citeqa.cli", "eval", "--set", str(folder / "article.jsonl"),
                          "--json"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    text = ARTICLE.read_text(encoding="utf-8")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("wrapped", "distractors"):
            docs = Path(tmp, name, "docs")
            docs.mkdir(parents=True)
            if name == "wrapped":
                (docs / ARTICLE.name).write_text(wrapped(text), encoding="utf-8")
            else:
                shutil.copy(ARTICLE, docs)
                for doc in (ROOT / "evals" / "squad-dev" / "docs").glob("*.txt"):
                    shutil.copy(doc, docs)
            rows[name] = run(docs.parent)
    print("| variant | " + " | ".join(SHOWN) + " |")
    print("|---|" + "---|" * len(SHOWN))
    for name, result in rows.items():
        print(f"| {name} | " + " | ".join(f"{result[k]:.3f}" for k in SHOWN) + " |")


if __name__ == "__main__":
    main()

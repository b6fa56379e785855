"""The offline default: the answer is the evidence sentence(s) themselves, verbatim, each cited.

The work of choosing them is done by retrieval and `agent.select`; this backend only writes them out.
"""

from __future__ import annotations

from typing import Iterator

from agent.cite import Passage


class ExtractiveBackend:
    name = "extractive"
    model = "all-MiniLM-L6-v2 + BM25 (extractive)"
    generative = False

    def draft(self, question: str, passages: list[Passage]) -> Iterator[str]:
        yield " ".join(f"{p.text} [{p.n}]" for p in passages)

    def rewrite(self, question: str, history: list[dict]) -> str:
        raise NotImplementedError("the extractive backend resolves follow-ups deterministically")

"""The offline default: the reader's answer phrase, then the evidence sentence(s) verbatim, each cited.

The work of choosing them is done by retrieval, `agent.select` and the reader (`agent.read`); this
backend only writes them out: "How many prisoners were taken?" -> "At least 15 [1]. The ISIL-affiliated
Amaq news agency ... [1]".
"""

from __future__ import annotations

from typing import Iterator

from agent.cite import Passage


class ExtractiveBackend:
    name = "extractive"
    model = "all-MiniLM-L6-v2 + BM25 + citeqa reader (extractive)"
    generative = False

    def draft(self, question: str, passages: list[Passage]) -> Iterator[str]:
        phrase = passages[0].answer if passages else ""
        if phrase:
            yield f"{phrase[0].upper()}{phrase[1:]} [{passages[0].n}]. "
        yield " ".join(f"{p.text} [{p.n}]" for p in passages)

    def rewrite(self, question: str, history: list[dict]) -> str:
        raise NotImplementedError("the extractive backend resolves follow-ups deterministically")

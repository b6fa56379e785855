"""The offline default: the answer is the evidence sentence(s) themselves, verbatim, each cited.

The work of choosing them is done by retrieval and `agent.select`; this backend only writes them out,
led by the short answer phrase when the first sentence holds exactly one of the asked-for type:
"How many prisoners were taken?" -> "At least 15 [1]. The ISIL-affiliated Amaq news agency ... [1]".
"""

from __future__ import annotations

from typing import Iterator

from agent.answertype import short_answer
from agent.cite import Passage


class ExtractiveBackend:
    name = "extractive"
    model = "all-MiniLM-L6-v2 + BM25 (extractive)"
    generative = False

    def draft(self, question: str, passages: list[Passage]) -> Iterator[str]:
        phrase = short_answer(question, passages[0].text) if passages else None
        if phrase:
            yield f"{phrase[0].upper()}{phrase[1:]} [{passages[0].n}]. "
        yield " ".join(f"{p.text} [{p.n}]" for p in passages)

    def rewrite(self, question: str, history: list[dict]) -> str:
        raise NotImplementedError("the extractive backend resolves follow-ups deterministically")

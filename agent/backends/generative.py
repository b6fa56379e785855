"""What every generative backend shares: it reads the best few sentences, and the model itself rewrites
a follow-up into a standalone question. A subclass gives `draft` and `rewrite` (and `name`, `model`).
"""

from __future__ import annotations

from agent.cite import Passage
from agent.read import Pick
from agent.retrieve import Sentence
from citeqa.config import Config
from index.chunking import count_tokens

CONTEXT_TOKENS = 1200  # budget for the sentences shown to the model


class GenerativeBackend:
    generative = True
    context_size = 4  # sentences shown when CITEQA_CONTEXT_SENTENCES is 0 (`context_for`)

    @classmethod
    def context_for(cls, cfg: Config) -> int:
        """Sentences the model reads: CITEQA_CONTEXT_SENTENCES, else this backend's default."""
        return cfg.context_sentences or cls.context_size

    def rewrite(self, question: str, history: list[dict]) -> str:
        raise NotImplementedError

    def standalone(self, question: str, history: list[dict]) -> tuple[str, str]:
        if not history:
            return question, ""
        return self.rewrite(question, history).strip() or question, ""

    def passages(self, question: str, kind: str, picks: list[Pick], ranking: list[Sentence],
                 threshold: float) -> list[Passage]:
        """The best `context_size` sentences that fit CONTEXT_TOKENS, the reader's first, then the
        ranking's, best first (a 1.5B model misread who did what when shown whole neighbourhoods;
        docs/local.md); none when no pick reaches `threshold`."""
        if not any(p.prob >= threshold for p in picks):
            return []
        ranked = list({s.id: s for s in [p.sentence for p in picks] + ranking}.values())
        return [Passage(i + 1, [s]) for i, s in enumerate(_fitting(ranked, self.context_size))]


def _fitting(sentences: list[Sentence], limit: int) -> list[Sentence]:
    """The first `limit` sentences that fit CONTEXT_TOKENS, in order."""
    chosen, budget = [], CONTEXT_TOKENS
    for s in sentences[:limit]:
        cost = count_tokens(s.text)
        if cost <= budget:
            budget -= cost
            chosen.append(s)
    return chosen

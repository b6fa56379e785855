"""Chat messages for generative backends, from the templates in `prompts/`.

Passages are fenced and numbered; instructions come after the question (small models follow the
last instruction they read, and were seen inventing answers when it came first).
"""

from __future__ import annotations

from agent.cite import MARKER, Passage
from prompts import REFUSAL, load


def answer_messages(question: str, passages: list[Passage]) -> list[dict]:
    body = "\n".join(f"[{p.n}] «{p.text}»" for p in passages)
    return [{"role": "system", "content": load("system").format(refusal=REFUSAL).strip()},
            {"role": "user", "content": load("answer").format(passages=body, question=question,
                                                               refusal=REFUSAL).strip()}]


def condense_messages(question: str, history: list[dict]) -> list[dict]:
    turns = "\n".join(f"{t.get('role', 'user')}: {MARKER.sub('', str(t.get('content', '')))}" for t in history[-6:])
    return [{"role": "user", "content": load("condense").format(history=turns, question=question).strip()}]

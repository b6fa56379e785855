"""Checks at the door of the Python API: a question and a chat history of the wrong shape become a clear
`InputError` instead of an `AttributeError` or `TypeError` deep inside retrieval or condensing.

>>> check_history([{"role": "user", "content": "Who retook the town?"}, {"role": "assistant", "content": "ISIL."}])
[{'role': 'user', 'content': 'Who retook the town?'}, {'role': 'assistant', 'content': 'ISIL.'}]
>>> check_history(None)
[]
>>> check_history("abc")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
citeqa.errors.InputError: the history must be a list of turns, not str. Fix: pass a list like [{"role": "user", ...
>>> check_history([{"role": "system", "content": "Obey."}])
Traceback (most recent call last):
...
citeqa.errors.InputError: history turn 1 has role 'system'. Fix: use "user" or "assistant"
>>> check_question_type(42)
Traceback (most recent call last):
...
citeqa.errors.InputError: the question must be a string, not int. Fix: ask a question in words
"""

from __future__ import annotations

import re
from typing import Any

from citeqa.errors import InputError

ROLES = ("user", "assistant")
_TURN = '{"role": "user", "content": "..."}'
_SHAPE = f'[{_TURN}, {{"role": "assistant", "content": "..."}}]'


def check_question_type(question: Any) -> str:
    """`question` itself when it is a string (emptiness and length are checked later)."""
    if not isinstance(question, str):
        raise InputError(f"the question must be a string, not {type(question).__name__}",
                         fix="ask a question in words")
    return question


def check_history(history: Any) -> list[dict]:
    """The turns of a chat history as [{"role", "content"}] (other keys dropped); None means no history."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise InputError(f"the history must be a list of turns, not {type(history).__name__}",
                         fix=f"pass a list like {_SHAPE}, or none")
    turns = []
    for n, turn in enumerate(history, 1):
        missing = [k for k in ("role", "content") if k not in turn] if isinstance(turn, dict) else []
        if missing or not isinstance(turn, dict):
            what = f"has no {' and no '.join(map(repr, missing))}" if missing else f"is of type {type(turn).__name__}"
            raise InputError(f"history turn {n} {what}; each turn is an object with a role and a content",
                             fix=f"write each turn like {_TURN}")
        if turn["role"] not in ROLES:
            raise InputError(f"history turn {n} has role {turn['role']!r}", fix='use "user" or "assistant"')
        if not isinstance(turn["content"], str):
            raise InputError(f"history turn {n} has content of type {type(turn['content']).__name__}",
                             fix="give each turn's content as a string")
        turns.append({"role": turn["role"], "content": turn["content"]})
    return turns


def as_question(text: str) -> str:
    """`text` ending in a question mark, as every question the reader was trained on does, unless it
    ends in other sentence punctuation. Typed without it, "who retook the al-hamdan airbase" read "The
    New Syrian Army" where "… airbase?" reads "ISIL fighters".

    >>> as_question("who retook the al-hamdan airbase"), as_question("Who retook it?"), as_question("Summarize it.")
    ('who retook the al-hamdan airbase?', 'Who retook it?', 'Summarize it.')
    """
    text = text.rstrip()
    return text if re.search(r"[.?!…]\W*$", text) or not text else text + "?"

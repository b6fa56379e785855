"""Prompt templates, shipped as package data. `load("answer")` returns prompts/answer.txt.

`REFUSAL` is the one sentence citeqa says when the documents do not answer; templates name it as
`{refusal}`, so the model is asked for exactly the sentence that the agent shows and recognises.
"""

from functools import lru_cache
from importlib.resources import files


REFUSAL = "I don't know — the indexed documents don't say."


@lru_cache(maxsize=None)
def load(name: str) -> str:
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")

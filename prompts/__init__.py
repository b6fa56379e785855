"""Prompt templates, shipped as package data. `load("answer")` returns prompts/answer.txt."""

from functools import lru_cache
from importlib.resources import files


@lru_cache(maxsize=None)
def load(name: str) -> str:
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")

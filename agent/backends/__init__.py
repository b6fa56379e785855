"""Backends: one small protocol. A backend turns a question and numbered passages into a draft
whose sentences end with passage markers ([1], [2]); the agent verifies and cites the draft.

Third-party backends register under the entry-point group `citeqa.backends` (name -> factory(cfg)).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Iterator, Protocol

from agent.cite import Passage
from citeqa.config import BACKENDS, Config
from citeqa.errors import ConfigError


class Backend(Protocol):
    name: str
    model: str
    generative: bool  # writes its own text (and can rewrite follow-up questions); False = extractive

    def draft(self, question: str, passages: list[Passage]) -> Iterator[str]:
        """Yield the answer text in pieces, citing passages by number."""
        ...

    def rewrite(self, question: str, history: list[dict]) -> str:
        """A standalone version of a follow-up question (generative backends only)."""
        ...


def get_backend(cfg: Config) -> Backend:
    if cfg.backend == "extractive":
        from agent.backends.extractive import ExtractiveBackend

        return ExtractiveBackend()
    if cfg.backend in ("openai", "openai-compatible"):
        from agent.backends.openai import OpenAIBackend

        return OpenAIBackend(cfg)
    if cfg.backend == "local":
        from agent.backends.local import LocalBackend

        return LocalBackend(cfg)
    for ep in entry_points(group="citeqa.backends"):
        if ep.name == cfg.backend:
            return ep.load()(cfg)
    raise ConfigError(f"unknown backend {cfg.backend!r}", fix=f"use one of: {', '.join(BACKENDS)}")

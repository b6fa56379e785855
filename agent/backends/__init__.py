"""Backends: one small protocol and one registry.

A backend decides what the draft may cite (`passages`), how a follow-up becomes a standalone question
(`standalone`), and writes the draft: text whose sentences end with passage markers ([1], [2]). The
agent verifies and cites whatever it writes. Built-ins and third-party backends share one registry:
a plugin registers a factory `factory(cfg) -> Backend` under the entry-point group `citeqa.backends`,
e.g. in its pyproject.toml::

    [project.entry-points."citeqa.backends"]
    echo = "citeqa_echo:EchoBackend"

and is then chosen like a built-in: `CITEQA_BACKEND=echo` or `citeqa ask --backend echo`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable, Iterator, Protocol

from agent.cite import Passage
from agent.read import Pick
from agent.retrieve import Sentence
from citeqa.config import Config
from citeqa.errors import ConfigError

GROUP = "citeqa.backends"


class Backend(Protocol):
    name: str
    model: str
    generative: bool  # writes its own text (the chat shows it while it streams); False: cites sentences verbatim

    def standalone(self, question: str, history: list[dict]) -> tuple[str, str]:
        """The follow-up `question` as a standalone question, and words of the conversation to search with it."""
        ...

    def passages(self, question: str, kind: str, picks: list[Pick], ranking: list[Sentence],
                 threshold: float) -> list[Passage]:
        """The numbered passages the draft may cite, from the reader's `picks` (the judge's probability,
        best first) and the selection's `ranking`; `kind` is the question's answer type
        (`agent.answertype.expected`). None when no pick reaches `threshold`: nothing is drafted."""
        ...

    def draft(self, question: str, passages: list[Passage]) -> Iterator[str]:
        """Yield the answer text in pieces, citing passages by number."""
        ...


def _extractive(cfg: Config) -> Backend:
    from agent.backends.extractive import ExtractiveBackend

    return ExtractiveBackend()


def _openai(cfg: Config) -> Backend:
    from agent.backends.openai import OpenAIBackend

    return OpenAIBackend(cfg)


def _local(cfg: Config) -> Backend:
    from agent.backends.local import LocalBackend

    return LocalBackend(cfg)


BUILT_INS: dict[str, Callable[[Config], Backend]] = {
    "extractive": _extractive, "openai": _openai, "openai-compatible": _openai, "local": _local}


def registry() -> dict[str, Callable[[Config], Backend]]:
    """Every backend name -> its factory: the built-ins, then the `citeqa.backends` entry points (loaded
    only when chosen; a plugin cannot replace a built-in)."""
    plugins = {ep.name: ep for ep in entry_points(group=GROUP) if ep.name not in BUILT_INS}
    return {**BUILT_INS, **{name: (lambda cfg, ep=ep: ep.load()(cfg)) for name, ep in plugins.items()}}


def get_backend(cfg: Config) -> Backend:
    factories = registry()
    if cfg.backend not in factories:
        raise ConfigError(f"unknown backend {cfg.backend!r}",
                          fix=f"use --backend or CITEQA_BACKEND with one of: {', '.join(factories)}")
    return factories[cfg.backend](cfg)

"""citeqa's answering side: `from agent import Agent`."""

from agent.answer import REFUSAL, Agent, Answer
from agent.cite import Citation

__all__ = ["Agent", "Answer", "Citation", "REFUSAL"]

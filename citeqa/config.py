"""Configuration, resolved once: explicit argument > environment variable > default.

>>> cfg = Config.resolve(collection="notes", home="/tmp/x")
>>> cfg.collection, str(cfg.chroma_path)
('notes', '/tmp/x/chroma')
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from citeqa.errors import ConfigError

RETRIEVALS = ("hybrid", "dense", "bm25")
_COLLECTION_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{1,500}[A-Za-z0-9])$")

# field name -> (environment variable, default, type)
_SETTINGS: dict[str, tuple[str, Any, type]] = {
    "home": ("CITEQA_HOME", ".citeqa", Path),
    "chroma_url": ("CITEQA_CHROMA_URL", "", str),
    "collection": ("CITEQA_COLLECTION", "citeqa", str),
    "backend": ("CITEQA_BACKEND", "extractive", str),
    "model": ("CITEQA_MODEL", "", str),
    "base_url": ("CITEQA_BASE_URL", "", str),
    "api_key": ("CITEQA_API_KEY", "", str),
    "model_path": ("CITEQA_MODEL_PATH", "", str),
    "gpu_layers": ("CITEQA_GPU_LAYERS", -1, int),
    "embed_model": ("CITEQA_EMBED_MODEL", "", str),
    "retrieval": ("CITEQA_RETRIEVAL", "hybrid", str),
    "chunk_tokens": ("CITEQA_CHUNK_TOKENS", 192, int),
    "chunk_overlap": ("CITEQA_CHUNK_OVERLAP", 32, int),
    "max_question_tokens": ("CITEQA_MAX_QUESTION_TOKENS", 256, int),
    "max_file_mb": ("CITEQA_MAX_FILE_MB", 50, int),
    "timeout_s": ("CITEQA_TIMEOUT_S", 60, int),
    "context_sentences": ("CITEQA_CONTEXT_SENTENCES", 0, int),
    "reader": ("CITEQA_READER", "", str),
    "min_confidence": ("CITEQA_MIN_CONFIDENCE", 0.0, float),
    "embed_url": ("CITEQA_EMBED_URL", "", str),
    "embed_api_key": ("CITEQA_EMBED_API_KEY", "", str),
    "host": ("CITEQA_HOST", "127.0.0.1", str),
    "port": ("CITEQA_PORT", 7860, int),
    "auth": ("CITEQA_AUTH", "", str),
}


@dataclass(frozen=True)
class Config:
    home: Path
    chroma_url: str
    collection: str
    backend: str
    model: str
    base_url: str
    api_key: str
    model_path: str
    gpu_layers: int
    embed_model: str
    retrieval: str
    chunk_tokens: int
    chunk_overlap: int
    max_question_tokens: int
    max_file_mb: int
    timeout_s: int
    context_sentences: int  # best sentences shown to a generative backend; 0 = its default (context_for)
    reader: str  # folder of a reader model (reader.json + ONNX); "" = the shipped one
    min_confidence: float  # refuse when no passage reaches this confidence; 0 = the reader's calibrated threshold
    embed_url: str  # an OpenAI-compatible /v1/embeddings server; "" = the in-process encoder
    embed_api_key: str
    host: str  # where the chat listens (app.py, `citeqa chat`)
    port: int
    auth: str  # "user:password" for the chat's login; "" = no login (loopback only)

    @classmethod
    def resolve(cls, **overrides: Any) -> "Config":
        """Build the configuration; `None` overrides fall through to the environment, then defaults."""
        unknown = set(overrides) - set(_SETTINGS)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}",
                              fix=f"use one of: {', '.join(_SETTINGS)}")
        values: dict[str, Any] = {}
        for name, (env, default, kind) in _SETTINGS.items():
            raw = overrides.get(name)
            if raw is None:
                raw = os.environ.get(env) or default
            try:
                values[name] = kind(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{env}={raw!r} is not a valid {kind.__name__}",
                                  fix=f"set {env} to a {kind.__name__}") from None
        if not values["api_key"]:
            values["api_key"] = os.environ.get("OPENAI_API_KEY", "")
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.retrieval not in RETRIEVALS:
            raise ConfigError(f"unknown retrieval mode {self.retrieval!r}",
                              fix=f"set CITEQA_RETRIEVAL to one of: {', '.join(RETRIEVALS)}")
        if not _COLLECTION_RE.match(self.collection) or ".." in self.collection:
            raise ConfigError(
                f"collection name {self.collection!r} is not allowed by Chroma",
                fix="use 3-500 characters: letters, digits, '.', '_' or '-', starting and ending "
                    "with a letter or digit")
        if not 16 <= self.chunk_tokens <= 2048 or not 0 <= self.chunk_overlap < self.chunk_tokens:
            raise ConfigError(f"chunk size {self.chunk_tokens}/{self.chunk_overlap} tokens is out of range",
                              fix="use CITEQA_CHUNK_TOKENS in 16..2048 and an overlap below it")
        if not 0 <= self.min_confidence < 1:
            raise ConfigError(f"CITEQA_MIN_CONFIDENCE={self.min_confidence} is out of range",
                              fix="use a confidence in 0..1 (higher refuses more), or 0 for the reader's "
                                  "calibrated threshold")
        if not 0 <= self.context_sentences <= 50:
            raise ConfigError(f"CITEQA_CONTEXT_SENTENCES={self.context_sentences} is out of range",
                              fix="use 1..50, or 0 for the backend's default (local 1, others 4)")

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def secrets(self) -> list[str]:
        """The secret values that are set (API keys, the chat's password): no message may show them."""
        return [v for v in (self.api_key, self.embed_api_key, self.auth.partition(":")[2]) if v]

    def with_(self, **changes: Any) -> "Config":
        cfg = replace(self, **{k: v for k, v in changes.items() if v is not None})
        cfg.validate()
        return cfg

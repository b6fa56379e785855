"""The package's doors: `citeqa chat`, the shared server-start helper (citeqa.servers), the bundled article
as package data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from citeqa import servers


def test_chat_command_serves_the_chat(indexed: Path, tmp_path: Path) -> None:
    """`citeqa chat --port N`, run from outside the checkout, serves the same page as `python app.py`."""
    port = servers.free_port()
    log = tmp_path / "chat.log"
    with log.open("w") as out:
        try:
            proc = servers.start([sys.executable, "-m", "citeqa.cli", "chat", "--port", str(port)], port,
                                 seconds=180, what="citeqa chat", cwd=tmp_path, stdout=out, stderr=out,
                                 env={**os.environ, "CITEQA_HOME": str(indexed)})
        except servers.ServerStartError as exc:
            pytest.fail(f"{exc}\n{log.read_text()[-3000:]}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200
            assert b"gradio" in page.read().lower()
    finally:
        servers.stop(proc)
    assert f"serving on http://127.0.0.1:{port}" in log.read_text()


def test_chat_command_forwards_only_given_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import app
    from citeqa.cli import main

    seen = []
    monkeypatch.setattr(app, "main", lambda argv: seen.append(argv) or 0)
    assert main(["chat"]) == 0
    assert main(["chat", "--port", "0", "--host", "::1"]) == 0
    assert seen == [[], ["--host=::1", "--port=0"]]


def test_bench_chroma_server_serves_then_stops() -> None:
    import chromadb

    from citeqa import bench

    with bench.chroma_server() as url:
        host, port = url.removeprefix("http://").split(":")
        assert chromadb.HttpClient(host=host, port=int(port)).heartbeat() > 0
    with pytest.raises(servers.ServerStartError):  # stopped on leaving the block
        servers.wait_port(int(port), seconds=0)


def test_wait_port_names_what_did_not_start() -> None:
    with pytest.raises(servers.ServerStartError, match=r"demo did not accept connections on 127\.0\.0\.1:\d+ within 0 s"):
        servers.wait_port(servers.free_port(), seconds=0, what="demo")


def test_the_bundled_article_is_package_data(tmp_path: Path) -> None:
    """A wheel carries the article inside the citeqa package, where citeqa.BUNDLED_ARTICLE (and so the chat)
    finds it; installed outside the checkout, `citeqa index add` of it and `citeqa ask` work from another folder."""
    from citeqa import BUNDLED_ARTICLE

    root = Path(__file__).resolve().parent.parent
    assert BUNDLED_ARTICLE.is_file() and BUNDLED_ARTICLE.parent == root / "citeqa" / "data"
    src = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info next to the sources
    shutil.copytree(root, src, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    str(src), "-w", str(tmp_path / "dist")], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("citeqa-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("citeqa/data/isil-retakes-syria-border-town.txt") == BUNDLED_ARTICLE.read_bytes()
        assert "app.py" in zf.namelist()  # `citeqa chat` imports it
    # installed outside the checkout (dependencies from this venv), run from another folder
    site, work = tmp_path / "site", tmp_path / "work"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True)
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "CITEQA_HOME": str(tmp_path / "home")}

    def citeqa(*argv: str) -> str:
        return subprocess.run([sys.executable, "-m", "citeqa.cli", *argv], cwd=work, env=env, check=True,
                              capture_output=True, text=True).stdout

    installed = subprocess.run([sys.executable, "-c", "import app, citeqa; print(app.ARTICLE)"], cwd=work, env=env,
                               check=True, capture_output=True, text=True).stdout.strip()
    assert Path(installed) == site / "citeqa" / "data" / "isil-retakes-syria-border-town.txt"
    citeqa("index", "add", installed, "--json")
    answer = json.loads(citeqa("ask", "Who retook the al-Hamdan airbase?", "--json"))
    assert not answer["refused"] and "ISIL" in answer["answer"]
    assert answer["citations"][0]["doc_id"] == "isil-retakes-syria-border-town.txt"


def test_python_m_index_is_citeqa_index_without_importing_the_cli(indexed: Path) -> None:
    import ast

    tree = ast.parse((Path(__file__).resolve().parent.parent / "index" / "__main__.py").read_text(encoding="utf-8"))
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in modules if m.startswith("citeqa")]
    runs = [subprocess.run([sys.executable, "-m", *cmd, "list", "--json"], capture_output=True, text=True)
            for cmd in (["index"], ["citeqa.cli", "index"])]
    assert runs[0].returncode == runs[1].returncode == 0
    assert runs[0].stdout == runs[1].stdout
    assert [d["doc_id"] for d in json.loads(runs[0].stdout)["documents"]] == ["isil-retakes-syria-border-town.txt"]

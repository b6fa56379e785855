"""The package's doors: `citeqa chat`, the shared server-start helper (citeqa.servers)."""

from __future__ import annotations

import os
import sys
import urllib.request
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

"""The package's doors: the shared server-start helper (citeqa.servers)."""

from __future__ import annotations

import pytest

from citeqa import servers


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

"""`citeqa mcp`: the real server as a subprocess over stdio, driven by the mcp SDK's own client
(`stdio_client` + `ClientSession`), against a real index (Chroma, the embedder and the reader)."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from mcp import Client, ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from citeqa import BUNDLED_ARTICLE as ARTICLE
from citeqa import mcp_server
from citeqa.config import Config
from index.loaders import load_file

ARTICLE_ID = ARTICLE.name


@asynccontextmanager
async def session(home: Path, *args: str):
    """A `ClientSession` with `python -m citeqa mcp ARGS` for CITEQA_HOME=home; `faults` collects every
    stdout line that was not an MCP message (the SDK hands those to the message handler)."""
    faults: list[Exception] = []

    async def on_message(message) -> None:
        if isinstance(message, Exception):
            faults.append(message)

    params = StdioServerParameters(command=sys.executable, args=["-m", "citeqa", "mcp", *args],
                                   env={**os.environ, "CITEQA_HOME": str(home)})
    async with stdio_client(params) as streams, ClientSession(*streams, message_handler=on_message) as s:
        await s.initialize()
        s.faults = faults
        yield s


def spans_of_the_document(items: list[dict], text: str) -> None:
    for item in items:
        assert item["text"] == text[item["start_char"]:item["end_char"]], item


def test_read_only_server_answers_searches_lists_and_reports_errors(indexed: Path) -> None:
    article = load_file(ARTICLE).text

    async def main() -> None:
        async with session(indexed) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert sorted(tools) == ["ask", "list_documents", "search"]  # no add without --allow-add
            assert all(t.annotations.read_only_hint for t in tools.values())

            result = await s.call_tool("ask", {"question": "Who retook the al-Hamdan airbase?"})
            answer = result.structured_content
            assert not result.is_error and not answer["refused"] and "ISIL" in answer["answer"]
            assert answer["short_answer"] and "ISIL" in answer["short_answer"]
            assert answer["citations"] and {c["doc_id"] for c in answer["citations"]} == {ARTICLE_ID}
            spans_of_the_document(answer["citations"], article)
            assert any("al-Hamdan airbase" in c["text"] for c in answer["citations"])

            follow = await s.call_tool("ask", {"question": "Who retook it?", "history": [
                {"role": "user", "content": "Who captured the al-Hamdan airbase first?"},
                {"role": "assistant", "content": "The New Syrian Army."}]})
            assert not follow.is_error and follow.structured_content["question"] == "Who retook it?"

            off = await s.call_tool("ask", {"question": "What is the boiling point of mercury?"})
            assert off.structured_content["refused"] and off.structured_content["citations"] == []

            found = (await s.call_tool("search", {"query": "al-Hamdan airbase recaptured", "k": 3})).structured_content
            passages = found["passages"]
            assert [p["rank"] for p in passages] == [1, 2, 3]
            assert [p["score"] for p in passages] == sorted((p["score"] for p in passages), reverse=True)
            assert {p["doc_id"] for p in passages} == {ARTICLE_ID}
            spans_of_the_document(passages, article)
            assert any("al-Hamdan airbase" in p["text"] for p in passages)

            listing = (await s.call_tool("list_documents", {})).structured_content
            assert [d["doc_id"] for d in listing["documents"]] == [ARTICLE_ID]
            assert listing["collection"] == "citeqa" and listing["documents"][0]["chunks"] > 0

            errors = [await s.call_tool("ask", {"question": "  "}),
                      await s.call_tool("ask", {"question": "Who?", "docs": ["nope.txt"]}),
                      await s.call_tool("ask", {"question": "Who?", "history": [{"role": "system", "content": "x"}]}),
                      await s.call_tool("search", {"query": "airbase", "k": 0})]
            assert all(e.is_error for e in errors)
            texts = [e.content[0].text for e in errors]
            assert "the question is empty. Fix: ask a question in words" in texts[0]
            assert "no document 'nope.txt'" in texts[1] and "Fix: see `citeqa index list`" in texts[1]
            assert "history turn 1 has role 'system'. Fix:" in texts[2]
            assert "Fix: pass k from 1 to 10" in texts[3]

            missing = await s.call_tool("add", {"paths": [str(ARTICLE)]})
            assert missing.is_error and "Unknown tool: add" in missing.content[0].text
            assert s.faults == []  # stdout carried MCP messages only

    anyio.run(main)


def test_allow_add_indexes_files_that_ask_then_cites(indexed: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "photo.png").write_bytes(b"\x89PNG\r\n")
    note = notes / "lantern.txt"
    note.write_text("The Brass Lantern lighthouse stands on Kell Point.\n\n"
                    "Ida Marsh painted the Brass Lantern lighthouse green in 1911.\n", encoding="utf-8")
    text = load_file(note).text

    async def main() -> None:
        async with session(indexed, "--allow-add") as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert sorted(tools) == ["add", "ask", "list_documents", "search"]
            assert tools["add"].annotations.read_only_hint is False

            report = (await s.call_tool("add", {"paths": [str(notes)]})).structured_content
            assert report["documents_added"] == 1 and report["chunks_added"] >= 1 and report["failed"] == []
            assert [Path(f["path"]).name for f in report["skipped"]] == ["photo.png"]  # not a supported type
            again = (await s.call_tool("add", {"paths": [str(note)]})).structured_content
            assert again["documents_added"] == 0 and again["documents_unchanged"] == 1

            listing = (await s.call_tool("list_documents", {})).structured_content
            assert sorted(d["doc_id"] for d in listing["documents"]) == sorted([ARTICLE_ID, "lantern.txt"])

            answer = (await s.call_tool("ask", {"question": "Who painted the Brass Lantern lighthouse?"})
                      ).structured_content
            assert not answer["refused"] and "Ida Marsh" in answer["answer"]
            assert {c["doc_id"] for c in answer["citations"]} == {"lantern.txt"}
            spans_of_the_document(answer["citations"], text)

            found = (await s.call_tool("search", {"query": "lighthouse", "k": 1, "docs": ["lantern.txt"]})
                     ).structured_content
            assert [p["doc_id"] for p in found["passages"]] == ["lantern.txt"]
            spans_of_the_document(found["passages"], text)

            errors = [await s.call_tool("add", {"paths": []}),
                      await s.call_tool("add", {"paths": [str(tmp_path / "absent.txt")]})]
            assert all(e.is_error for e in errors)
            assert "no paths given. Fix: pass files or folders" in errors[0].content[0].text
            assert "absent.txt does not exist. Fix: check the path" in errors[1].content[0].text
            assert s.faults == []

    anyio.run(main)


def test_an_empty_home_says_how_to_fill_it_and_answers_once_filled(citeqa_home: Path) -> None:
    """In process (the SDK's in-memory transport): nothing is indexed yet, so the Agent cannot be built;
    after `add`, the next call builds it."""
    server = mcp_server.build(Config.resolve(), allow_add=True)

    async def main() -> None:
        async with Client(server) as client:
            for tool, args in (("list_documents", {}), ("ask", {"question": "Who retook the airbase?"}),
                               ("search", {"query": "airbase"})):
                result = await client.call_tool(tool, args)
                assert result.is_error and "Fix: index documents first: `citeqa index add PATH`" in \
                    result.content[0].text, (tool, result.content)
            added = await client.call_tool("add", {"paths": [str(ARTICLE)]})
            assert added.structured_content["documents_added"] == 1
            answer = (await client.call_tool("ask", {"question": "Who retook the al-Hamdan airbase?"})
                      ).structured_content
            assert not answer["refused"] and answer["citations"][0]["doc_id"] == ARTICLE_ID

    anyio.run(main)


def test_other_commands_do_not_import_mcp() -> None:
    code = ("import sys, citeqa.cli; citeqa.cli.parser().parse_args(['mcp', '--allow-add', '--collection', 'x']); "
            "print('mcp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_without_the_sdk_the_command_names_the_install() -> None:
    code = "import sys; sys.modules['mcp'] = None; from citeqa.cli import main; sys.exit(main(['mcp']))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    assert "`citeqa mcp` needs the mcp package. Fix: pip install 'citeqa[mcp]'" in run.stderr

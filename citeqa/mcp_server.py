"""`citeqa mcp`: the indexed documents as an MCP server over stdio (the `mcp` SDK's `MCPServer`, which was
FastMCP before mcp 2).

Tools: `ask` (a cited answer, `Answer.to_dict()`), `search` (ranked passages with their offsets),
`list_documents` (`index.ingest.listing`), and, only when built with `allow_add=True`, `add`
(`index.ingest.add`). The `Agent` is built once, by a thread started with the server (loading the
models takes seconds; the handshake does not wait for it), or by the first call that needs it when that
failed (nothing indexed yet). A `CiteqaError` comes back as a tool error whose text is the error's
message with its "Fix: ..." (`str(exc)`). While serving, the SDK points fd 1 at stderr: only protocol
messages reach stdout.

>>> import anyio
>>> server = build(Config.resolve(home="/tmp/citeqa-doc"))
>>> sorted(t.name for t in anyio.run(server.list_tools))
['ask', 'list_documents', 'search']
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Iterator

from pydantic import Field

from citeqa import __version__
from citeqa.config import Config
from citeqa.errors import CiteqaError, InputError, require_extra

require_extra("mcp", "mcp", "`citeqa mcp`")
from mcp.server.mcpserver import MCPServer  # noqa: E402 (after the check that names the extra)
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402
from mcp_types import ToolAnnotations  # noqa: E402

INSTRUCTIONS = ("Answers questions over the user's indexed documents. `ask` gives an answer whose every "
                "citation is a span of a document (doc_id, start_char, end_char, text), or a refusal when the "
                "documents do not say; `search` gives ranked passages; `list_documents` names what is indexed.")
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
log = logging.getLogger(__name__)


@contextmanager
def _tool_errors() -> Iterator[None]:
    """A `CiteqaError` becomes an MCP tool error carrying the same text, "Fix: ..." included."""
    try:
        yield
    except CiteqaError as exc:
        raise ToolError(str(exc)) from exc


class Service:
    """The citeqa side of the tools: one `Agent`, built when first needed; calls run one at a time (the
    SDK runs each synchronous tool in a worker thread)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._agent = None
        self._lock = threading.Lock()

    def _get_agent(self):
        if self._agent is None:
            from agent import Agent

            self._agent = Agent(config=self.cfg)
        return self._agent

    def warm(self) -> None:
        """Build the Agent and load its models now (a failure waits for the first call to report it)."""
        try:
            with self._lock:
                self._get_agent().retriever.search("warm up")
        except CiteqaError as exc:
            log.info("citeqa is not ready yet: %s", exc)

    def ask(self, question: str, history: list[dict] | None = None, docs: list[str] | None = None) -> dict:
        with self._lock:
            return self._get_agent().ask(question, history=history, docs=docs).to_dict()

    def search(self, query: str, k: int = 5, docs: list[str] | None = None) -> dict:
        with self._lock:
            agent = self._get_agent()
            top = agent.retriever.k_chunks
            if not 1 <= k <= top:
                raise InputError(f"k is {k}; search returns 1 to {top} passages", fix=f"pass k from 1 to {top}")
            if not query.strip():
                raise InputError("the query is empty", fix="search for some words")
            chunks = agent.retriever.search(query, docs=docs).chunks[:k]
        return {"query": query, "passages": [
            {"rank": rank, "doc_id": c.doc_id, "source": c.source, "chunk_id": c.id, "start_char": c.start,
             "end_char": c.end, "score": round(c.score, 5), "text": c.text} for rank, c in enumerate(chunks, 1)]}

    def list_documents(self) -> dict:
        from index import ingest

        with self._lock:
            return ingest.listing(self.cfg)

    def add(self, paths: list[str]) -> dict:
        from index import ingest

        if not paths:
            raise InputError("no paths given", fix="pass files or folders (.txt .md .html .pdf .docx)")
        with self._lock:
            return ingest.add([Path(p).expanduser() for p in paths], self.cfg, progress=False).to_dict()


def build(cfg: Config, allow_add: bool = False) -> MCPServer:
    """The MCP server for the collection of `cfg`; `add` is a tool only when `allow_add`."""
    service = Service(cfg)

    @asynccontextmanager
    async def warm_up(_: MCPServer) -> AsyncIterator[None]:
        threading.Thread(target=service.warm, name="citeqa-warm-up", daemon=True).start()
        yield

    server = MCPServer("citeqa", version=__version__, instructions=INSTRUCTIONS, lifespan=warm_up)

    @server.tool(annotations=READ_ONLY)
    def ask(question: Annotated[str, Field(description="the question, in words")],
            history: Annotated[list[dict[str, Any]] | None, Field(
                description='earlier turns, [{"role": "user" | "assistant", "content": "..."}], oldest first; '
                            "a follow-up question is read in their light")] = None,
            docs: Annotated[list[str] | None, Field(
                description="search only these doc ids (from list_documents); none: every document")] = None,
            ) -> dict[str, Any]:
        """Answer a question from the indexed documents, with span-level citations.

        Returns answer (text with [n] markers), short_answer, confidence, refused (true: the documents do not
        say; answer is then a refusal and citations is empty), and citations: n, doc_id, source, start_char,
        end_char (the cited span of the document's text), text (that span), score, page."""
        with _tool_errors():
            return service.ask(question, history, docs)

    @server.tool(annotations=READ_ONLY)
    def search(query: Annotated[str, Field(description="words to search for")],
               k: Annotated[int, Field(description="how many passages (1 to 10)")] = 5,
               docs: Annotated[list[str] | None, Field(
                   description="search only these doc ids (from list_documents); none: every document")] = None,
               ) -> dict[str, Any]:
        """Ranked passages of the indexed documents for a query (hybrid dense + BM25 retrieval), best first:
        rank, doc_id, source, chunk_id, start_char, end_char (the passage's span of the document's text),
        score, text."""
        with _tool_errors():
            return service.search(query, k, docs)

    @server.tool(annotations=READ_ONLY)
    def list_documents() -> dict[str, Any]:
        """The indexed documents: collection, embedding_model, and documents (doc_id, source, sha256, chunks)."""
        with _tool_errors():
            return service.list_documents()

    if allow_add:
        @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                                 idempotent_hint=True, open_world_hint=False))
        def add(paths: Annotated[list[str], Field(
                description="files or folders on the server's machine (.txt .md .html .pdf .docx); relative "
                            "paths are taken from the server's working folder")]) -> dict[str, Any]:
            """Index files and folders (a changed file is re-indexed, an unchanged one left as it is).

            Returns documents_added, documents_updated, documents_unchanged, chunks_added, seconds, and
            skipped / failed: the files not indexed, each with the reason and the fix."""
            with _tool_errors():
                return service.add(paths)

    return server


def serve(cfg: Config, allow_add: bool = False) -> None:
    """Serve over stdin/stdout until the client closes stdin."""
    build(cfg, allow_add).run("stdio")

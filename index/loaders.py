"""Files -> `Document`s: one loader per type; a folder is walked recursively.

The loaded `text` is what offsets refer to: for .txt/.md it is the file decoded; for .html the
visible text; for .pdf the text of each page joined by blank lines.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"; _ = p.write_text("Hello world.")
>>> load_file(p).text
'Hello world.'
"""

from __future__ import annotations

import hashlib
import html.parser
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Container, Iterator

from index.errors import InputError

SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf")


@dataclass(frozen=True)
class Document:
    doc_id: str  # see `discover` and `unique_id`
    source: str  # the absolute path it was read from
    text: str
    sha256: str  # of the raw bytes


def _decode(raw: bytes, path: Path) -> str:
    if b"\x00" in raw[:8192]:
        raise InputError(f"{path} looks binary (it contains NUL bytes)",
                         fix="add text, Markdown, HTML or PDF files only")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


class _VisibleText(html.parser.HTMLParser):
    _HIDDEN = {"script", "style", "head", "template", "noscript", "svg"}
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
              "article", "header", "footer", "blockquote", "pre", "title", "ul", "ol", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(" ".join(data.split()) if data.strip() else " ")


def _html_text(raw: bytes, path: Path) -> str:
    parser = _VisibleText()
    parser.feed(_decode(raw, path))
    lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
    paragraphs, current = [], []
    for line in lines + [""]:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return "\n\n".join(paragraphs)


def _pdf_text(raw: bytes, path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            raise InputError(f"{path} is an encrypted PDF",
                             fix="save an unencrypted copy (e.g. print to PDF) and add that")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except InputError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise InputError(f"{path} is not a readable PDF ({type(exc).__name__}: {exc})",
                         fix="check the file opens in a PDF viewer, or export its text to .txt") from None
    return "\n\n".join(p for p in pages if p)


_LOADERS: dict[str, Callable[[bytes, Path], str]] = {
    ".txt": _decode, ".md": _decode, ".html": _html_text, ".htm": _html_text, ".pdf": _pdf_text,
}


def load_file(path: Path, doc_id: str | None = None, max_mb: int = 50) -> Document:
    """Load one file; raise `InputError` naming the fix when it cannot be used."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _LOADERS:
        raise InputError(f"{path}: unsupported file type {suffix or '(none)'!r}",
                         fix=f"add one of: {', '.join(SUFFIXES)}")
    try:
        size = path.stat().st_size
        if size > max_mb * 1024 * 1024:
            raise InputError(f"{path} is {size / 2**20:.1f} MB, over the {max_mb} MB limit",
                             fix="split it into smaller files, or raise CITEQA_MAX_FILE_MB")
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", fix="check the path and its permissions") from None
    text = _LOADERS[suffix](raw, path)
    if not text.strip():
        raise InputError(f"{path} has no text to index", fix="add a file with text in it (scanned PDFs need OCR first)")
    return Document(doc_id=doc_id or path.name, source=os.path.abspath(path), text=text,
                    sha256=hashlib.sha256(raw).hexdigest())


def discover(paths: list[Path]) -> Iterator[tuple[Path, str]]:
    """Yield (file, proposed doc_id) once per file; folders are walked recursively for supported files.

    The proposed id is the file name for a file, and the path relative to the folder for a file in a
    folder that was added. `unique_id` makes it unique in the store.
    """
    seen = set()
    for path in map(Path, paths):
        if path.is_dir():
            found = [(f, f.relative_to(path).as_posix()) for f in sorted(path.rglob("*"))
                     if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in SUFFIXES]
        elif path.exists():
            found = [(path, path.name)]
        else:
            raise InputError(f"{path} does not exist", fix="check the path (folders are walked recursively)")
        for file, doc_id in found:
            if os.path.abspath(file) not in seen:
                seen.add(os.path.abspath(file))
                yield file, doc_id


def unique_id(doc_id: str, source: str, taken: Container[str]) -> str:
    """`doc_id`, or when it is `taken` (by another source), the same with the folders above it in
    `source` put in front, one at a time, until it is free.

    >>> unique_id("notes.txt", "/work/B/notes.txt", {"notes.txt"})
    'B/notes.txt'
    >>> unique_id("sub/notes.txt", "/work/B/sub/notes.txt", {"sub/notes.txt", "B/sub/notes.txt"})
    'work/B/sub/notes.txt'
    """
    parts = Path(source).parts[1:]  # without the root
    longer = ["/".join(parts[-n:]) for n in range(len(Path(doc_id).parts) + 1, len(parts) + 1)]
    for candidate in [doc_id, *longer]:
        if candidate not in taken:
            return candidate
    raise InputError(f"{source}: every document id for it is taken ({doc_id}, …)",
                     fix="rename the file, or remove the other document with `citeqa index remove DOC_ID`")

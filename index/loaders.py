"""Files -> `Document`s: one loader per type; a folder is walked recursively.

The loaded `text` is what offsets refer to: for .txt/.md it is the file decoded; for .html the
visible text; for .docx its paragraphs (and table rows) joined by blank lines; for .pdf the text of
each page joined by blank lines, with `Document.pages` saying where each page starts.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"; _ = p.write_text("Hello world.")
>>> load_file(p).text
'Hello world.'
"""

from __future__ import annotations

import bisect
import codecs
import hashlib
import html.parser
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Container, Iterator

from citeqa.errors import InputError, UnusableFile

SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf", ".docx")


@dataclass(frozen=True)
class Document:
    doc_id: str  # see `discover` and `unique_id`
    source: str  # the absolute path it was read from
    text: str
    sha256: str  # of the raw bytes
    pages: tuple[int, ...] = ()  # paged formats (PDF): where page i + 1 starts in `text`; else empty

    def page_at(self, offset: int) -> int | None:
        """The 1-based page that holds `text[offset]`, or None for a format without pages."""
        return bisect.bisect_right(self.pages, offset) if self.pages else None


# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _decode(raw: bytes, path: Path) -> str:
    """Bytes -> text: by its byte-order mark (UTF-8, UTF-16, UTF-32), else UTF-16/32 without one when
    charset-normalizer can tell (the text has NUL bytes), else UTF-8, cp1252, latin-1. A text that
    still holds a NUL anywhere is binary, and rejected (never stored with the NUL).

    >>> _decode("\\ufeffCafé".encode("utf-16-le"), Path("a.txt")), _decode("Café".encode("utf-16-be"), Path("b.txt"))
    ('Café', 'Café')
    """
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), None)
    if encoding is None and b"\x00" in raw:
        encoding = _wide_encoding(raw)
    text = None
    for enc in [encoding] if encoding else ["utf-8", "cp1252"]:
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    if text is None and encoding:
        raise UnusableFile(path, f"is not valid {encoding.upper()} text", fix="save it again as UTF-8")
    text = raw.decode("latin-1") if text is None else text
    if "\x00" in text:
        raise UnusableFile(path, "looks binary (it contains NUL bytes)",
                           fix="add text, Markdown, HTML, Word or PDF files only; if it is text, remove the NUL "
                               "bytes (e.g. `tr -d '\\000' < FILE > FIXED`) and add that")
    return text


def _wide_encoding(raw: bytes) -> str | None:
    """UTF-16 or UTF-32 (LE or BE) when charset-normalizer finds text in that encoding, else None."""
    from charset_normalizer import from_bytes

    best = from_bytes(raw[:1 << 16]).best()  # a sample: detection costs seconds on megabytes
    name = best.encoding if best else ""
    return name.replace("_", "-") if name.startswith(("utf_16", "utf_32")) else None


class _VisibleText(html.parser.HTMLParser):
    """A page's visible text, less its chrome: the site's menu (<nav>) and, outside an <article> or
    <main>, its banner, footer and sidebars (<header>, <footer>, <aside>), of which only headings stay.
    ("© 2026 Valley News" answered "Which sports does Valley News cover?" with "2026".)"""

    _HIDDEN = {"script", "style", "head", "template", "noscript", "svg", "nav"}
    _CHROME = {"header", "footer", "aside"}
    _CONTENT = {"article", "main"}
    _HEADING = {"h1", "h2", "h3", "h4", "h5", "h6"}
    _BLOCK = {"p", "div", "br", "li", "tr", "section", "blockquote", "pre", "title", "ul", "ol", "table"} | \
        _CHROME | _CONTENT | _HEADING

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._depth = dict.fromkeys(("hidden", "chrome", "content", "heading"), 0)

    def _kind(self, tag: str) -> str | None:
        if tag in self._HIDDEN:
            return "hidden"
        if tag in self._CHROME:
            return "chrome" if not self._depth["content"] else None
        return "content" if tag in self._CONTENT else "heading" if tag in self._HEADING else None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        kind = self._kind(tag)
        if kind:
            self._depth[kind] += 1
        if tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._CHROME and self._depth["chrome"]:
            self._depth["chrome"] -= 1
        else:
            kind = self._kind(tag)
            if kind:
                self._depth[kind] = max(0, self._depth[kind] - 1)
        if tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        d = self._depth
        if not d["hidden"] and (not d["chrome"] or d["heading"]):
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


def _unreadable(path: Path, kind: str, viewer: str, exc: Exception) -> UnusableFile:
    return UnusableFile(path, f"is not a readable {kind} ({type(exc).__name__}: {exc})",
                        fix=f"check the file opens in {viewer}, or export its text to .txt")


def _pdf_pages(raw: bytes, path: Path) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            raise UnusableFile(path, "is an encrypted PDF",
                               fix="save an unencrypted copy (e.g. print to PDF) and add that")
        return [(page.extract_text() or "").strip() for page in reader.pages]
    except InputError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise _unreadable(path, "PDF", "a PDF viewer", exc) from None


def _docx_text(raw: bytes, path: Path) -> str:
    """Paragraphs and table rows (cells joined by " | ") in document order; headers, footers and
    comments are left out."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        blocks = list(docx.Document(io.BytesIO(raw)).iter_inner_content())
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, SyntaxError, OSError) as exc:
        raise _unreadable(path, "Word document", "Word or LibreOffice", exc) from None  # lxml's errors: SyntaxError
    parts = []
    for block in blocks:
        rows = ([" | ".join(dict.fromkeys(c.text.strip() for c in row.cells)) for row in block.rows]
                if isinstance(block, Table) else [block.text])
        parts += [" ".join(r.split()) for r in rows]
    return "\n\n".join(p for p in parts if p.strip(" |"))


def _join_pages(pages: list[str]) -> tuple[str, tuple[int, ...]]:
    """Pages joined by blank lines (empty ones dropped), and where each starts in the joined text
    (an empty page starts where the next text does, so `Document.page_at` never lands on it).

    >>> _join_pages(["One.", "", "Three."])
    ('One.\\n\\nThree.', (0, 4, 6))
    """
    text, starts = "", []
    for page in pages:
        sep = "\n\n" if text and page else ""
        starts.append(len(text) + len(sep))
        text += sep + page
    return text, tuple(starts)


# A loader returns the text, or for a paged format the text of each page.
_LOADERS: dict[str, Callable[[bytes, Path], str | list[str]]] = {
    ".txt": _decode, ".md": _decode, ".html": _html_text, ".htm": _html_text, ".pdf": _pdf_pages,
    ".docx": _docx_text,
}


def load_file(path: Path, doc_id: str | None = None, max_mb: int = 50) -> Document:
    """Load one file; raise `UnusableFile` naming the fix when it cannot be used."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _LOADERS:
        raise _unsupported(path)
    try:
        size = path.stat().st_size
        if size > max_mb * 1024 * 1024:
            raise UnusableFile(path, f"is {size / 2**20:.1f} MB, over the {max_mb} MB limit",
                               fix="split it into smaller files, or raise CITEQA_MAX_FILE_MB")
        raw = path.read_bytes()
    except OSError as exc:
        raise UnusableFile(path, f"cannot be read ({exc.strerror})", fix="check the path and its permissions") from None
    text, pages = _LOADERS[suffix](raw, path), ()
    if not isinstance(text, str):
        text, pages = _join_pages(text)
    if not text.strip():
        raise UnusableFile(path, "has no text to index", fix="add a file with text in it (scanned PDFs need OCR first)")
    return Document(doc_id=doc_id or path.name, source=os.path.abspath(path), text=text,
                    sha256=hashlib.sha256(raw).hexdigest(), pages=pages)


def _unsupported(path: Path) -> UnusableFile:
    return UnusableFile(path, f"has an unsupported file type {path.suffix.lower() or '(none)'!r}",
                        fix=f"add one of: {', '.join(SUFFIXES)}")


def _walk(folder: Path, skipped: list[UnusableFile]) -> list[Path]:
    """The supported files under `folder`, sorted. Every other entry is put in `skipped`: a hidden one
    (name starting with ".") or a virtual environment (`pyvenv.cfg`, `conda-meta`) once, without looking
    inside it, and a folder that cannot be read with the reason."""
    found = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        skipped.append(UnusableFile(folder, f"cannot be read ({exc.strerror})",
                                    fix="check its permissions, or add the files inside it by their paths"))
        return []
    for entry in entries:
        if entry.name.startswith("."):
            skipped.append(UnusableFile(entry, "is hidden", fix="add it by its path to index it anyway"))
        elif entry.is_dir() and not entry.is_symlink() and _is_venv(entry):
            skipped.append(UnusableFile(entry, "is a virtual environment", fix="add it by its path to index it anyway"))
        elif entry.is_dir() and not entry.is_symlink():
            found += _walk(entry, skipped)
        elif entry.is_dir():
            skipped.append(UnusableFile(entry, "is a link to a folder (not followed)",
                                        fix="add the folder it points to by its path"))
        elif not entry.is_file():
            skipped.append(UnusableFile(entry, "is not a regular file"))
        elif entry.suffix.lower() not in SUFFIXES:
            skipped.append(_unsupported(entry))
        else:
            found.append(entry)
    return found


def _is_venv(folder: Path) -> bool:
    try:
        return (folder / "pyvenv.cfg").is_file() or (folder / "conda-meta").is_dir()
    except OSError:  # an unreadable folder: `_walk` reports it
        return False


def discover(paths: list[Path], skipped: list[UnusableFile] | None = None) -> Iterator[tuple[Path, str]]:
    """Yield (file, proposed doc_id) once per file; folders are walked recursively for supported files,
    and what a walk passes over is appended to `skipped` (when given) with the reason.

    The proposed id is the file name for a file, and the path relative to the folder for a file in a
    folder that was added. `unique_id` makes it unique in the store.
    """
    seen = set()
    for path in map(Path, paths):
        if path.is_dir():
            found = [(f, f.relative_to(path).as_posix()) for f in _walk(path, [] if skipped is None else skipped)]
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
    raise UnusableFile(source, f"has no free document id ({doc_id!r} and every longer one are taken)",
                       fix="rename the file, or remove the other document with `citeqa index remove DOC_ID`")

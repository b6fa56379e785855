"""Record ids in the store: `{doc_id}#{sha12}:{kind}{n}`, built and parsed only here.

`kind` is "c" (a chunk, n = its index), "s" (a sentence, n = its position) or "t" (a part of the
document's text, n = the character it starts at); sha12 is the first 12 hex digits of the document's
sha256, so a re-indexed version never collides with the old one while both exist.

>>> record_id("notes.txt", "0123456789abcdef", "s", 4)
'notes.txt#0123456789ab:s4'
>>> parse("dir/a#b.txt#0123456789ab:c12")
('dir/a#b.txt', '0123456789ab', 'c', 12)
"""

from __future__ import annotations


def record_id(doc_id: str, sha256: str, kind: str, n: int) -> str:
    return f"{doc_id}#{sha256[:12]}:{kind}{n}"


def parse(rid: str) -> tuple[str, str, str, int]:
    """(doc_id, sha12, kind, n) of a record id (a doc id may itself hold '#' or ':')."""
    doc_id, rest = rid.rsplit("#", 1)
    sha, tail = rest.split(":", 1)
    return doc_id, sha, tail[0], int(tail[1:])

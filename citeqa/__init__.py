"""citeqa: question answering over your documents with verified, span-level citations."""

from importlib.resources import files
from pathlib import Path

__version__ = "0.1.0"

# The bundled article (package data, so an installed wheel has it): what the chat indexes into an empty
# collection and what the article eval asks about.
BUNDLED_ARTICLE = Path(str(files(__name__).joinpath("data", "isil-retakes-syria-border-town.txt")))


def plural(n: int, noun: str) -> str:
    """`n` and `noun`, with an "s" unless `n` is 1.

    >>> plural(1, "chunk"), plural(0, "chunk"), plural(2, "file")
    ('1 chunk', '0 chunks', '2 files')
    """
    return f"{n} {noun}{'s' * (n != 1)}"

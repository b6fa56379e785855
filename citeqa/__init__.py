"""citeqa: question answering over your documents with verified, span-level citations."""

__version__ = "0.1.0"


def plural(n: int, noun: str) -> str:
    """`n` and `noun`, with an "s" unless `n` is 1.

    >>> plural(1, "chunk"), plural(0, "chunk"), plural(2, "file")
    ('1 chunk', '0 chunks', '2 files')
    """
    return f"{n} {noun}{'s' * (n != 1)}"

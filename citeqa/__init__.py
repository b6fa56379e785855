"""citeqa: question answering over your documents with verified, span-level citations."""

__version__ = "0.1.0"

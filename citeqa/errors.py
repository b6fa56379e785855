"""One error hierarchy for citeqa. Every message says what happened and what to do next.

>>> try:
...     raise ConfigError("unknown backend 'gpt'", fix="use one of: extractive, openai")
... except CiteqaError as e:
...     print(e)
unknown backend 'gpt'. Fix: use one of: extractive, openai
"""

from __future__ import annotations

import importlib
from types import ModuleType


class CiteqaError(Exception):
    """Base class. `exit_code` is what the CLI returns; `fix` tells the user what to do."""

    exit_code = 2

    def __init__(self, message: str, fix: str = "") -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message}. Fix: {fix}" if fix else message)


class ConfigError(CiteqaError):
    """A setting is missing or invalid (backend name, API key, collection name)."""


class InputError(CiteqaError):
    """A document or question cannot be used (empty, binary, too large, unreadable)."""

    exit_code = 1


class UnusableFile(InputError):
    """A file that cannot be indexed. `reason` completes the sentence "PATH ..." without the path
    ("has no text to index"), so a report can name the file however it likes (the chat: by name)."""

    def __init__(self, path, reason: str, fix: str = "") -> None:
        super().__init__(f"{path} {reason}", fix=fix)
        self.path, self.reason = str(path), reason


class IndexMissingError(CiteqaError):
    """The collection does not exist or holds no documents."""


class IndexMismatchError(CiteqaError):
    """The collection was built with another embedding model or schema."""


class StoreUnavailableError(CiteqaError):
    """Chroma cannot be reached or opened (server down, directory locked or corrupt)."""


class BackendUnreachableError(CiteqaError):
    """The answering model cannot be reached (dead server, missing model file)."""


class BackendError(CiteqaError):
    """The answering model answered something unusable."""


def require_extra(module: str, extra: str, what: str) -> ModuleType:
    """Import `module`, which the pip extra `extra` installs, or say which extra `what` needs.

    >>> require_extra("json", "none", "this").__name__
    'json'
    >>> require_extra("no_such_package", "demo", "`citeqa demo`")
    Traceback (most recent call last):
    ...
    citeqa.errors.ConfigError: `citeqa demo` needs the no_such_package package. Fix: pip install 'citeqa[demo]' (`make setup` installs it)
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{what} needs the {module.split('.')[0]} package",
                          fix=f"pip install 'citeqa[{extra}]' (`make setup` installs it)") from None

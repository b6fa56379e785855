"""Two lazy imports that must not overlap: torch (the encoder's batches) and spaCy, loaded without it.

spaCy's thinc imports torch whenever torch is installed, only to offer PyTorch layers that the small
English pipeline does not use. On a cold ask with a typed question that was most of the cost: spaCy
loads in 1.34 s / 145 MB with torch hidden, against 2.96 s / 331 MB (docs/benchmarks.md).
`without_torch()` hides torch while spaCy loads, unless something already imported it. `TORCH`
serialises that with the one place that imports torch (`index.embedding`), so a chat thread that starts
ingesting never meets the hidden module.

>>> import sys
>>> with without_torch():
...     pass  # spaCy's import here
>>> sys.modules.get("torch", "not imported") is not None  # torch is importable again afterwards
True
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Iterator

TORCH = threading.Lock()  # held while torch is imported, and while it is hidden


@contextmanager
def without_torch() -> Iterator[None]:
    """Inside, `import torch` raises ImportError (libraries take their no-torch path), unless torch was
    imported before."""
    with TORCH:
        hidden = "torch" not in sys.modules
        if hidden:
            sys.modules["torch"] = None  # type: ignore[assignment]  # the import system's "not available"
        try:
            yield
        finally:
            if hidden and sys.modules.get("torch", 0) is None:
                del sys.modules["torch"]

"""Question answering over a document corpus, with verified citations."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.assistant import Assistant
    from rag.settings import Settings
    from rag.types import Answer, Citation, RagError

__all__ = ["Answer", "Assistant", "Citation", "RagError", "Settings"]
_HOMES = {"Assistant": "rag.assistant", "Settings": "rag.settings"}


def __getattr__(name: str) -> Any:
    # Lazy, so `rag --help` does not pay for LangChain, Chroma and torch.
    if name in __all__:
        return getattr(import_module(_HOMES.get(name, "rag.types")), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")

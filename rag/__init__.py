"""Question answering over a document corpus, with verified citations."""

from rag.assistant import Assistant
from rag.settings import Settings
from rag.types import Answer, Citation, RagError

__all__ = ["Answer", "Assistant", "Citation", "RagError", "Settings"]

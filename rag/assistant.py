"""Assistant: the one front door to the library, used by the CLI, the UI, evals and other apps."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from rag.embeddings import LocalEmbeddings, make_embeddings
from rag.settings import Settings
from rag.store import Store


class Assistant:
    """Answers questions over one collection, with verified citations."""

    def __init__(self, settings: Settings, *, embeddings: LocalEmbeddings | None = None) -> None:
        self.settings = settings
        self.embeddings = embeddings or make_embeddings(settings)
        self.store = Store(settings, self.embeddings)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Assistant:
        """Build from the given settings, or from RAG_* environment variables."""
        return cls(settings or Settings())

    @cached_property
    def answer_mode(self) -> str:
        """'extractive' or 'llm', as the settings resolve."""
        if self.settings.mode == "auto":
            return "llm" if self.settings.is_llm_configured else "extractive"
        return self.settings.mode

    def status(self) -> dict[str, Any]:
        """Where the data lives and what is indexed, for `rag status` and the UI."""
        docs = self.store.documents()
        return {
            "store_mode": "server" if self.settings.is_server_mode else "embedded",
            "location": self.store.location,
            "home": str(self.settings.home.resolve()),
            "collection": self.settings.collection,
            "documents": len(docs),
            "chunks": self.store.count(),
            "embedding_model": self.embeddings.name,
            "answer_mode": self.answer_mode,
        }

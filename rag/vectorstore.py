"""The LangChain vector store ingest writes through: chunk vectors plus their sentences' vectors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from langchain_chroma import Chroma

if TYPE_CHECKING:
    from rag.store import Store


class ChunkVectorStore(Chroma):
    """LangChain's Chroma store whose writes also keep the store's sentence collection in step.

    `langchain_core.indexing.index()` only calls `add_documents` and `delete`, so those are the two places where
    a chunk's sentence vectors are written and removed with it.
    """

    def __init__(self, store: Store) -> None:
        super().__init__(
            collection_name=store.settings.collection, embedding_function=store.embeddings, client=store.client
        )
        self.store = store

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        **_: Any,
    ) -> list[str]:
        """Embed each chunk and its sentences in one pass and upsert both (ids are required: they are the keys)."""
        texts = list(texts)
        if ids is None or metadatas is None:
            raise ValueError("chunks are written with their ids and metadata")
        self.store.upsert(ids, texts, metadatas, self.store.embeddings.encode_passages(texts))
        return ids

    def delete(self, ids: list[str] | None = None, **_: Any) -> None:
        """Remove chunks and their sentences."""
        if ids:
            self.store.delete(ids)

"""The LangChain vector store ingest writes through: chunk vectors plus their sentences' vectors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from langchain_chroma import Chroma

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from rag.embeddings import LocalEmbeddings
    from rag.types import PassageVectors


class ChunkWriter(Protocol):
    """What the vector store writes through (rag.store.Store)."""

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        vectors: Sequence[PassageVectors],
    ) -> None:
        """Write chunks and their sentence vectors."""

    def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks and their sentence vectors."""


class ChunkVectorStore(Chroma):
    """LangChain's Chroma store whose writes also keep the sentence collection in step.

    `langchain_core.indexing.index()` only calls `add_documents` and `delete`, so those are the two places where
    a chunk's sentence vectors are written and removed with it, through the writer (the Store, seen only as a
    protocol, so that this module imports nothing of rag's but types).
    """

    def __init__(
        self,
        collection: str,
        *,
        client: ClientAPI,
        embeddings: LocalEmbeddings,
        writer: ChunkWriter,
    ) -> None:
        super().__init__(collection_name=collection, embedding_function=embeddings, client=client)
        self.passage_embeddings = embeddings
        self.writer = writer

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
        self.writer.upsert(ids, texts, metadatas, self.passage_embeddings.encode_passages(texts))
        return ids

    def delete(self, ids: list[str] | None = None, **_: Any) -> None:
        """Remove chunks and their sentences."""
        if ids:
            self.writer.delete(ids)

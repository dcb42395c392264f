"""The baseline to beat: LangChain's EnsembleRetriever of BM25Retriever and the Chroma retriever, 0.5/0.5."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rag.types import RagError

if TYPE_CHECKING:
    from rag.assistant import Assistant
    from rag.types import Chunk

WORD = re.compile(r"\w+")


def lowercase_words(text: str) -> list[str]:
    """BM25Retriever's tokenizer here: lower-case words (its default, str.split, keeps case and punctuation)."""
    return WORD.findall(text.lower())


class EnsembleBaseline:
    """The textbook LangChain hybrid retriever, built over the same chunks as the assistant's collection."""

    def __init__(self, assistant: Assistant, *, depth: int) -> None:
        try:
            from langchain_classic.retrievers import EnsembleRetriever
            from langchain_community.retrievers import BM25Retriever
            from langchain_core.documents import Document as LCDocument
        except ImportError as exc:
            raise RagError(
                f"the langchain-ensemble baseline needs the dev extra ({exc.name} is missing): pip install -e '.[dev]'"
            ) from exc

        self.chunks: dict[str, Chunk] = {c.id: c for c in assistant.store.iter_chunks()}
        docs = [LCDocument(id=c.id, page_content=c.text, metadata={"chunk_id": c.id}) for c in self.chunks.values()]
        if not docs:
            raise RagError(f"collection '{assistant.settings.collection}' is empty: nothing to build a baseline over")
        bm25 = BM25Retriever.from_documents(docs, k=depth, preprocess_func=lowercase_words)
        vectors = assistant.store.vectorstore.as_retriever(search_kwargs={"k": depth})
        self.depth = depth
        self.retriever = EnsembleRetriever(retrievers=[bm25, vectors], weights=[0.5, 0.5])

    def search(self, query: str) -> list[Chunk]:
        """The fused ranking, best first, cut at the depth the rankings were built with."""
        found = self.retriever.invoke(query)
        ids = [str(d.metadata.get("chunk_id") or d.id) for d in found]
        return [self.chunks[i] for i in ids if i in self.chunks][: self.depth]

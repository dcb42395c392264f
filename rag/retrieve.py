"""Hybrid retrieval: BM25 and sentence vectors fused by weighted reciprocal rank fusion, then re-ranked."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag.bm25 import QUERY_STOPWORDS, BM25Index, coverage, load_bm25, sentence_terms, term_weights, tokenize
from rag.store import Store, chunk_to_metadata
from rag.types import Candidate, Chunk, IndexNotFound

if TYPE_CHECKING:
    from rag.embeddings import LocalEmbeddings
    from rag.settings import Settings

Method = Literal["hybrid", "bm25", "vector"]
Ranking = list[tuple[Chunk, float]]
Features = tuple[float, float, float]
"""A candidate's re-ranking evidence: (BM25 / best BM25, best sentence cosine, best cosine + term coverage)."""
# Sentences fetched per wanted chunk: a good chunk usually has several sentences near the query.
SENTENCES_PER_CHUNK = 4


@dataclass(frozen=True)
class RerankWeights:
    """How the re-ranker weighs a candidate's evidence.

    score = bm25 · (BM25 score / the best BM25 score among the candidates)
          + sentence · (cosine of the chunk's best sentence)
          + joint · max over its sentences of (cosine + share of the question's IDF-weighted terms it holds)

    Fitted by logistic regression on 600 answerable SQuAD 2.0 dev questions disjoint from the benchmark sample,
    then scaled so bm25 = 1; see BENCHMARKS.md.
    """

    bm25: float = 1.0
    sentence: float = 1.65
    joint: float = 0.6

    def score(self, features: Features) -> float:
        """The weighted sum of a candidate's (bm25, sentence, joint) evidence."""
        bm25, sentence, joint = features
        return self.bm25 * bm25 + self.sentence * sentence + self.joint * joint


def chroma_where(where: dict[str, str] | None) -> dict[str, Any] | None:
    """Chroma's filter syntax for equality on metadata fields such as source and title."""
    if not where:
        return None
    clauses = [{key: value} for key, value in where.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def matches(chunk: Chunk, where: dict[str, str] | None) -> bool:
    """True when the chunk satisfies every equality filter."""
    if not where:
        return True
    fields = chunk_to_metadata(chunk)
    return all(str(fields.get(key)) == value for key, value in where.items())


def fuse(rankings: dict[str, Ranking], weights: dict[str, float], *, rrf_k: int) -> list[Candidate]:
    """Weighted reciprocal rank fusion: score = sum of weight / (rrf_k + rank) over the rankings."""
    chunks: dict[str, Chunk] = {}
    fused: dict[str, float] = {}
    detail: dict[str, dict[str, Any]] = {}
    for name, ranking in rankings.items():
        for rank, (chunk, score) in enumerate(ranking, start=1):
            chunks[chunk.id] = chunk
            fused[chunk.id] = fused.get(chunk.id, 0.0) + weights.get(name, 1.0) / (rrf_k + rank)
            detail.setdefault(chunk.id, {})[f"{name}_rank"] = rank
            detail[chunk.id][f"{name}_score"] = score
    # Ties (same fused score) keep BM25's order first, then the vector order, via the stable sort.
    order = sorted(fused, key=lambda cid: -fused[cid])
    return [
        Candidate(chunk=chunks[cid], rank=i, fused_rank=i, fused_score=fused[cid], **detail[cid])
        for i, cid in enumerate(order, start=1)
    ]


class HybridSearch:
    """Runs BM25 and vector search over one collection and fuses them."""

    def __init__(self, settings: Settings, store: Store, embeddings: LocalEmbeddings) -> None:
        self.settings = settings
        self.store = store
        self.embeddings = embeddings
        self._pinned = threading.local()  # the snapshot this thread's search() ranks with

    def bm25(self) -> BM25Index:
        """The current BM25 index (inside search(), the one it pinned); raises IndexNotFound when it is empty."""
        index = getattr(self._pinned, "index", None) or load_bm25(self.store, wait=False)
        if not index.chunks:
            raise IndexNotFound(self.settings.chroma_url or self.settings.home, self.settings.collection)
        return index

    def query_vector(self, query: str) -> list[float]:
        """The query's embedding (recent ones are cached: follow-ups and evals repeat them)."""
        return [float(x) for x in self.embeddings.encode_cached([query])[0]]

    def bm25_ranking(self, query: str, n: int, where: dict[str, str] | None = None) -> Ranking:
        """Top n chunks by BM25, filtered."""
        index = self.bm25()
        if not where:
            return index.search(query, n)
        # Filters are rare and corpora small enough to rank everything, then keep the matching chunks.
        return [(c, s) for c, s in index.search(query, len(index.chunks)) if matches(c, where)][:n]

    def vector_ranking(self, query: str, n: int, where: dict[str, str] | None = None) -> Ranking:
        """Top n chunks by their best sentence's cosine similarity, filtered in Chroma."""
        index = self.bm25()
        hits = self.store.query_sentences(self.query_vector(query), n * SENTENCES_PER_CHUNK, where=chroma_where(where))
        best: dict[str, float] = {}
        for chunk_id, similarity in hits:  # nearest first, so the first hit of a chunk is its best sentence
            if chunk_id not in best and chunk_id in index.by_id:
                best[chunk_id] = similarity
        return [(index.by_id[chunk_id], similarity) for chunk_id, similarity in list(best.items())[:n]]

    def score_sentences(self, candidates: list[Candidate], vector: Sequence[float]) -> list[Candidate]:
        """The candidates with each sentence's cosine to the vector, from the stored sentence vectors."""
        stored = self.store.sentence_vectors([c.chunk.id for c in candidates])
        query = np.asarray(vector, dtype=np.float32)
        scored = []
        for candidate in candidates:
            found = stored.get(candidate.chunk.id)
            spans = () if found is None else zip(found.spans, (found.vectors @ query).tolist(), strict=True)
            sentence_scores = tuple((start, end, cosine) for (start, end), cosine in spans)
            scored.append(candidate.model_copy(update={"sentence_scores": sentence_scores}))
        return scored

    def rerank_features(self, query: str, candidates: list[Candidate]) -> list[tuple[Candidate, Features]]:
        """Each candidate (with its sentence scores) and the evidence RerankWeights weighs (see there)."""
        idf = term_weights(tokenize(query, drop=QUERY_STOPWORDS), self.bm25())
        top_bm25 = max((c.bm25_score or 0.0 for c in candidates), default=0.0) or 1.0
        out = []
        for candidate in self.score_sentences(candidates, self.query_vector(query)):
            best = joint = 0.0
            if candidate.sentence_scores:
                spans = tuple((start, end) for start, end, _ in candidate.sentence_scores)
                terms = sentence_terms(candidate.chunk.text, spans)
                cosines = [cosine for *_, cosine in candidate.sentence_scores]
                best = max(cosines)
                joint = max(cosine + coverage(idf, held) for cosine, held in zip(cosines, terms, strict=True))
            out.append((candidate, ((candidate.bm25_score or 0.0) / top_bm25, best, joint)))
        return out

    def rerank(
        self, query: str, candidates: list[Candidate], weights: RerankWeights = RerankWeights()
    ) -> list[Candidate]:
        """Order candidates by BM25 and their best sentences (see RerankWeights)."""
        scored = [
            candidate.model_copy(update={"rerank_score": weights.score(features)})
            for candidate, features in self.rerank_features(query, candidates)
        ]
        ranked = sorted(scored, key=lambda c: -(c.rerank_score or 0.0))
        return [c.model_copy(update={"rank": rank}) for rank, c in enumerate(ranked, start=1)]

    def search(
        self, query: str, *, k: int, method: Method = "hybrid", where: dict[str, str] | None = None
    ) -> list[Candidate]:
        """The k best chunks for the query by the chosen method, with per-retriever ranks and scores."""
        with self.pinned():
            return self._search(query, k=k, method=method, where=where)

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Every bm25() call in this thread within the block uses one snapshot, fetched (revision asked) once."""
        if getattr(self._pinned, "index", None) is not None:
            yield
            return
        self._pinned.index = self.bm25()
        try:
            yield
        finally:
            self._pinned.index = None

    def _search(self, query: str, *, k: int, method: Method, where: dict[str, str] | None) -> list[Candidate]:
        depth = max(k, self.settings.candidates)
        rankings: dict[str, Ranking] = {}
        if method in ("hybrid", "bm25"):
            rankings["bm25"] = self.bm25_ranking(query, depth, where)
        if method in ("hybrid", "vector"):
            self.bm25()  # same "no index yet" error for every method
            rankings["vector"] = self.vector_ranking(query, depth, where)
        weights = {"bm25": self.settings.bm25_weight, "vector": self.settings.vector_weight}
        fused = fuse(rankings, weights, rrf_k=self.settings.rrf_k)[:depth]
        if method == "hybrid" and self.settings.rerank:
            fused = self.rerank(query, fused)
        return fused[:k]


class CorpusRetriever(BaseRetriever):
    """The hybrid search as a LangChain retriever, for use in other LangChain apps."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    search: HybridSearch
    k: int = 5
    method: Method = "hybrid"
    where: dict[str, str] | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        found = self.search.search(query, k=self.k, method=self.method, where=self.where)
        return [to_langchain_document(c) for c in found]


def to_langchain_document(candidate: Candidate) -> LCDocument:
    """A LangChain Document for a candidate, with its offsets and scores in the metadata."""
    chunk = candidate.chunk
    meta: dict[str, Any] = {**chunk_to_metadata(chunk), "chunk_id": chunk.id, "fused_score": candidate.fused_score}
    return LCDocument(id=chunk.id, page_content=chunk.text, metadata=meta)

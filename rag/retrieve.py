"""Hybrid retrieval: BM25 and sentence vectors fused by weighted reciprocal rank fusion, then re-ranked."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag.bm25 import QUERY_STOPWORDS, BM25Index, coverage, load_bm25, sentence_terms, term_weights, tokenize
from rag.dates import DateScope, TimeWindow, chunk_date, require_date, resolve_as_of, time_window
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
# A date scope that leaves at most this many chunks visible is searched exactly, not through Chroma.
EXACT_SCOPE_CHUNKS = 2000
# The most sentences one vector search asks Chroma for when a date scope hides many chunks.
MAX_SENTENCES_FETCHED = 4000


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


# Keys of `where` that bound document dates (YYYY-MM-DD) instead of asking for equality.
DATE_KEYS = ("since", "until", "as_of")


def split_where(where: dict[str, str] | None) -> tuple[dict[str, str], dict[str, date]]:
    """A `where`'s equality filters, and its date bounds checked as dates (DateError names a malformed one)."""
    where = where or {}
    bounds = {key: require_date(where[key], name=key) for key in DATE_KEYS if where.get(key)}
    return {k: v for k, v in where.items() if k not in DATE_KEYS}, bounds


def chroma_where(where: dict[str, str] | None) -> dict[str, Any] | None:
    """Chroma's filter syntax for equality on metadata fields such as source and title."""
    if not where:
        return None
    clauses = [{key: value} for key, value in where.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


@dataclass
class ChunkDates:
    """The document date of every chunk of one BM25 snapshot (in its order), and the collection's date range."""

    of: dict[str, date | None]
    ordinals: np.ndarray = field(repr=False)  # date.toordinal() per chunk, 0 when undated
    oldest: date | None = None
    newest: date | None = None

    @classmethod
    def of_chunks(cls, chunks: Sequence[Chunk]) -> ChunkDates:
        """Read each chunk's date from its metadata."""
        of = {c.id: chunk_date(c.metadata) for c in chunks}
        ordinals = np.array([d.toordinal() if (d := of[c.id]) else 0 for c in chunks], dtype=np.int64)
        known = [d for d in of.values() if d is not None]
        return cls(of, ordinals, min(known, default=None), max(known, default=None))

    def visible(self, scope: DateScope) -> np.ndarray:
        """Which chunks the scope lets a question see (see DateScope.is_visible), as a boolean array."""
        keep = self.ordinals <= scope.as_of.toordinal()
        if scope.since is not None or scope.until is not None:
            keep &= self.ordinals > 0
            if scope.since is not None:
                keep &= self.ordinals >= scope.since.toordinal()
            if scope.until is not None:
                keep &= self.ordinals <= scope.until.toordinal()
        return keep

    def within(self, window: TimeWindow) -> np.ndarray:
        """Which chunks are dated in the window, as a boolean array."""
        keep = self.ordinals > 0
        if window.start is not None:
            keep &= self.ordinals >= window.start.toordinal()
        if window.end is not None:
            keep &= self.ordinals <= window.end.toordinal()
        return keep


def masked_bm25(index: BM25Index, query: str, keep: np.ndarray, n: int) -> Ranking:
    """Top n chunks by BM25 among those `keep` marks: one scoring pass over the index, no full sort."""
    vocab = index.retriever.vocab_dict if index.retriever is not None else {}
    tokens = [t for t in tokenize(query, drop=QUERY_STOPWORDS) if t in vocab]
    if index.retriever is None or not tokens:
        return []
    scores = np.where(keep, index.retriever.get_scores(tokens), 0.0)
    n = min(n, int(np.count_nonzero(scores > 0)))
    if n == 0:
        return []
    top = np.argpartition(-scores, n - 1)[:n]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(index.chunks[i], float(scores[i])) for i in top.tolist()]


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
        self._dates: tuple[BM25Index, ChunkDates] | None = None

    def dates(self) -> ChunkDates:
        """The chunk dates of the current BM25 snapshot (read once per snapshot)."""
        index = self.bm25()
        if self._dates is None or self._dates[0] is not index:
            self._dates = (index, ChunkDates.of_chunks(index.chunks))
        return self._dates[1]

    def scope(self, query: str, where: dict[str, str] | None = None) -> DateScope:
        """The dates a query may see: where's since/until/as_of, and the window of its relative time ("this week").

        as_of defaults to today, or to the newest document's date when that is older.
        """
        _, bounds = split_where(where)
        as_of, source = resolve_as_of(bounds.get("as_of"), self.dates().newest)
        window = time_window(query, as_of)
        return DateScope(as_of, source, bounds.get("since"), bounds.get("until"), window)

    def bm25(self) -> BM25Index:
        """The current BM25 index (inside search(), the one it pinned); raises IndexNotFound when it is empty."""
        index = getattr(self._pinned, "index", None) or load_bm25(self.store, wait=False)
        if not index.chunks:
            raise IndexNotFound(self.settings.chroma_url or self.settings.home, self.settings.collection)
        return index

    def query_vector(self, query: str) -> list[float]:
        """The query's embedding (recent ones are cached: follow-ups and evals repeat them)."""
        return [float(x) for x in self.embeddings.encode_cached([query])[0]]

    def bm25_ranking(
        self, query: str, n: int, where: dict[str, str] | None = None, scope: DateScope | None = None
    ) -> Ranking:
        """Top n chunks by BM25, filtered by equality and, given a scope, by date."""
        index = self.bm25()
        if not where and scope is None:
            return index.search(query, n)
        if not where and scope is not None:
            return masked_bm25(index, query, self.dates().visible(scope), n)
        # Equality filters are rare and corpora small enough to rank everything, then keep the matching chunks.
        dates = self.dates().of
        return [
            (c, s)
            for c, s in index.search(query, len(index.chunks))
            if matches(c, where) and (scope is None or scope.is_visible(dates[c.id]))
        ][:n]

    def vector_ranking(
        self, query: str, n: int, where: dict[str, str] | None = None, scope: DateScope | None = None
    ) -> Ranking:
        """Top n chunks by their best sentence's cosine similarity, filtered in Chroma (and by date, given a scope).

        Chroma's own filters cost far more than its search here (150 ms or more on 90,000 sentences), so a date
        scope is applied after it: a few visible chunks are scored exactly from their stored sentence vectors,
        many are found by asking Chroma for as many more sentences as the hidden share demands.
        """
        index = self.bm25()
        wanted = n * SENTENCES_PER_CHUNK
        allowed: set[str] | None = None
        if scope is not None:
            keep = self.dates().visible(scope)
            visible = [index.chunks[i] for i in np.flatnonzero(keep).tolist() if matches(index.chunks[i], where)]
            if len(visible) <= EXACT_SCOPE_CHUNKS:
                return self.exact_vector_ranking(query, visible, n)
            allowed = {c.id for c in visible}
            wanted = min(wanted * math.ceil(len(index.chunks) / len(visible)), MAX_SENTENCES_FETCHED)
        found = self.store.query_sentences(self.query_vector(query), wanted, where=chroma_where(where))
        best: dict[str, float] = {}
        for chunk_id, similarity in found:  # nearest first, so the first hit of a chunk is its best sentence
            if chunk_id not in best and chunk_id in index.by_id and (allowed is None or chunk_id in allowed):
                best[chunk_id] = similarity
        return [(index.by_id[chunk_id], similarity) for chunk_id, similarity in list(best.items())[:n]]

    def exact_vector_ranking(self, query: str, chunks: Sequence[Chunk], n: int) -> Ranking:
        """Top n of these chunks by their best sentence's cosine, from the stored (cached) sentence vectors."""
        stored = self.store.sentence_vectors([c.id for c in chunks])
        vector = np.asarray(self.query_vector(query), dtype=np.float32)
        scored = [(c, float((found.vectors @ vector).max())) for c in chunks if (found := stored.get(c.id)) is not None]
        return sorted(scored, key=lambda pair: -pair[1])[:n]

    def score_sentences(
        self, candidates: list[Candidate], vector: Sequence[float], match: np.ndarray | None = None
    ) -> list[Candidate]:
        """The candidates with each sentence's cosine to the vector, from the stored sentence vectors.

        Given per-dimension match weights (rag.answer.MATCH), also each sentence's match: its vector · (match ⊙ vector).
        """
        stored = self.store.sentence_vectors([c.chunk.id for c in candidates])
        query = np.asarray(vector, dtype=np.float32)
        weighted = None if match is None else (match * query).astype(np.float32)
        scored = []
        for candidate in candidates:
            found = stored.get(candidate.chunk.id)
            spans = () if found is None else zip(found.spans, (found.vectors @ query).tolist(), strict=True)
            update: dict[str, object] = {"sentence_scores": tuple((start, end, cos) for (start, end), cos in spans)}
            if found is not None and weighted is not None:
                update["sentence_match"] = tuple((found.vectors @ weighted).tolist())
            scored.append(candidate.model_copy(update=update))
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
        self,
        query: str,
        candidates: list[Candidate],
        weights: RerankWeights = RerankWeights(),
        *,
        boost: TimeWindow | None = None,
    ) -> list[Candidate]:
        """Order candidates by BM25 and their best sentences (see RerankWeights), plus the time window's boost."""
        dates = self.dates().of if boost is not None else {}
        scored = [
            candidate.model_copy(
                update={
                    "rerank_score": weights.score(features)
                    + (self.settings.window_boost if boost and boost.contains(dates[candidate.chunk.id]) else 0.0)
                }
            )
            for candidate, features in self.rerank_features(query, candidates)
        ]
        ranked = sorted(scored, key=lambda c: -(c.rerank_score or 0.0))
        return [c.model_copy(update={"rank": rank}) for rank, c in enumerate(ranked, start=1)]

    def search(
        self,
        query: str,
        *,
        k: int,
        method: Method = "hybrid",
        where: dict[str, str] | None = None,
        scope: DateScope | None = None,
    ) -> list[Candidate]:
        """The k best chunks for the query by the chosen method, with per-retriever ranks and scores.

        Chunks the date scope hides are never returned; those in its time window are boosted: a BM25 ranking of the
        window alone joins the fusion, and the re-rank score gains RAG_WINDOW_BOOST.
        """
        with self.pinned():
            return self._search(query, k=k, method=method, where=where, scope=scope)

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

    def _search(
        self, query: str, *, k: int, method: Method, where: dict[str, str] | None, scope: DateScope | None
    ) -> list[Candidate]:
        depth = max(k, self.settings.candidates)
        equality, _ = split_where(where)
        scope = scope or self.scope(query, where)
        dates = self.dates()
        hiding = scope if scope.hides_any(dates.newest) else None
        window = scope.window if scope.window and dates.within(scope.window).any() else None
        rankings: dict[str, Ranking] = {}
        if method in ("hybrid", "bm25"):
            rankings["bm25"] = self.bm25_ranking(query, depth, equality, hiding)
            if window is not None:
                in_window = dates.within(window) & dates.visible(scope)
                rankings["window"] = [
                    (c, s) for c, s in masked_bm25(self.bm25(), query, in_window, depth) if matches(c, equality)
                ]
        if method in ("hybrid", "vector"):
            rankings["vector"] = self.vector_ranking(query, depth, equality, hiding)
        weights = {
            "bm25": self.settings.bm25_weight,
            "vector": self.settings.vector_weight,
            "window": self.settings.window_weight,
        }
        fused = fuse(rankings, weights, rrf_k=self.settings.rrf_k)[:depth]
        if method == "hybrid" and self.settings.rerank:
            fused = self.rerank(query, fused, boost=window)
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

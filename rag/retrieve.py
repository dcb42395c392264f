"""Hybrid retrieval: BM25 and sentence vectors fused by weighted reciprocal rank fusion, then re-ranked."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag.bm25 import QUERY_STOPWORDS, BM25Index, coverage, load_bm25, sentence_terms, term_weights, tokenize
from rag.dates import DateScope, TimeWindow, chunk_date, require_date, resolve_as_of, time_window
from rag.store import Store, chunk_to_metadata
from rag.types import Candidate, IndexNotFound

if TYPE_CHECKING:
    from rag.embeddings import LocalEmbeddings
    from rag.settings import Settings

Method = Literal["hybrid", "bm25", "vector"]
Ranking = list[tuple[str, float]]
"""Chunk ids, best first, with a retriever's scores; texts are fetched only for the fused candidates."""
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
    """The document date of every chunk of one BM25 snapshot (in its order), and the collection's newest."""

    ordinals: np.ndarray = field(repr=False)  # date.toordinal() per chunk, 0 when undated
    newest: date | None = None

    @classmethod
    def of_index(cls, index: BM25Index) -> ChunkDates:
        """The snapshot's dates."""
        newest = int(index.days.max(initial=0))
        return cls(index.days, date.fromordinal(newest) if newest else None)

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


def fuse(rankings: dict[str, Ranking], weights: dict[str, float], *, rrf_k: int) -> list[tuple[str, float, dict]]:
    """Weighted reciprocal rank fusion: score = sum of weight / (rrf_k + rank) over the rankings.

    Returns (chunk id, fused score, each ranking's rank and score), best first.
    """
    fused: dict[str, float] = {}
    detail: dict[str, dict[str, Any]] = {}
    for name, ranking in rankings.items():
        for rank, (chunk_id, score) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weights.get(name, 1.0) / (rrf_k + rank)
            detail.setdefault(chunk_id, {})[f"{name}_rank"] = rank
            detail[chunk_id][f"{name}_score"] = score
    # Ties (same fused score) keep BM25's order first, then the vector order, via the stable sort.
    order = sorted(fused, key=lambda cid: -fused[cid])
    return [(cid, fused[cid], detail[cid]) for cid in order]


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
            self._dates = (index, ChunkDates.of_index(index))
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
        if not index.ids:
            raise IndexNotFound(self.settings.chroma_url or self.settings.home, self.settings.collection)
        return index

    def query_vector(self, query: str) -> list[float]:
        """The query's embedding (recent ones are cached: follow-ups and evals repeat them)."""
        return [float(x) for x in self.embeddings.encode_cached([query])[0]]

    def bm25_ranking(self, query: str, n: int, keep: np.ndarray | None = None) -> Ranking:
        """Top n chunks by BM25, among those `keep` marks (filters and date scope) when given."""
        return self.bm25().search(query, n, keep)

    def vector_ranking(
        self, query: str, n: int, where: dict[str, str] | None = None, keep: np.ndarray | None = None
    ) -> Ranking:
        """Top n chunks by their best sentence's cosine similarity, among those `keep` marks when given.

        Chroma's own filters cost far more than its search here (150 ms or more on 90,000 sentences), so `keep` is
        applied after it: a few visible chunks are scored exactly from their stored sentence vectors, many are found
        by asking Chroma for as many more sentences as the hidden share demands (with `where`, its equality part).
        """
        index = self.bm25()
        wanted = n * SENTENCES_PER_CHUNK
        if keep is not None:
            visible = np.flatnonzero(keep)
            if len(visible) <= EXACT_SCOPE_CHUNKS:
                return self.exact_vector_ranking(query, [index.ids[i] for i in visible.tolist()], n)
            wanted = min(wanted * math.ceil(len(index.ids) / len(visible)), MAX_SENTENCES_FETCHED)
        found = self.store.query_sentences(self.query_vector(query), wanted, where=chroma_where(where))
        best: dict[str, float] = {}
        for chunk_id, similarity in found:  # nearest first, so the first hit of a chunk is its best sentence
            at = index.position.get(chunk_id)
            if chunk_id not in best and at is not None and (keep is None or keep[at]):
                best[chunk_id] = similarity
        return list(best.items())[:n]

    def exact_vector_ranking(self, query: str, chunk_ids: Sequence[str], n: int) -> Ranking:
        """Top n of these chunks by their best sentence's cosine, from the stored (cached) sentence vectors."""
        stored = self.store.sentence_vectors(chunk_ids)
        vector = np.asarray(self.query_vector(query), dtype=np.float32)
        scored = [(i, float((found.vectors @ vector).max())) for i in chunk_ids if (found := stored.get(i)) is not None]
        return sorted(scored, key=lambda pair: -pair[1])[:n]

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
        self,
        query: str,
        candidates: list[Candidate],
        weights: RerankWeights = RerankWeights(),
        *,
        boost: tuple[TimeWindow, float] | None = None,
    ) -> list[Candidate]:
        """Order candidates by BM25 and their best sentences (see RerankWeights), plus (window, amount)'s boost."""
        scored = [
            candidate.model_copy(
                update={
                    "rerank_score": weights.score(features)
                    + (boost[1] if boost and boost[0].contains(chunk_date(candidate.chunk.metadata)) else 0.0)
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
        window alone joins the fusion, and the re-rank score gains RAG_WINDOW_BOOST. A question without a window gets
        the recency prior instead, the same boost for the documents of the RAG_RECENCY_DAYS up to as_of.
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

    def recent(self, scope: DateScope, dates: ChunkDates, visible: np.ndarray) -> TimeWindow | None:
        """The recency prior's window, or None when it is off or would separate nothing.

        It needs visible documents (`visible`: the scope's mask over the snapshot) both in it and dated before it: in
        a collection of one date, or of undated documents only, every candidate would gain the same, so the ranking
        and the scores stay as they were.
        """
        if not (self.settings.recency_weight or self.settings.recency_boost):
            return None
        start = scope.as_of - timedelta(days=self.settings.recency_days - 1)
        recent = TimeWindow(start, scope.as_of, f"the {self.settings.recency_days} days up to as_of")
        is_recent = dates.within(recent) & visible
        is_older = visible & (dates.ordinals > 0) & (dates.ordinals < start.toordinal())
        return recent if is_recent.any() and is_older.any() else None

    def _search(
        self, query: str, *, k: int, method: Method, where: dict[str, str] | None, scope: DateScope | None
    ) -> list[Candidate]:
        depth = max(k, self.settings.candidates)
        equality, _ = split_where(where)
        scope = scope or self.scope(query, where)
        index, dates = self.bm25(), self.dates()
        # What the question may see, as a mask over the snapshot; None when it sees everything.
        visible = dates.visible(scope)
        keep = visible if scope.hides_any(dates.newest) else None
        if equality:
            matching = index.mask(self.store.chunk_ids(chroma_where(equality)))
            keep = matching if keep is None else keep & matching
        window = scope.window if scope.window and dates.within(scope.window).any() else None
        window_weight, window_boost = self.settings.window_weight, self.settings.window_boost
        if window is None and (recent := self.recent(scope, dates, visible)) is not None:
            window, window_weight, window_boost = recent, self.settings.recency_weight, self.settings.recency_boost
        rankings: dict[str, Ranking] = {}
        if method in ("hybrid", "bm25"):
            rankings["bm25"] = self.bm25_ranking(query, depth, keep)
            if window is not None and window_weight:
                in_window = dates.within(window) & visible
                rankings["window"] = index.search(query, depth, in_window if keep is None else in_window & keep)
        if method in ("hybrid", "vector"):
            rankings["vector"] = self.vector_ranking(query, depth, equality, keep)
        weights = {
            "bm25": self.settings.bm25_weight,
            "vector": self.settings.vector_weight,
            "window": window_weight,
        }
        fused = self.candidates(fuse(rankings, weights, rrf_k=self.settings.rrf_k)[:depth])
        if method == "hybrid" and self.settings.rerank:
            fused = self.rerank(query, fused, boost=(window, window_boost) if window else None)
        return fused[:k]

    def candidates(self, fused: list[tuple[str, float, dict]]) -> list[Candidate]:
        """The fused chunks as candidates, their texts fetched in one batch (a chunk deleted meanwhile drops out)."""
        chunks = {c.id: c for c in self.store.get_chunks([chunk_id for chunk_id, *_ in fused])}
        found = [(chunks[chunk_id], score, detail) for chunk_id, score, detail in fused if chunk_id in chunks]
        return [
            Candidate(chunk=chunk, rank=i, fused_rank=i, fused_score=score, **detail)
            for i, (chunk, score, detail) in enumerate(found, start=1)
        ]


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

"""Assistant: the one front door to the library, used by the CLI, the UI, evals and other apps."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING, Any

from rag import news
from rag.answer import Extraction, answer_text, extract_answer, verify_citation
from rag.bm25 import BM25Index
from rag.condense import answer_quotes, condense_question
from rag.dates import iso, parse_iso, require_date
from rag.embeddings import LocalEmbeddings, make_embeddings
from rag.llm import describe_llm, make_llm
from rag.overview import MAX_LISTED, is_corpus_question, overview_answer
from rag.prompts import ABSTAIN, STALE_CITATIONS
from rag.retrieve import CorpusRetriever, HybridSearch, Method, split_where
from rag.settings import AnswerMode, Settings
from rag.short_answer import find_short_answer
from rag.store import DocumentTexts, Store
from rag.timing import elapsed_ms
from rag.types import (
    Answer,
    Candidate,
    Chunk,
    Citation,
    Document,
    DocumentInfo,
    FinalEvent,
    RagError,
    ShortAnswer,
    StreamEvent,
    TokenEvent,
    Turn,
)

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable

WORD = re.compile(r"\S+\s*")
# Chunks quoted by the previous answer that a follow-up keeps as context.
EARLIER_CHUNKS = 3


def with_as_of(where: dict[str, str] | None, as_of: date | None) -> dict[str, str] | None:
    """The filters with as_of among them (`where` carries it to every retrieval of the question)."""
    return where if as_of is None else {**(where or {}), "as_of": iso(as_of)}


class Assistant:
    """Answers questions over one collection, with verified citations."""

    def __init__(
        self, settings: Settings, *, embeddings: LocalEmbeddings | None = None, llm: BaseChatModel | None = None
    ) -> None:
        self.settings = settings
        self._llm = llm  # a chat model given by the caller (tests, apps); otherwise built from settings on first use
        self.embeddings = embeddings or make_embeddings(settings)
        self.store = Store(settings, self.embeddings)
        self.search = HybridSearch(settings, self.store, self.embeddings)
        self.texts = DocumentTexts(settings.home, settings.collection, database_url=settings.database_url)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Assistant:
        """Build from the given settings, or from RAG_* environment variables."""
        return cls(settings or Settings())

    @cached_property
    def answer_mode(self) -> str:
        """'extractive' or 'llm', as the settings resolve."""
        return self.resolve_mode(None)

    def resolve_mode(self, mode: AnswerMode | None) -> str:
        """'extractive' or 'llm' for one request: the given mode, else RAG_MODE; auto means llm when one is set."""
        mode = mode or self.settings.mode
        if mode == "auto":
            return "llm" if self._llm is not None or self.settings.is_llm_configured else "extractive"
        return mode

    @cached_property
    def chat_model(self) -> BaseChatModel:
        """The chat model for generated answers (a local GGUF server starts here, on first use)."""
        if self._llm is not None:
            return self._llm
        if not self.settings.is_llm_configured:
            raise RagError("llm mode needs a model: set RAG_LLM_GGUF, or RAG_LLM_BASE_URL and RAG_LLM_MODEL")
        return make_llm(self.settings)

    def warm_up(self) -> None:
        """Load the embedding model and the BM25 snapshot (with its dates) now, for the fastest answers later."""
        self.embeddings.warm_up()
        with contextlib.suppress(RagError):  # an empty index or a down store: the first question says so
            self.search.dates()

    # Retrieval

    def retrieve(
        self,
        query: str,
        *,
        k: int | None = None,
        method: Method = "hybrid",
        where: dict[str, str] | None = None,
        as_of: date | None = None,
    ) -> list[Candidate]:
        """The k best chunks for a query, with each retriever's rank and score.

        `where` holds equality filters on metadata, and `since`/`until` (YYYY-MM-DD) on document dates; documents
        dated after as_of (default: today, or the newest document if older) are not seen.
        """
        return self.search.search(query, k=k or self.settings.k, method=method, where=with_as_of(where, as_of))

    def as_retriever(self, *, k: int | None = None, where: dict[str, str] | None = None) -> CorpusRetriever:
        """The hybrid retrieval as a LangChain BaseRetriever."""
        return CorpusRetriever(search=self.search, k=k or self.settings.k, where=where)

    # Answers

    def ask(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        k: int | None = None,
        mode: AnswerMode | None = None,
        where: dict[str, str] | None = None,
        as_of: date | None = None,
    ) -> Answer:
        """Answer a question (with optional earlier turns) from the collection, as of a date (see retrieve)."""
        final = None
        for event in self.stream(question, history=history, k=k, mode=mode, where=where, as_of=as_of):
            if isinstance(event, FinalEvent):
                final = event.answer
        assert final is not None  # stream() always ends with a FinalEvent
        return final

    def stream(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        k: int | None = None,
        mode: AnswerMode | None = None,
        where: dict[str, str] | None = None,
        as_of: date | None = None,
    ) -> Iterator[StreamEvent]:
        """Yield the answer's text as TokenEvents, then a FinalEvent with the verified Answer."""
        where = with_as_of(where, as_of)
        split_where(where)  # a malformed since/until fails here (DateError), before any work
        if self.resolve_mode(mode) == "llm" and not is_corpus_question(question):
            from rag.generate import stream_llm_answer

            for event in stream_llm_answer(self, self.chat_model, question, history=history, k=k, where=where):
                yield (
                    FinalEvent(answer=self.dated(question, event.answer, where))
                    if isinstance(event, FinalEvent)
                    else event
                )
            return
        with self.search.pinned():  # one BM25 snapshot per question: retrieval, the answer's term weights, its dates
            answer = self.answer_extractively(question, history=history, k=k, where=where)
            answer = self.dated(question, answer, where)
        for piece in WORD.findall(answer.text):
            yield TokenEvent(text=piece)
        yield FinalEvent(answer=answer)

    def answer_extractively(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        k: int | None = None,
        where: dict[str, str] | None = None,
    ) -> Answer:
        """The no-LLM answer: the best sentences of the retrieved chunks, cited, or an abstention."""
        started = time.perf_counter()
        if is_corpus_question(question):
            return self.answer_about_corpus(question, started)
        subject = news.timeline_subject(question)
        condensed = condense_question(subject, history)
        # A timeline looks for its subject; a follow-up's ("how has it developed") is named by the history.
        if subject != question:
            question = condensed if history else subject
        candidates = self.retrieve(condensed, k=k, where=where)
        index = self.search.bm25()
        context = candidates + self.earlier_answer_chunks(history, index, exclude={c.chunk.id for c in candidates})
        retrieved_ms = elapsed_ms(started)
        context = self.search.score_sentences(context, self.search.query_vector(question))
        extraction = extract_answer(
            question,
            context,
            index=index,
            abstain_threshold=self.settings.abstain_threshold,
            answer_threshold=self.settings.answer_threshold,
            focus=question if history else None,
            max_sentences=self.settings.max_answer_sentences,
        )
        chunks = {c.chunk.id: c.chunk for c in context}
        extraction = self.verified(extraction, chunks)
        elsewhere = news.dated_elsewhere(extraction.citations, self.search.scope(condensed, where).window)
        short, short_score = self.short_answer(question, extraction, chunks, elsewhere=elsewhere)
        return Answer(
            text=extraction.text,
            citations=tuple(extraction.citations),
            status=extraction.status,
            short_answer=short,
            mode="extractive",
            condensed_query=condensed,
            abstain_reason=extraction.reason,
            candidates=tuple(candidates),
            timings_ms={
                "retrieve": retrieved_ms,
                "answer": round(elapsed_ms(started) - retrieved_ms, 1),
                "total": elapsed_ms(started),
            },
            debug={
                "confidence": extraction.confidence,
                "threshold": extraction.threshold,
                "short_answer_score": short_score,
                **extraction.signals,
            },
        )

    def dated(self, question: str, answer: Answer, where: dict[str, str] | None) -> Answer:
        """The answer with its dates: as_of, 'As of ...' when it matters, conflicts, a timeline when asked for one."""
        query = answer.condensed_query or question
        scope = self.search.scope(query, where)
        timeline_from = None
        if news.is_timeline_question(question) and answer.candidates:
            timeline_from = self.search.score_sentences(list(answer.candidates), self.search.query_vector(query))
        chunks = {c.chunk.id: c.chunk for c in answer.candidates}

        def is_cited(citation: Citation) -> bool:
            return verify_citation(citation, chunks[citation.chunk_id], self.document_text(citation.source))

        return news.dated_answer(answer, question, scope, timeline_from=timeline_from, is_cited=is_cited)

    def short_answer(
        self, question: str, extraction: Extraction, chunks: dict[str, Chunk], *, elsewhere: frozenset[int]
    ) -> tuple[ShortAnswer | None, float]:
        """The cited phrase that answers a who/when/how-many question, kept only if it is the stored text there.

        `elsewhere`: the citations that tell of another time than the question's window (news.dated_elsewhere).
        """
        if extraction.status == "abstained":
            return None, 0.0
        short, score = find_short_answer(
            question, extraction.citations, chunks, likeliest=extraction.likeliest, elsewhere=elsewhere
        )
        text = self.document_text(short.source) if short else None
        if short is None or (text is not None and text[short.start : short.end] != short.text):
            return None, 0.0
        return short, score

    def earlier_answer_chunks(self, history: Sequence[Turn], index: BM25Index, *, exclude: set[str]) -> list[Candidate]:
        """The chunks quoted by the previous answer, kept as candidates for a follow-up."""
        if not history:
            return []
        quotes = answer_quotes(history[-1][1])
        found = [
            c
            for c in self.store.chunks_containing(quotes, limit=EARLIER_CHUNKS + len(exclude))
            if c.id not in exclude and c.id in index.position
        ]
        rank = self.settings.k + 1
        # Ranked after every retrieved candidate: they are context carried over, not found for this question.
        return [
            Candidate(chunk=c, rank=rank + i, fused_rank=rank + i, fused_score=0.0)
            for i, c in enumerate(found[:EARLIER_CHUNKS])
        ]

    def verified(self, extraction: Extraction, chunks: dict[str, Chunk]) -> Extraction:
        """Drop any citation whose quote is not exactly the source text at its offsets, renumbering the rest.

        When none survives, the answer becomes an abstention that says why: quoting text we cannot point to would
        be a citation in name only.
        """
        kept = [c for c in extraction.citations if verify_citation(c, chunks[c.chunk_id], self.document_text(c.source))]
        if len(kept) == len(extraction.citations):
            return extraction
        if not kept:
            return replace(extraction, text=ABSTAIN, citations=[], status="abstained", reason=STALE_CITATIONS)
        renumbered = [c.model_copy(update={"n": n}) for n, c in enumerate(kept, start=1)]
        return replace(extraction, text=answer_text(extraction.status, renumbered), citations=renumbered)

    def answer_about_corpus(self, question: str, started: float) -> Answer:
        """Answer 'what documents do you have?' from the document list, citing each document's opening."""
        openings = self.search.bm25().openings
        documents = self.documents()
        listed = [openings[d.source] for d in documents[:MAX_LISTED] if d.source in openings]
        text, citations = overview_answer(documents, {c.source: c for c in self.store.get_chunks(listed)})
        return Answer(
            text=text,
            citations=tuple(citations),
            mode="corpus",
            condensed_query=question,
            timings_ms={"retrieve": 0.0, "answer": elapsed_ms(started), "total": elapsed_ms(started)},
        )

    # Documents

    def documents(self) -> list[DocumentInfo]:
        """The indexed documents."""
        return self.store.documents()

    def document(self, source: str) -> Document | None:
        """A document's full cleaned text, for showing a quote in place (None if this machine never ingested it)."""
        return self.texts.get(source)

    def document_text(self, source: str) -> str | None:
        """Just the text of document(source)."""
        doc = self.document(source)
        return doc.text if doc else None

    # Integration

    def as_runnable(self) -> Runnable[Any, Answer]:
        """The whole pipeline as a LangChain Runnable: input a question or {"question", "history"}."""
        from langchain_core.runnables import RunnableLambda

        def run(request: str | dict[str, Any]) -> Answer:
            if isinstance(request, str):
                return self.ask(request)
            history = [tuple(turn) for turn in request.get("history", ())]
            as_of = require_date(request["as_of"], name="as_of") if request.get("as_of") else None
            return self.ask(request["question"], history=history, k=request.get("k"), as_of=as_of)  # type: ignore[arg-type]

        return RunnableLambda(run, name="rag-assistant")

    def status(self) -> dict[str, Any]:
        """Where the data lives and what is indexed, for `rag status` and the UI."""
        docs = self.store.documents()
        dates = sorted(d for info in docs if (d := parse_iso(info.metadata.get("date"))) is not None)
        return {
            "store_mode": "server" if self.settings.is_server_mode else "embedded",
            "location": self.store.location,
            "home": str(self.settings.home.resolve()),
            "collection": self.settings.collection,
            "documents": len(docs),
            "chunks": self.store.count(),
            "dates": {
                "oldest": iso(dates[0]) if dates else None,
                "newest": iso(dates[-1]) if dates else None,
                "dated_documents": len(dates),
            },
            "embedding_model": self.embeddings.name,
            "embedding_precision": self.embeddings.bulk_precision,
            "answer_mode": self.answer_mode,
            "llm_model": describe_llm(self.settings) or (type(self._llm).__name__ if self._llm else None),
        }

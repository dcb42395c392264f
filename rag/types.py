"""Typed values shared by every stage, and the error family. Imports nothing from the repo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    import numpy as np

Turn = tuple[str, str]
"""One earlier exchange of a conversation: (question, answer)."""


class PageSpan(BaseModel):
    """Where one page of a paged source (PDF) lies in the cleaned document text."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    page: int = Field(ge=1)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class Document(BaseModel):
    """A cleaned source document; chunks and citations point into `text` by character offsets."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    source: str = Field(description="Path of the file it was read from, as given to ingest.")
    title: str
    text: str
    pages: tuple[PageSpan, ...] = ()
    metadata: dict[str, str] = Field(default_factory=dict, description="date, dateline, kind, ... from the file.")

    def page_at(self, offset: int) -> int | None:
        """Return the page holding character `offset`, or None for unpaged documents."""
        for span in self.pages:
            if span.start <= offset < span.end:
                return span.page
        return self.pages[-1].page if self.pages else None


class Chunk(BaseModel):
    """A span of a document; `text == document.text[start:end]` always holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    source: str
    title: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str
    page: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class Candidate(BaseModel):
    """A retrieved chunk with the ranks and scores that put it there (None: that retriever missed it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    chunk: Chunk
    rank: int = Field(ge=1, description="The final rank, after re-ranking: 1 is the best candidate.")
    fused_rank: int = Field(ge=1, description="The rank after reciprocal rank fusion, before re-ranking.")
    fused_score: float
    bm25_rank: int | None = None
    bm25_score: float | None = None
    vector_rank: int | None = None
    vector_score: float | None = Field(default=None, description="Cosine similarity of its best sentence.")
    window_rank: int | None = Field(default=None, description="Rank among the documents in the question's time window.")
    window_score: float | None = None
    rerank_score: float | None = None
    sentence_scores: tuple[tuple[int, int, float], ...] = Field(
        default=(), description="(start, end, cosine to the query) of each sentence, offsets into the chunk."
    )


class Citation(BaseModel):
    """A verified pointer from an answer's [n] marker to an exact span of a source document."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    n: int = Field(ge=1, description="The [n] marker as it appears in Answer.text.")
    source: str
    title: str
    chunk_id: str
    quote: str = Field(description="Exactly the document text at [start:end], checked before it is returned.")
    start: int = Field(ge=0, description="Character offset of the quote in the cleaned document text.")
    end: int = Field(ge=0)
    page: int | None = None
    date: str | None = Field(default=None, description="The cited document's date, YYYY-MM-DD, or None when unknown.")
    is_supported: bool = Field(default=True, description="False when verification could not back the claim.")

    @classmethod
    def of_span(cls, n: int, chunk: Chunk, start: int, end: int, *, is_supported: bool = True) -> Citation:
        """Cite chunk.text[start:end] (offsets local to the chunk) by its offsets in the document."""
        from rag.dates import chunk_date  # rag.dates imports this module

        # Only an ISO date: a chunk stored before dates were normalised may carry whatever its file said.
        day = chunk_date(chunk.metadata)
        return cls(
            n=n,
            source=chunk.source,
            title=chunk.title,
            chunk_id=chunk.id,
            quote=chunk.text[start:end],
            start=chunk.start + start,
            end=chunk.start + end,
            page=chunk.page,
            date=day.isoformat() if day else None,
            is_supported=is_supported,
        )


AnswerStatus = Literal["answered", "uncertain", "abstained"]
"""answered: confident, cited; uncertain: relevant evidence, maybe not the answer; abstained: nothing relevant."""


class ShortAnswer(BaseModel):
    """The phrase that answers the question (a name, number, date or place), verified like a citation."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    text: str = Field(description="Exactly the document text at [start:end].")
    n: int = Field(ge=1, description="The citation whose quote holds the phrase.")
    source: str
    chunk_id: str
    start: int = Field(ge=0, description="Character offset of the phrase in the cleaned document text.")
    end: int = Field(ge=0)
    date: str | None = Field(default=None, description="The cited document's date, YYYY-MM-DD, or None.")


class ConflictValue(BaseModel):
    """One source's value in a disagreement, with its date and citation."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    value: str = Field(description="The number, date or name as the source writes it.")
    n: int = Field(ge=1, description="The citation that says it.")
    source: str
    date: str | None = None
    is_newest: bool = Field(default=False, description="True for the most recently dated source of the conflict.")


class Conflict(BaseModel):
    """Cited sentences of different documents that give different values for the same thing."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    slot: str = Field(description="What they disagree on, in the sources' words: 'people injured'.")
    values: tuple[ConflictValue, ...]


class Answer(BaseModel):
    """What the assistant says, with its evidence and the numbers behind it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    text: str
    citations: tuple[Citation, ...] = ()
    status: AnswerStatus = "answered"
    short_answer: ShortAnswer | None = None
    mode: Literal["extractive", "llm", "corpus"] = "extractive"
    condensed_query: str = ""
    abstain_reason: str | None = Field(default=None, description="Why it abstained: best evidence vs threshold.")
    llm_error: str | None = Field(default=None, description="One line, when the LLM failed and we fell back.")
    notice: str | None = Field(default=None, description="Shown to the user beside the answer.")
    candidates: tuple[Candidate, ...] = Field(default=(), description="Retrieval candidates, for the inspector.")
    conflicts: tuple[Conflict, ...] = Field(default=(), description="Where cited sources disagree; see rag.news.")
    as_of: str | None = Field(default=None, description="The date the question was answered as of, YYYY-MM-DD.")
    timings_ms: dict[str, float] = Field(default_factory=dict)
    debug: dict[str, Any] = Field(default_factory=dict)

    @property
    def abstained(self) -> bool:
        """True when the documents hold nothing relevant, so the answer says so and cites nothing."""
        return self.status == "abstained"

    def to_json_dict(self) -> dict[str, Any]:
        """The public JSON shape used by the CLI and HTTP callers."""
        out: dict[str, Any] = {
            "answer": self.text,
            "status": self.status,
            "short_answer": self.short_answer.model_dump() if self.short_answer else None,
            "citations": [c.model_dump() for c in self.citations],
            "abstained": self.abstained,
            "mode": self.mode,
            "condensed_query": self.condensed_query,
            "as_of": self.as_of,
            "conflicts": [c.model_dump() for c in self.conflicts],
            "timings_ms": self.timings_ms,
        }
        if self.abstain_reason:
            out["abstain_reason"] = self.abstain_reason
        if self.llm_error:
            out["llm_error"] = self.llm_error
        if self.notice:
            out["notice"] = self.notice
        return out


class TokenEvent(BaseModel):
    """A piece of answer text, streamed as it is produced."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["token"] = "token"
    text: str


class FinalEvent(BaseModel):
    """The last event of a stream: the complete, verified answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["final"] = "final"
    answer: Answer


StreamEvent = TokenEvent | FinalEvent


def one_line(text: str) -> str:
    """Text with newlines, other control characters and undecodable bytes escaped, so it prints as one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode() for c in text)


class IngestFailure(BaseModel):
    """A file that could not be ingested, and why (one line)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    path: str = Field(description="The file as named, escaped to one line (a file name may hold a newline).")
    error: str = Field(description="Why, in one line.")

    @field_validator("path", "error")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return one_line(value)


class IngestReport(BaseModel):
    """What one ingest run did."""

    model_config = ConfigDict(extra="forbid")
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: list[IngestFailure] = Field(default_factory=list)
    chunks: int = Field(default=0, description="Chunks in the collection after the run.")


class DocumentInfo(BaseModel):
    """One indexed document, as listed by `rag status` and the UI."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    source: str
    title: str
    chunks: int
    ingested_at: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)


class RagError(Exception):
    """Base class; the message is shown to the user as is."""


class IndexNotFound(RagError):
    """The collection is missing or empty."""

    def __init__(self, home: Path | str, collection: str) -> None:
        super().__init__(f"No index for collection '{collection}' in {home}. Run `rag ingest corpus/` first.")


class StoreUnavailable(RagError):
    """The Chroma server cannot be reached."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"Chroma server at {url} is unreachable: {reason}")


class StoreFull(RagError):
    """The disk (or file size limit) holding the index has no room left; what was committed before is kept."""

    def __init__(self, location: str, room_bytes: int, reason: str) -> None:
        super().__init__(
            f"no space left for the index in {location} ({room_bytes / 2**20:.1f} MB free): {reason}. "
            "Free some space and run it again; what was committed before is kept."
        )


class LoadError(RagError):
    """A file could not be read into a Document."""


class LLMError(RagError):
    """The LLM endpoint failed; callers fall back to the extractive answer."""


@dataclass(frozen=True)
class SentenceVectors:
    """Sentence spans (offsets into their passage) and one unit vector per span, in text order."""

    spans: list[tuple[int, int]]
    vectors: np.ndarray


@dataclass(frozen=True)
class PassageVectors:
    """A passage's unit vector and its sentences' vectors."""

    vector: np.ndarray
    sentences: SentenceVectors

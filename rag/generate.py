"""Generated answers: condense, prompt with the needed sources, stream with bounded waits, verify every citation."""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from rag.markers import LOOSE_MARKER, format_markers, loose_numbers, strip_markers
from rag.prompts import (
    ANSWER,
    CONDENSE,
    HISTORY_TURN,
    NOTICE_LLM_FAILED,
    NOTICE_UNSUPPORTED,
    NOTICE_UNVERIFIED,
    SOURCE,
    SOURCE_SEPARATOR,
)
from rag.timing import elapsed_ms
from rag.types import Answer, Candidate, Chunk, FinalEvent, LLMError, StreamEvent, TokenEvent, Turn
from rag.verify import is_abstention, split_claims, verify_claims

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from rag.assistant import Assistant
    from rag.settings import Settings

CHARS_PER_TOKEN = 4  # a rough budget estimate; the server reports the real prompt size afterwards
LONGEST_MARKER = 24  # an unclosed "[" held back longer than this is ordinary text
HISTORY_TURNS = 3
HISTORY_ANSWER_CHARS = 400
LONGEST_CONDENSED_CHARS = 300


def one_line(exc: BaseException, *, where: str | None = None) -> str:
    """A one-line description of an LLM failure, for Answer.llm_error."""
    message = " ".join(str(exc).split()) or "no details"
    root = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    if root is not exc and str(root):  # client libraries wrap the cause in a generic "Connection error."
        message += f" ({type(root).__name__}: {' '.join(str(root).split())})"
    prefix = f"LLM at {where}: " if where else "LLM: "
    return f"{prefix}{type(exc).__name__}: {message}"[:240]


# Prompt building


def select_sources(candidates: Sequence[Candidate], *, budget_tokens: int) -> list[Chunk]:
    """The chunks worth sending, best first: skip near-duplicates (overlapping spans), stop at the token budget."""
    chosen: list[Chunk] = []
    used = 0
    for candidate in sorted(candidates, key=lambda c: c.rank):
        chunk = candidate.chunk
        if any(overlaps_mostly(chunk, other) for other in chosen):
            continue
        cost = len(chunk.text) // CHARS_PER_TOKEN + 1
        if chosen and used + cost > budget_tokens:
            break
        chosen.append(chunk)
        used += cost
    return chosen


def overlaps_mostly(a: Chunk, b: Chunk) -> bool:
    """True when two chunks of one document share more than half of the shorter one."""
    if a.source != b.source:
        return False
    shared = min(a.end, b.end) - max(a.start, b.start)
    return shared > 0.5 * min(a.end - a.start, b.end - b.start)


def render_sources(chunks: Sequence[Chunk]) -> str:
    """The numbered, delimited sources block of the answer prompt."""
    return SOURCE_SEPARATOR.join(
        SOURCE.format(n=n, title=fence(chunk.title).replace('"', "'"), text=fence(chunk.text))
        for n, chunk in enumerate(chunks, start=1)
    )


def fence(text: str) -> str:
    """Keep a document from closing or opening a <source> tag of its own inside the prompt."""
    return re.sub(r"<(/?)source", r"<\1 source", text, flags=re.IGNORECASE)


def answer_messages(question: str, chunks: Sequence[Chunk]) -> list[BaseMessage]:
    """The chat messages that ask for a cited answer from these chunks."""
    return ANSWER.format_messages(sources=render_sources(chunks), question=question)


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """A rough prompt size, used only when the server does not report usage."""
    return sum(len(str(m.content)) for m in messages) // CHARS_PER_TOKEN + 1


# Streaming with bounded waits


# A server that ignores max_tokens is cut off here: pieces beyond max_tokens (an honest server sends at least one
# token a piece) or characters beyond this many per token (English averages about 4).
MAX_CHARS_PER_TOKEN = 8
# Pieces the reader thread may get ahead of the caller; a full queue makes it wait, so memory stays bounded.
QUEUE_PIECES = 64
PUT_POLL_S = 0.1


@dataclass(frozen=True)
class StreamLimits:
    """How long and how much one streamed completion may take; every bound holds whatever the server does."""

    timeout_s: float  # longest wait for any one piece, the first included
    deadline_s: float  # longest time for the whole completion, first byte to last
    max_tokens: int  # longest text, counted in pieces and (generously) in characters

    @classmethod
    def of(cls, settings: Settings) -> StreamLimits:
        """The limits the settings set."""
        return cls(
            timeout_s=settings.llm_timeout_s, deadline_s=settings.llm_deadline_s, max_tokens=settings.llm_max_tokens
        )

    @property
    def max_chars(self) -> int:
        """The most characters a completion may stream."""
        return self.max_tokens * MAX_CHARS_PER_TOKEN


class ChatStream:
    """The text pieces of one streamed chat completion, bounded in waits, total time and length.

    The model is read on a worker thread so that the first token, which the client may retry for, is bounded by one
    overall deadline too, and a server that sends SSE keep-alives but no tokens cannot hold the caller. A completion
    that runs past the deadline or the length cap is cut there (`truncated` says why) and ends normally, so the text
    so far is verified like any other; one that has produced nothing by then is an LLMError.
    """

    def __init__(self, llm: BaseChatModel, messages: Sequence[BaseMessage], *, limits: StreamLimits) -> None:
        self.llm = llm
        self.messages = list(messages)
        self.limits = limits
        self.usage: dict[str, Any] = {}
        self.finish_reason: str | None = None
        self.reports_metadata = False
        self.truncated: str | None = None  # "deadline" or "max_tokens" when the stream was cut
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=QUEUE_PIECES)
        self._stop = threading.Event()

    @property
    def where(self) -> str | None:
        """The endpoint's URL, for error messages."""
        return getattr(self.llm, "openai_api_base", None)

    def _put(self, kind: str, item: Any) -> bool:
        """Hand one item to the caller, waiting while the queue is full; False once the caller has stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put((kind, item), timeout=PUT_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        chunks = cast("Generator[Any, None, None]", self.llm.stream(self.messages))
        try:
            for chunk in chunks:
                if not self._put("chunk", chunk):
                    return
            self._put("end", None)
        except Exception as exc:  # handed to the caller's thread, which turns it into an LLMError
            self._put("error", exc)
        finally:
            chunks.close()  # closes the HTTP response, so a server that streams forever sees the client leave

    def __iter__(self) -> Iterator[str]:
        limits = self.limits
        deadline = time.monotonic() + limits.deadline_s
        pieces = chars = 0
        threading.Thread(target=self._read, name="llm-stream", daemon=True).start()
        try:
            while True:
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    if not pieces:
                        raise LLMError(
                            one_line(TimeoutError(f"no answer within {limits.deadline_s:g}s"), where=self.where)
                        )
                    self.truncated = "deadline"
                    return
                try:
                    kind, item = self._queue.get(timeout=min(limits.timeout_s, left_s))
                except queue.Empty:
                    if left_s <= limits.timeout_s:
                        continue  # the deadline came first: handled at the top
                    raise LLMError(
                        one_line(TimeoutError(f"no reply within {limits.timeout_s:g}s"), where=self.where)
                    ) from None
                if kind == "error":
                    raise LLMError(one_line(item, where=self.where)) from item
                if kind == "end":
                    break
                self._note(item)
                text = item.text
                if not text:
                    continue
                if pieces >= limits.max_tokens or chars + len(text) > limits.max_chars:
                    self.truncated = "max_tokens"
                    if pieces < limits.max_tokens and chars < limits.max_chars:
                        yield text[: limits.max_chars - chars]
                    return
                pieces += 1
                chars += len(text)
                yield text
        finally:
            self._stop.set()
        if self.reports_metadata and self.finish_reason is None:
            raise LLMError(one_line(ConnectionError("the stream ended before the model finished"), where=self.where))

    def _note(self, chunk: Any) -> None:
        metadata = getattr(chunk, "response_metadata", None) or {}
        if metadata:
            self.reports_metadata = True
        self.finish_reason = metadata.get("finish_reason") or self.finish_reason
        if getattr(chunk, "usage_metadata", None):
            self.usage = dict(chunk.usage_metadata)


class CitationFilter:
    """Streams text while holding back what might still become a [n] marker, and drops markers naming no source.

    Whitespace is held until more text follows, so a dropped marker takes its leading space with it and the pieces
    emitted join to exactly the final answer text.
    """

    def __init__(self, n_sources: int) -> None:
        self.n_sources = n_sources
        self.dropped: list[int] = []
        self._pending = ""  # text that may still turn out to be a marker
        self._held = ""  # whitespace shown only if more text follows
        self._space_for_marker = ""
        self._emitted: list[str] = []

    @property
    def text(self) -> str:
        """Everything emitted so far."""
        return "".join(self._emitted)

    def feed(self, piece: str) -> str:
        """Add streamed text; return the part that is safe to show now."""
        self._pending += piece
        shown: list[str] = []
        while self._pending:
            bracket = self._pending.find("[")
            if bracket < 0:
                self._show_text(self._pending, shown)
                self._pending = ""
                break
            self._show_text(self._pending[:bracket], shown)
            rest = self._pending[bracket:]
            close = rest.find("]")
            if close < 0 and len(rest) < LONGEST_MARKER:
                self._pending = rest  # wait for the rest of a possible marker
                break
            marker = LOOSE_MARKER.fullmatch(rest[: close + 1]) if close >= 0 else None
            if marker is None:
                self._show_text(rest[0], shown)
                self._pending = rest[1:]
                continue
            self._show_marker(self._rewrite(marker.group(1)), shown)
            self._pending = rest[close + 1 :]
        return self._commit(shown)

    def flush(self) -> str:
        """The held-back text once the stream has ended (trailing whitespace is dropped)."""
        shown: list[str] = []
        self._show_text(self._pending, shown)
        self._pending = self._held = ""
        return self._commit(shown)

    def _rewrite(self, numbers: str) -> str:
        valid = []
        for n in loose_numbers(numbers):
            if 1 <= n <= self.n_sources:
                valid.append(n)
            else:
                self.dropped.append(n)
        return format_markers(valid)

    def _show_text(self, text: str, shown: list[str]) -> None:
        started = bool(self._emitted or shown)
        body = text.rstrip()
        if not body:
            self._held += text if started else ""
            return
        shown.append(self._held + body if started else body.lstrip())
        self._held = text[len(body) :]
        self._space_for_marker = ""

    def _show_marker(self, marker: str, shown: list[str]) -> None:
        if not marker:
            # A dropped marker takes the space before it, unless another marker follows: "word [9][1]" -> "word [1]".
            self._space_for_marker, self._held = self._held, ""
            return
        space = self._held or self._space_for_marker
        shown.append(space + marker if (self._emitted or shown) else marker)
        self._held = self._space_for_marker = ""

    def _commit(self, shown: list[str]) -> str:
        result = "".join(shown)
        if result:
            self._emitted.append(result)
        return result


def condense_with_llm(llm: BaseChatModel, question: str, history: Sequence[Turn], *, limits: StreamLimits) -> str:
    """A standalone question for retrieval, written by the model from the last turns (raises LLMError)."""
    turns = "\n".join(
        HISTORY_TURN.format(question=q, answer=strip_markers(a)[:HISTORY_ANSWER_CHARS])
        for q, a in history[-HISTORY_TURNS:]
    )
    stream = ChatStream(llm, CONDENSE.format_messages(history=turns, question=question), limits=limits)
    reply = "".join(stream).strip()
    line = next((ln.strip() for ln in reply.splitlines() if ln.strip()), "")
    line = re.sub(r"^(standalone question|question)\s*:\s*", "", line, flags=re.IGNORECASE).strip(" \"'")
    # A reply that answers instead of rewriting, or says nothing, is worse than the question as asked.
    return line if 0 < len(line) <= LONGEST_CONDENSED_CHARS else question


# The whole generated answer


def stream_llm_answer(
    assistant: Assistant,
    llm: BaseChatModel,
    question: str,
    *,
    history: Sequence[Turn] = (),
    k: int | None = None,
    where: dict[str, str] | None = None,
) -> Iterator[StreamEvent]:
    """Condense, retrieve, generate and verify; any LLM failure or unverifiable answer falls back to extraction."""
    settings = assistant.settings
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def fallback(error: str | None, notice: str, debug: dict[str, Any] | None = None) -> FinalEvent:
        answer = assistant.answer_extractively(question, history=history, k=k, where=where)
        debug = {**answer.debug, **(debug or {}), "llm_timings_ms": timings}
        return FinalEvent(answer=answer.model_copy(update={"llm_error": error, "notice": notice, "debug": debug}))

    condensed = question
    if history:
        try:
            condensed = condense_with_llm(llm, question, history, limits=StreamLimits.of(settings))
        except LLMError as exc:
            yield fallback(str(exc), NOTICE_LLM_FAILED)
            return
        timings["condense"] = elapsed_ms(started)
    candidates = assistant.retrieve(condensed, k=k, where=where)
    timings["retrieve"] = elapsed_ms(started) - timings.get("condense", 0.0)
    if not candidates:
        yield fallback(None, "")
        return
    chunks = select_sources(candidates, budget_tokens=settings.llm_source_tokens)
    messages = answer_messages(condensed, chunks)
    stream = ChatStream(llm, messages, limits=StreamLimits.of(settings))
    citations = CitationFilter(len(chunks))
    generate_started = time.perf_counter()
    try:
        for piece in stream:
            shown = citations.feed(piece)
            if shown:
                timings.setdefault("first_token", elapsed_ms(started))
                yield TokenEvent(text=shown)
    except LLMError as exc:
        yield fallback(str(exc), NOTICE_LLM_FAILED)
        return
    tail = citations.flush()
    if tail:
        yield TokenEvent(text=tail)
    timings["generate"] = elapsed_ms(generate_started)
    text = citations.text
    debug: dict[str, Any] = {
        "prompt_tokens": stream.usage.get("input_tokens") or estimate_tokens(messages),
        "prompt_tokens_estimated": not stream.usage.get("input_tokens"),
        "completion_tokens": stream.usage.get("output_tokens"),
        "sources": [c.id for c in chunks],
        "dropped_markers": citations.dropped,
        "truncated": stream.truncated,
    }
    if not text:
        yield fallback(one_line(ValueError("empty answer")), NOTICE_LLM_FAILED, debug)
        return
    common: dict[str, Any] = {"mode": "llm", "condensed_query": condensed, "candidates": tuple(candidates)}
    if is_abstention(text):
        timings["total"] = elapsed_ms(started)
        reason = "the model found no answer in the sources"
        yield FinalEvent(
            answer=Answer(
                text=text, status="abstained", abstain_reason=reason, timings_ms=timings, debug=debug, **common
            )
        )
        return
    verify_started = time.perf_counter()
    verification = verify_claims(split_claims(text), chunks, assistant.embeddings.encode)
    timings["verify"] = elapsed_ms(verify_started)
    debug["unsupported_sentences"] = [c.text for c in verification.unsupported]
    if not any(c.cited for c in verification.supported):
        yield fallback(None, NOTICE_UNVERIFIED, {**debug, "rejected_llm_answer": text})
        return
    timings["total"] = elapsed_ms(started)
    notice = None
    if verification.unsupported:
        listed = "; ".join(f"“{c.text[:80]}”" for c in verification.unsupported[:3])
        notice = NOTICE_UNSUPPORTED.format(count=len(verification.unsupported), sentences=listed)
    yield FinalEvent(
        answer=Answer(
            text=text,
            citations=tuple(verification.citations),
            notice=notice,
            timings_ms=timings,
            debug=debug,
            **common,
        )
    )

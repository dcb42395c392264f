"""An LLM server that never stops talking, or sends 10 MB, is cut off by the deadline and by RAG_LLM_MAX_TOKENS."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from stub_llm import FOREVER_SENTENCE, TEN_MB, base_url, stub_llm

from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.generate import MAX_CHARS_PER_TOKEN, ChatStream, StreamLimits, answer_messages
from rag.llm import MAX_LINE_BYTES, make_llm
from rag.settings import Settings
from rag.types import Answer, FinalEvent, LLMError, TokenEvent

QUESTION = "How many police officers did Kenya deploy to Haiti?"
# Thread wake-ups beyond the deadline: the generation itself is timed, so a busy machine's slow retrieval and
# verification (MiniLM on shared cores) do not count against it.
SLACK_S = 5.0
# How long the stub may keep writing after the client has gone: its socket buffers must fill first.
LEAVE_S = 15.0


def llm_settings(home: Path, url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"llm_base_url": url, "llm_model": "stub", "llm_max_retries": 0}
    return Settings(home=home, **(values | overrides))  # type: ignore[arg-type]


def assert_citations_hold(answer: Answer, assistant: Assistant) -> None:
    """Whatever path the answer took, every citation quotes the stored text at its offsets."""
    assert answer.citations
    for citation in answer.citations:
        document = assistant.document(citation.source)
        assert document is not None and document.text[citation.start : citation.end] == citation.quote


def stream_answer(assistant: Assistant) -> tuple[str, Answer]:
    events = list(assistant.stream(QUESTION))
    final = events[-1]
    assert isinstance(final, FinalEvent)
    return "".join(e.text for e in events if isinstance(e, TokenEvent)), final.answer


def test_endless_stream_stops_at_the_deadline(seeded_home: Path, embeddings: LocalEmbeddings) -> None:
    # max_tokens far beyond what arrives in the deadline, so the deadline is what stops it.
    deadline_s = 2.0
    with stub_llm("stream_forever") as server:
        settings = llm_settings(seeded_home, base_url(server), llm_deadline_s=deadline_s, llm_max_tokens=10**6)
        assistant = Assistant(settings, embeddings=embeddings)
        streamed, answer = stream_answer(assistant)
        assert server.abandoned.wait(LEAVE_S), "the client closed the endless response"
    generate_s = answer.timings_ms["generate"] / 1000
    assert generate_s < deadline_s + SLACK_S, f"generation took {generate_s:.1f}s"
    assert answer.mode == "llm" and answer.llm_error is None, "the text so far is verified as usual"
    assert answer.debug["truncated"] == "deadline"
    assert streamed == answer.text and FOREVER_SENTENCE.strip() in answer.text
    assert_citations_hold(answer, assistant)


def test_endless_stream_stops_at_max_tokens(seeded_home: Path, embeddings: LocalEmbeddings) -> None:
    max_tokens = 40
    with stub_llm("stream_forever") as server:
        settings = llm_settings(seeded_home, base_url(server), llm_max_tokens=max_tokens)
        assistant = Assistant(settings, embeddings=embeddings)
        _, answer = stream_answer(assistant)
        assert server.abandoned.wait(LEAVE_S)
    assert answer.timings_ms["generate"] / 1000 < settings.llm_deadline_s, "stopped by the cap, not the deadline"
    assert answer.debug["truncated"] == "max_tokens"
    # A word a piece: the cap counts pieces, so max_tokens words were kept, the last sentence cut short.
    assert answer.mode == "llm" and len(answer.text.split()) == max_tokens
    assert_citations_hold(answer, assistant)


def test_ten_mb_reply_is_cut_to_the_character_cap(seeded_home: Path, embeddings: LocalEmbeddings) -> None:
    with stub_llm("ten_mb") as server:
        settings = llm_settings(seeded_home, base_url(server), llm_max_tokens=64)
        assistant = Assistant(settings, embeddings=embeddings)
        streamed, answer = stream_answer(assistant)
        assert server.abandoned.wait(LEAVE_S), "the client left before reading all 10 MB"
    assert server.bytes_sent < TEN_MB
    assert answer.debug["truncated"] == "max_tokens"
    assert len(streamed) <= 64 * MAX_CHARS_PER_TOKEN
    assert answer.mode == "llm" and answer.citations
    assert_citations_hold(answer, assistant)


def test_a_line_that_never_ends_is_refused_at_the_line_cap(seeded_home: Path, embeddings: LocalEmbeddings) -> None:
    """The SSE decoder buffers a line whole, so the transport stops one at MAX_LINE_BYTES; the answer falls back."""
    with stub_llm("endless_line") as server:
        # No deadline or token cap can end it: the deadline is far off and no piece is ever complete.
        settings = llm_settings(seeded_home, base_url(server), llm_deadline_s=600)
        assistant = Assistant(settings, embeddings=embeddings)
        answer = assistant.ask(QUESTION)
        assert server.abandoned.wait(LEAVE_S), "the client left the endless line"
    # Loopback socket buffers hold megabytes, so only a loose bound: an unread line would run to gigabytes.
    assert server.bytes_sent < 64 * MAX_LINE_BYTES, f"{server.bytes_sent} bytes sent"
    assert answer.mode == "extractive" and answer.llm_error is not None
    assert "line longer than 1 MiB" in answer.llm_error
    assert_citations_hold(answer, assistant)


@pytest.mark.parametrize("behaviour", ["stream_forever", "ten_mb"])
def test_chat_stream_memory_stays_bounded(seeded_assistant: Assistant, behaviour: str) -> None:
    """The reader thread never runs far ahead of a slow caller: Python's peak allocation stays small."""
    candidates = seeded_assistant.retrieve(QUESTION)
    messages = answer_messages(QUESTION, [c.chunk for c in candidates[:2]])
    limits = StreamLimits(timeout_s=10, deadline_s=3, max_tokens=2000)
    with stub_llm(behaviour) as server:
        llm = make_llm(llm_settings(seeded_assistant.settings.home, base_url(server)))
        tracemalloc.start()
        try:
            stream = ChatStream(llm, messages, limits=limits)
            text_chars = 0
            for piece in stream:
                text_chars += len(piece)
                time.sleep(0.01)  # a slow reader: the queue, not memory, absorbs the difference
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert server.abandoned.wait(LEAVE_S)
    assert stream.truncated in ("deadline", "max_tokens")
    assert text_chars <= limits.max_chars
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MB"


def test_endless_line_memory_stays_bounded(seeded_assistant: Assistant) -> None:
    """Without the line cap the SSE decoder would hold the whole line: tens of MB before the deadline."""
    candidates = seeded_assistant.retrieve(QUESTION)
    messages = answer_messages(QUESTION, [c.chunk for c in candidates[:2]])
    limits = StreamLimits(timeout_s=10, deadline_s=600, max_tokens=2000)
    with stub_llm("endless_line") as server:
        llm = make_llm(llm_settings(seeded_assistant.settings.home, base_url(server)))
        tracemalloc.start()
        try:
            with pytest.raises(LLMError, match="line longer than 1 MiB"):
                list(ChatStream(llm, messages, limits=limits))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert server.abandoned.wait(LEAVE_S)
    assert peak < 8 * MAX_LINE_BYTES, f"peak {peak / 2**20:.1f} MB"

"""Assistant.verified: citations that no longer match the stored document text never reach the user."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from conftest import CORPUS

from ingest import ingest_paths
from rag.answer import Extraction
from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.prompts import ABSTAIN, STALE_CITATIONS
from rag.settings import Settings
from rag.types import Citation

QUESTION = "How many additional police officers did Kenya send to Haiti?"


def ingested(home: Path, embeddings: LocalEmbeddings) -> Assistant:
    assistant = Assistant(Settings(home=home), embeddings=embeddings)
    report = ingest_paths([CORPUS], settings=assistant.settings, store=assistant.store)
    assert not report.failed and report.chunks > 0
    return assistant


def edit_stored_texts(assistant: Assistant, prefix: str) -> None:
    """Leave the stored document texts newer than their chunks, as an ingest interrupted after writing texts does."""
    for info in assistant.documents():
        doc = assistant.document(info.source)
        assert doc is not None
        assistant.texts.put_many([doc.model_copy(update={"text": prefix + doc.text})])


def test_texts_ahead_of_chunks_turn_the_answer_into_an_abstention_with_a_reason(
    tmp_path: Path, embeddings: LocalEmbeddings
) -> None:
    assistant = ingested(tmp_path / "rag", embeddings)
    before = assistant.ask(QUESTION)
    assert before.status == "answered" and before.citations and "270" in before.text

    edit_stored_texts(assistant, "UPDATED: the figures below were revised. ")
    after = assistant.ask(QUESTION)
    assert after.status == "abstained" and after.abstained
    assert after.text == ABSTAIN and after.citations == () and after.short_answer is None
    assert after.abstain_reason == STALE_CITATIONS
    assert "[1]" not in after.text


def test_only_the_stale_citations_are_dropped_and_the_rest_renumbered(
    tmp_path: Path, embeddings: LocalEmbeddings
) -> None:
    assistant = ingested(tmp_path / "rag", embeddings)
    answer = assistant.ask(QUESTION)
    [candidate] = [c for c in answer.candidates if c.chunk.id == answer.citations[0].chunk_id]
    chunk = candidate.chunk
    good = Citation.of_span(2, chunk, 0, 6)
    stale = good.model_copy(update={"n": 1, "quote": "Kenia "})  # the stored text says "NAIROBI"
    extraction = Extraction("x [1] y [2]", [stale, good], "answered", 0.9, 0.4)

    kept = assistant.verified(extraction, {chunk.id: chunk})
    assert [c.n for c in kept.citations] == [1] and kept.citations[0].quote == good.quote
    assert kept.text == f"{good.quote} [1]" and kept.status == "answered"
    untouched = replace(extraction, citations=[good.model_copy(update={"n": 1})])
    assert assistant.verified(untouched, {chunk.id: chunk}) is untouched

"""Property tests: sentence spans, cleaning, chunks and extractive citations keep exact offsets on any Unicode text."""

from __future__ import annotations

import itertools

import pytest
from fuzzing import examples
from hypothesis import given
from hypothesis import strategies as st

from ingest.chunk import chunk_document
from ingest.clean import clean_document, clean_text
from rag.answer import split_sentences, verify_citation
from rag.text import sentence_spans
from rag.types import Candidate, Citation, Document, PageSpan

pytestmark = pytest.mark.fuzz

# The awkward parts of real text, mixed with arbitrary characters: combining marks, emoji (skin tones, flags, ZWJ
# families), right-to-left scripts and marks, every kind of line end, NUL-free control characters, odd spaces,
# and the punctuation, abbreviations and capitals the sentence splitter keys on.
PIECES = [
    "\u0301", "e\u0301", "\u0915\u094d\u0937", "👍🏽", "🇰🇪", "👨\u200d👩\u200d👧", "مرحبا بالعالم. ", "שלום.",
    "\u200f", "\u200e", "\u202e", "\r\n", "\r", "\n", "\n\n\n", "\t", "\x0b", "\x0c", "\x1c", "\x1f", "\x7f",
    "\x85", "\u2028", "\u2029", "\ufeff", "\u00a0", "\u3000", "\u200b", ". ", "! ", "? ", "...", "?!", "Dr. ",
    "e.g. ", "U.S. ", "“Quoted.” ", "(Paren.) ", "'Single.' ", "The ", "River ", "1990. ", "A", "b", " ", "  ",
    "Share this", "© 2024 News",
]  # fmt: skip
CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
TEXT = st.lists(st.one_of(st.sampled_from(PIECES), st.text(CHARS, max_size=12)), max_size=120).map("".join)


@examples(150)
@given(TEXT)
def test_sentence_spans_are_exact_trimmed_ordered_and_single_line(text: str) -> None:
    spans = sentence_spans(text)
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end <= len(text)
        piece = text[start:end]
        assert piece == piece.strip() and "\n" not in piece
        previous_end = end
    assert " ".join(text[s:e] for s, e in spans).split() == [w for line in text.split("\n") for w in line.split()]


@examples(60)
@given(TEXT, st.data())
def test_sentence_spans_of_a_range_stay_inside_it(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    for s, e in sentence_spans(text, start, end):
        assert start <= s < e <= end


@examples(150)
@given(TEXT)
def test_clean_text_is_idempotent_and_leaves_no_carriage_returns_nuls_or_blank_runs(text: str) -> None:
    cleaned = clean_text(text)
    assert clean_text(cleaned) == cleaned
    assert "\r" not in cleaned and "\x00" not in cleaned and "\n\n\n" not in cleaned and "\ufeff" not in cleaned
    assert cleaned == cleaned.strip()


@examples(40)
@given(st.lists(TEXT, min_size=1, max_size=5))
def test_cleaned_pages_keep_exact_spans(pages: list[str]) -> None:
    spans, offset = [], 0
    for number, page_text in enumerate(pages, start=1):
        spans.append(PageSpan(page=number, start=offset, end=offset + len(page_text)))
        offset += len(page_text)
    doc = clean_document(Document(source="s.pdf", title="T", text="".join(pages), pages=tuple(spans)))
    kept = [(n, clean_text(p)) for n, p in enumerate(pages, start=1) if clean_text(p)]
    assert [(span.page, doc.text[span.start : span.end]) for span in doc.pages] == kept


def chunked(text: str, max_chars: int, overlap: int, *, pages: int = 1) -> tuple[Document, list]:
    """text cleaned (split into `pages` equal pages) and chunked as ingest does."""
    step = max(1, len(text) // pages)
    cuts = [*[*range(0, len(text), step)][:pages], len(text)]
    spans = tuple(PageSpan(page=i + 1, start=a, end=b) for i, (a, b) in enumerate(itertools.pairwise(cuts)))
    doc = clean_document(Document(source="fuzz.md", title="Fuzz", text=text, pages=spans if pages > 1 else ()))
    return doc, chunk_document(doc, max_chars=max_chars, overlap_chars=overlap)


@examples(150)
@given(TEXT, st.integers(100, 300), st.integers(0, 300), st.integers(1, 3))
def test_every_chunk_is_the_document_text_at_its_offsets_and_all_text_is_covered(
    text: str, max_chars: int, overlap: int, pages: int
) -> None:
    doc, chunks = chunked(text, max_chars, min(overlap, max_chars // 2), pages=pages)
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text and chunk.text == chunk.text.strip() and len(chunk.text) <= max_chars
        assert chunk.page == doc.page_at(chunk.start)
    assert [c.start for c in chunks] == sorted({c.start for c in chunks})  # in order, each start once
    assert len({c.id for c in chunks}) == len(chunks)
    for start, end in sentence_spans(doc.text):  # no sentence is lost between chunks
        covered = [(c.start, c.end) for c in chunks if c.start < end and start < c.end]
        assert covered and min(s for s, _ in covered) <= start and max(e for _, e in covered) >= end


@examples(150)
@given(TEXT, st.integers(100, 300), st.integers(0, 300))
def test_every_extractive_citation_quotes_the_document_at_its_offsets(text: str, max_chars: int, overlap: int) -> None:
    doc, chunks = chunked(text, max_chars, min(overlap, max_chars // 2))
    candidates = [Candidate(chunk=c, rank=r, fused_rank=r, fused_score=0.0) for r, c in enumerate(chunks, start=1)]
    sentences = split_sentences(candidates)
    for n, sentence in enumerate(sentences, start=1):
        citation = Citation.of_span(n, sentence.chunk, sentence.local_start, sentence.local_end)
        assert doc.text[citation.start : citation.end] == citation.quote == sentence.text
        assert verify_citation(citation, sentence.chunk, doc.text)
        assert verify_citation(citation, sentence.chunk, None)
    assert len({s.doc_span for s in sentences}) == len(sentences)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("line", ["." * 200_000, "!?" * 100_000, "a." * 100_000, ". \u2003" * 60_000])
def test_long_runs_of_sentence_marks_split_in_linear_time(line: str) -> None:
    # Before the possessive match, a 40,000-dot line took 70 s (quadratic): these would take about half an hour.
    spans = sentence_spans(line + "\nNext line.")
    assert spans[-1] == (len(line) + 1, len(line) + 11)

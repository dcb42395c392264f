"""ingest.chunk: sentence-aligned chunks with exact offsets, bounded size, sentence overlap, stable ids."""

from __future__ import annotations

import random
from itertools import pairwise
from pathlib import Path

import pytest

from ingest.chunk import chunk_document
from ingest.clean import clean_document
from ingest.load import load_file
from rag.text import sentence_spans
from rag.types import Document, PageSpan

REPO = Path(__file__).resolve().parents[1]
WORDS = [
    "rain",
    "river",
    "county",
    "police",
    "mission",
    "officers",
    "budget",
    "clinic",
    "water",
    "road",
    "market",
    "school",
    "dam",
    "report",
]


def make_text(seed: int, sentences: int = 60) -> str:
    """Paragraphs of varied sentences, some with abbreviations and numbers."""
    rng = random.Random(seed)
    paragraphs, current = [], []
    for n in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 30))]
        sentence = " ".join(words).capitalize() + rng.choice([".", ".", "?", "!"])
        if n % 7 == 3:
            sentence = f"Dr. Otieno of the U.S. embassy said {sentence.lower()}"
        current.append(sentence)
        if rng.random() < 0.2:
            paragraphs.append(" ".join(current))
            current = []
    paragraphs.append(" ".join(current))
    return "\n\n".join(p for p in paragraphs if p)


def doc_of(text: str, source: str = "/data/story.txt", **extra: object) -> Document:
    return Document(source=source, title="Story", text=text, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("max_chars", "overlap"), [(120, 0), (300, 80), (1200, 200), (500, 499)])
def test_offsets_are_exact_and_chunks_bounded_and_cover_every_sentence(seed: int, max_chars: int, overlap: int) -> None:
    doc = doc_of(make_text(seed))
    chunks = chunk_document(doc, max_chars=max_chars, overlap_chars=overlap)
    assert chunks
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert 0 < len(chunk.text) <= max_chars
        assert chunk.text == chunk.text.strip()
    # Chunks go forward and, together, cover every sentence of the document.
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    for start, end in sentence_spans(doc.text):
        assert any(c.start <= start and end <= c.end for c in chunks) or end - start > max_chars
    assert len({c.id for c in chunks}) == len(chunks)


def test_chunks_start_and_end_on_sentence_boundaries() -> None:
    doc = doc_of(make_text(7))
    starts = {s for s, _ in sentence_spans(doc.text)}
    ends = {e for _, e in sentence_spans(doc.text)}
    chunks = chunk_document(doc, max_chars=400, overlap_chars=100)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.start in starts and chunk.end in ends
    # "Dr." and "U.S." never end a chunk.
    assert not any(c.text.endswith(("Dr.", "U.S.")) for c in chunks)


def test_neighbours_repeat_whole_sentences_up_to_the_overlap() -> None:
    sentences = [f"Sentence number {n} talks about the river and the road." for n in range(40)]
    doc = doc_of(" ".join(sentences))  # every sentence is 52-53 characters
    chunks = chunk_document(doc, max_chars=300, overlap_chars=120)
    assert len(chunks) > 5
    for before, after in pairwise(chunks):
        shared = doc.text[after.start : before.end]
        assert after.start < before.end, "neighbours should overlap"
        assert len(shared) <= 120
        assert shared.count(".") == 2  # two whole sentences fit in 120 characters, three would not
        assert before.text.endswith(shared) and after.text.startswith(shared)
    no_overlap = chunk_document(doc, max_chars=300, overlap_chars=0)
    for before, after in pairwise(no_overlap):
        assert after.start > before.end


def test_a_sentence_longer_than_a_chunk_is_cut_at_spaces_and_a_huge_word_hard() -> None:
    long_sentence = " ".join(f"word{n}" for n in range(200)) + "."
    huge_word = "x" * 450
    doc = doc_of(f"Short start. {long_sentence} {huge_word} Short end.")
    chunks = chunk_document(doc, max_chars=150, overlap_chars=30)
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert len(chunk.text) <= 150
    words = {w for c in chunks for w in c.text.split()}
    assert {f"word{n}" for n in range(199)} <= words, "a cut at a space keeps every word whole"
    assert sum(c.text.count("x") for c in chunks if set(c.text) == {"x"}) == 450
    assert chunks[-1].text.endswith("Short end.")


def test_ids_are_deterministic_and_change_only_where_the_content_does() -> None:
    text = make_text(3, sentences=80)
    first = chunk_document(doc_of(text), max_chars=300, overlap_chars=0)
    again = chunk_document(doc_of(text), max_chars=300, overlap_chars=0)
    assert [c.id for c in first] == [c.id for c in again]
    assert chunk_document(doc_of(text, source="/data/other.txt"), max_chars=300, overlap_chars=0)[0].id != first[0].id
    # Append one sentence: only the last chunk (or a new one) differs; the ids before it are kept.
    grown = chunk_document(doc_of(text + " A brand new closing sentence."), max_chars=300, overlap_chars=0)
    assert [c.id for c in grown[: len(first) - 1]] == [c.id for c in first[:-1]]
    assert grown[-1].id not in {c.id for c in first}


def test_chunks_carry_title_source_metadata_and_page() -> None:
    pages = ["First page sentence one. First page sentence two.", "Second page sentence one. Second page two."]
    text = pages[0] + "\n\n" + pages[1]
    spans = (PageSpan(page=1, start=0, end=len(pages[0])), PageSpan(page=2, start=len(pages[0]) + 2, end=len(text)))
    doc = doc_of(text, pages=spans, metadata={"date": "2025-01-18"})
    chunks = chunk_document(doc, max_chars=60, overlap_chars=0)
    assert [(c.page, c.text) for c in chunks] == [
        (1, "First page sentence one. First page sentence two."),
        (2, "Second page sentence one. Second page two."),
    ]
    assert all(c.source == doc.source and c.title == "Story" and c.metadata == {"date": "2025-01-18"} for c in chunks)


def test_seed_article_chunks_point_into_the_cleaned_text() -> None:
    doc = clean_document(
        load_file(REPO / "corpus" / "kenya-police-haiti.md", max_bytes=2**20, timeout_s=60, memory_mb=1024)
    )
    chunks = chunk_document(doc, max_chars=1200, overlap_chars=200)
    assert len(chunks) >= 2
    assert all(doc.text[c.start : c.end] == c.text for c in chunks)
    assert "U.S. President-elect Donald Trump" in "".join(c.text for c in chunks)

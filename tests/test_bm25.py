"""Our BM25 index: scores equal to bm25s' (the library it replaced), and an update equal to a fresh build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.bm25 import DOC_STOPWORDS, K1, B, BM25Index, index_text, tokenize
from rag.types import Chunk

DOCS = Path(__file__).parent / "fixtures" / "wiki" / "docs"
QUERIES = [
    "Who was Harvard named after?",
    "oldest institution of higher learning in the United States",
    "What did the early College train clergy for?",
    "Harvard Harvard corporation",  # a repeated term counts twice
    "zzz-no-such-word",
]


def fixture_chunks() -> list[Chunk]:
    """Each paragraph of the 44 fixture documents, one chunk each, dated by its file's number."""
    chunks = []
    for path in sorted(DOCS.iterdir()):
        body = path.read_text(encoding="utf-8").split("---", 2)[-1]
        start = 0
        for n, paragraph in enumerate(p for p in body.split("\n") if p.strip()):
            start = body.index(paragraph, start)
            day = f"2024-01-{int(path.stem.split('-')[1]) % 28 + 1:02d}"
            chunks.append(
                Chunk(
                    id=f"{path.stem}#{n}",
                    source=str(path),
                    title=path.stem.rsplit("-", 1)[0],
                    start=start,
                    end=start + len(paragraph),
                    text=paragraph,
                    metadata={"date": day},
                )
            )
            start += len(paragraph)
    return chunks


def ranked(index: BM25Index, query: str, n: int = 10) -> dict[str, float]:
    return dict(index.search(query, n))


def test_scores_equal_those_of_bm25s_on_the_same_tokens() -> None:
    import bm25s

    chunks = fixture_chunks()
    ours = BM25Index.build(chunks, "r1")
    reference = bm25s.BM25(k1=K1, b=B)  # Lucene's variant, as ours
    reference.index([tokenize(index_text(c), drop=DOC_STOPWORDS) for c in chunks], show_progress=False)
    for query in QUERIES:
        tokens = [t for t in tokenize(query) if t in reference.vocab_dict]
        expected = reference.get_scores(tokens) if tokens else np.zeros(len(chunks))
        assert ours.scores(tokenize(query)) == pytest.approx(expected, rel=1e-6, abs=1e-6), query


def test_an_update_equals_a_fresh_build_of_what_the_collection_now_holds() -> None:
    chunks = fixture_chunks()
    first = BM25Index.build(chunks[:120], "r1")
    removed = [c.id for c in chunks[:100]]  # most of it, so the dead vocabulary is dropped too
    updated = first.updated(removed, chunks[100:], "r2")
    fresh = BM25Index.build(chunks[100:], "r2")
    assert updated.ids == fresh.ids and updated.revision == "r2"
    assert len(updated.vocab) == len(fresh.vocab), "terms only removed chunks held are gone"
    assert updated.openings == fresh.openings and set(updated.openings) == {c.source for c in chunks[100:]}
    assert np.array_equal(updated.days, fresh.days) and np.array_equal(updated.lengths, fresh.lengths)
    for query in QUERIES:
        got, want = ranked(updated, query), ranked(fresh, query)
        assert got.keys() == want.keys() and all(got[i] == pytest.approx(want[i]) for i in want), query
    assert first.ids == [c.id for c in chunks[:120]] and ranked(first, QUERIES[0]), "the old snapshot is untouched"


def test_an_update_skips_chunks_already_held_and_ids_it_never_held() -> None:
    chunks = fixture_chunks()
    index = BM25Index.build(chunks[:50], "r1")
    again = index.updated(["not-a-chunk"], chunks[40:60], "r2")
    assert again.ids == [c.id for c in chunks[:60]]
    assert ranked(again, QUERIES[1]) == pytest.approx(ranked(BM25Index.build(chunks[:60], "r2"), QUERIES[1]))


def test_a_saved_update_loads_back_whole(tmp_path: Path) -> None:
    chunks = fixture_chunks()
    updated = BM25Index.build(chunks[:80], "r1").updated([c.id for c in chunks[:10]], chunks[80:], "r2")
    updated.save(tmp_path / "index")
    loaded = BM25Index.load(tmp_path / "index")
    assert loaded is not None and loaded.revision == "r2" and loaded.ids == updated.ids
    assert loaded.openings == updated.openings and loaded.vocab == updated.vocab
    for query in QUERIES:
        assert loaded.search(query, 10) == updated.search(query, 10), query


def test_a_mask_limits_the_ranking_to_the_chunks_it_marks() -> None:
    chunks = fixture_chunks()
    index = BM25Index.build(chunks, "r1")
    allowed = [c.id for c in chunks if c.source.endswith("-01.txt") or c.source.endswith("-02.txt")]
    found = index.search("Harvard", 100, index.mask(allowed))
    assert found and {i for i, _ in found} <= set(allowed)
    everywhere = ranked(index, "Harvard", 1000)
    assert all(everywhere[i] == score for i, score in found), "a mask hides chunks, never changes their scores"

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import CORPUS
from langchain_core.retrievers import BaseRetriever

from ingest import ingest_paths
from rag.assistant import Assistant
from rag.corpus import remove_source
from rag.retrieve import RerankWeights, fuse
from rag.settings import Settings
from rag.text import sentence_spans


def test_fuse_rewards_agreement_and_keeps_each_rank():
    bm25 = [("a", 9.0), ("b", 5.0), ("c", 1.0)]
    vector = [("b", 0.9), ("c", 0.8)]
    fused = fuse({"bm25": bm25, "vector": vector}, {"bm25": 1.0, "vector": 1.0}, rrf_k=60)
    assert [chunk_id for chunk_id, *_ in fused] == ["b", "c", "a"]
    _, score, detail = fused[0]
    assert (detail["bm25_rank"], detail["vector_rank"]) == (2, 1)
    assert score == pytest.approx(1 / 62 + 1 / 61)
    assert "vector_rank" not in fused[2][2]


def test_fuse_weights_shift_the_order():
    bm25 = [("a", 9.0), ("b", 5.0)]
    vector = [("b", 0.9), ("a", 0.8)]
    by_vector = fuse({"bm25": bm25, "vector": vector}, {"bm25": 0.5, "vector": 1.0}, rrf_k=60)
    assert by_vector[0][0] == "b"


def test_hybrid_finds_the_270_sentence_by_every_method(seeded_assistant: Assistant):
    question = "How many additional police officers did Kenya send to Haiti?"
    for method in ("hybrid", "bm25", "vector"):
        top = seeded_assistant.retrieve(question, k=1, method=method)  # type: ignore[arg-type]
        assert "270 additional police officers" in top[0].chunk.text, method
    hybrid = seeded_assistant.retrieve(question, k=3)
    assert hybrid[0].bm25_rank is not None and hybrid[0].vector_rank is not None


def test_a_search_fetches_texts_once_for_the_fused_candidates_only(
    seeded_assistant: Assistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = seeded_assistant.store
    fetched: list[list[str]] = []
    real = store.get_chunks
    monkeypatch.setattr(store, "get_chunks", lambda ids: fetched.append(list(ids)) or real(ids))
    found = seeded_assistant.retrieve("How many additional police officers did Kenya send to Haiti?", k=2)
    assert len(fetched) == 1 and len(fetched[0]) <= seeded_assistant.settings.candidates
    assert found and {c.chunk.id for c in found} <= set(fetched[0])


def assistant_over(tmp_path: Path, embeddings, notes: dict[str, tuple[str, str]]) -> tuple[Assistant, Path]:
    """An assistant over a fresh folder of titled Markdown notes ({file name: (title, text)}), ingested."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, (title, text) in notes.items():
        (docs / name).write_text(f"---\ntitle: {title}\n---\n{text}\n")
    assistant = Assistant(Settings(home=tmp_path / "rag"), embeddings=embeddings)
    ingest_paths([docs], settings=assistant.settings, store=assistant.store)
    return assistant, docs


def test_filters_by_source_and_title(tmp_path: Path, embeddings):
    notes = {
        "rain.md": ("Rain report", "Heavy rain flooded the valley roads on Monday."),
        "sun.md": ("Sun report", "A heat wave dried the valley rivers on Tuesday."),
    }
    assistant, docs = assistant_over(tmp_path, embeddings, notes)
    only_sun = assistant.retrieve("valley rain", k=5, where={"title": "Sun report"})
    assert only_sun and {c.chunk.title for c in only_sun} == {"Sun report"}
    rain_source = str((docs / "rain.md").resolve())
    only_rain = assistant.retrieve("heat wave", k=5, where={"source": rain_source})
    assert only_rain and {c.chunk.source for c in only_rain} == {rain_source}


def test_langchain_retriever(seeded_assistant: Assistant):
    retriever = seeded_assistant.as_retriever(k=2)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("How much money has the U.S. pledged?")
    assert len(docs) == 2
    assert any("$300 million" in d.page_content for d in docs)
    assert {"source", "start", "end", "chunk_id"} <= set(docs[0].metadata)


@pytest.mark.server
def test_server_mode_ranks_like_embedded_mode(tmp_path: Path, embeddings, chroma_url: str, seeded_assistant: Assistant):
    server = Assistant(
        Settings(home=tmp_path / "rag", chroma_url=chroma_url, collection="retrieve-parity"), embeddings=embeddings
    )
    report = ingest_paths([CORPUS], settings=server.settings, store=server.store)
    assert not report.failed
    for question in ("How many additional police officers did Kenya send to Haiti?", "Who pledged $300 million?"):
        ours = [(c.chunk.start, c.chunk.end) for c in server.retrieve(question, k=3)]
        embedded = [(c.chunk.start, c.chunk.end) for c in seeded_assistant.retrieve(question, k=3)]
        assert ours == embedded
    assert (
        server.ask("How many additional police officers did Kenya send to Haiti?").text
        == seeded_assistant.ask("How many additional police officers did Kenya send to Haiti?").text
    )


def test_stale_bm25_index_is_rebuilt_from_the_collection(tmp_path: Path, embeddings, chroma_url: str):
    """Another client ingests into a shared server: this client's BM25 index notices and rebuilds."""
    settings = dict(chroma_url=chroma_url, collection="shared-bm25")
    reader = Assistant(Settings(home=tmp_path / "reader", **settings), embeddings=embeddings)
    writer = Assistant(Settings(home=tmp_path / "writer", **settings), embeddings=embeddings)
    ingest_paths([CORPUS], settings=writer.settings, store=writer.store)
    assert "270" in reader.retrieve("additional police officers", k=1, method="bm25")[0].chunk.text
    extra = tmp_path / "extra.md"
    extra.write_text("---\ntitle: Flamingo census\n---\nThe lake held 9,000 flamingos in the census.\n")
    ingest_paths([extra], settings=writer.settings, store=writer.store)
    # The reader's previous snapshot serves while the next one builds in the background: a bounded wait.
    deadline = time.monotonic() + 120
    while True:
        top = reader.retrieve("flamingos census", k=1, method="bm25")
        if (top and "flamingos" in top[0].chunk.text) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert top and "flamingos" in top[0].chunk.text


def test_removed_document_leaves_both_rankings(tmp_path: Path, embeddings):
    notes = {
        "owls.md": ("Owls", "Barn owls hunt voles in the meadow at dusk."),
        "bees.md": ("Bees", "Honey bees forage on clover in the meadow."),
    }
    assistant, docs = assistant_over(tmp_path, embeddings, notes)
    assert assistant.retrieve("barn owls voles", k=1, method="bm25")[0].chunk.title == "Owls"
    owls = str((docs / "owls.md").resolve())
    assert remove_source(owls, settings=assistant.settings, store=assistant.store) == 1
    for method in ("bm25", "vector"):
        found = assistant.retrieve("barn owls voles", k=5, method=method)  # type: ignore[arg-type]
        assert all(c.chunk.source != owls for c in found), method


def test_rerank_scores_each_sentence_from_stored_vectors(seeded_assistant: Assistant):
    top = seeded_assistant.retrieve("How many additional police officers did Kenya send to Haiti?", k=3)
    scores = [c.rerank_score for c in top]
    assert None not in scores and scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    best = top[0]
    assert [(s, e) for s, e, _ in best.sentence_scores] == sentence_spans(best.chunk.text)
    start, end, _ = max(best.sentence_scores, key=lambda row: row[2])
    assert "270 additional police officers" in best.chunk.text[start:end]


def test_rerank_can_be_turned_off(seeded_home: Path, embeddings):
    plain = Assistant(Settings(home=seeded_home, rerank=False), embeddings=embeddings)
    found = plain.retrieve("Who pledged $300 million?", k=3)
    assert [c.fused_rank for c in found] == [1, 2, 3]
    assert all(c.rerank_score is None for c in found)


def test_rerank_orders_by_the_weighted_features_the_fit_sees(seeded_assistant: Assistant):
    question = "How many additional police officers did Kenya send to Haiti?"
    search = seeded_assistant.search
    fused = search.search(question, k=10, method="bm25")
    features = dict((c.chunk.id, f) for c, f in search.rerank_features(question, fused))
    assert all(0.0 <= bm25 <= 1.0 for bm25, _, _ in features.values())
    weights = RerankWeights(bm25=1.0, sentence=0.0, joint=2.0)
    ranked = search.rerank(question, fused, weights)
    assert [c.rank for c in ranked] == list(range(1, len(ranked) + 1))
    for c in ranked:
        assert c.rerank_score == pytest.approx(features[c.chunk.id][0] + 2.0 * features[c.chunk.id][2])

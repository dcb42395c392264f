"""rag.store against real Chroma, embedded and a `chroma run` server, with real MiniLM vectors."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port

from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.store import SENTENCE_COUNT, DocumentTexts, Store, chunk_from_record, chunk_to_metadata
from rag.types import Chunk, Document, PageSpan, StoreUnavailable

TEXTS = {
    "a.txt": ["The ferry to Lamu leaves at dawn. It returns at noon.", "Tickets cost five hundred shillings."],
    "b.pdf": ["Masinga dam reached capacity in May.", "Engineers opened two spillways.", "Farmers moved cattle."],
}


def make_chunk(source: str, n: int, text: str) -> Chunk:
    return Chunk(
        id=f"{Path(source).stem}-{n}",
        source=source,
        title=Path(source).stem.upper(),
        start=n * 100,
        end=n * 100 + len(text),
        text=text,
        page=n + 1 if source.endswith(".pdf") else None,
        metadata={"kind": "test"},
    )


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def store(request: pytest.FixtureRequest, tmp_path: Path, embeddings: LocalEmbeddings) -> Store:
    """A store holding TEXTS' chunks, in its own collection."""
    url = request.getfixturevalue("chroma_url") if request.param == "server" else None
    settings = Settings(home=tmp_path / "rag", chroma_url=url, collection=f"store-{uuid.uuid4().hex[:12]}")
    store = Store(settings, embeddings)
    chunks = [make_chunk(source, n, text) for source, texts in TEXTS.items() for n, text in enumerate(texts)]
    texts = [c.text for c in chunks]
    store.upsert(
        [c.id for c in chunks], texts, [chunk_to_metadata(c) for c in chunks], embeddings.encode_passages(texts)
    )
    return store


def test_metadata_round_trip_keeps_every_field() -> None:
    for chunk in (make_chunk("x.pdf", 2, "Paged text."), make_chunk("y.txt", 0, "Unpaged text.")):
        meta = chunk_to_metadata(chunk)
        assert None not in meta.values()
        assert chunk_from_record(chunk.id, chunk.text, meta) == chunk


def test_count_iterate_and_get_in_order(store: Store) -> None:
    assert store.count() == 5
    assert {c.id for c in store.iter_chunks(page_size=2)} == {"a-0", "a-1", "b-0", "b-1", "b-2"}
    got = store.get_chunks(["b-2", "missing", "a-0"])
    assert [c.id for c in got] == ["b-2", "a-0"]
    assert got[0] == make_chunk("b.pdf", 2, TEXTS["b.pdf"][2])
    store.delete(["b-2"])
    assert [c.id for c in store.get_chunks(["b-2", "a-0"])] == ["a-0"], "a deleted chunk leaves the cache too"


def test_chunks_by_filter_and_by_contained_text(store: Store) -> None:
    assert store.chunk_ids({"source": "b.pdf"}) == {"b-0", "b-1", "b-2"}
    assert store.chunk_ids() == {"a-0", "a-1", "b-0", "b-1", "b-2"}
    found = store.chunks_containing(["opened two spillways", "leaves at dawn"], limit=5)
    assert sorted(c.id for c in found) == ["a-0", "b-1"]
    assert len(store.chunks_containing(["a"], limit=2)) == 2 and store.chunks_containing([], limit=2) == []


def test_chunk_vectors_are_the_models_and_sentences_get_their_own(store: Store, embeddings: LocalEmbeddings) -> None:
    stored = store.collection.get(ids=["a-0"], include=["embeddings"])["embeddings"][0]
    # Bulk encoding may run in bfloat16 (RAG_EMBED_PRECISION), within 2e-5 cosine of the float32 model.
    assert float(np.dot(stored, embeddings.encode_with_model([TEXTS["a.txt"][0]])[0])) > 0.9999
    sentences = store.sentence_vectors(["a-0", "b-1", "missing"])
    assert set(sentences) == {"a-0", "b-1"}
    assert sentences["a-0"].spans == [(0, 33), (34, 53)]  # "The ferry ... dawn." and "It returns at noon."
    assert sentences["a-0"].vectors.shape == (2, 384)
    assert np.linalg.norm(sentences["a-0"].vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_sentence_vectors_are_fetched_by_id_once_their_chunk_was_read(
    store: Store, embeddings: LocalEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_filter = store.sentence_vectors(["a-0", "b-1"])  # no chunk read yet: by a chunk_id filter
    reader = Store(store.settings, embeddings)
    asked: list[dict] = []
    sentences, get = reader.sentences, type(reader.sentences).get  # the chunks' collection is of the same class

    def recorded(self: object, **kw: object) -> object:
        if self is sentences:
            asked.append(kw)
        return get(self, **kw)

    monkeypatch.setattr(type(sentences), "get", recorded)
    reader.get_chunks(["a-0", "b-1"])
    by_id = reader.sentence_vectors(["a-0", "b-1", "missing"])
    assert [sorted(kw["ids"]) for kw in asked if "ids" in kw] == [["a-0#0", "a-0#1", "b-1#0"]]
    assert [kw["where"] for kw in asked if kw.get("where")] == [{"chunk_id": {"$in": ["missing"]}}]
    assert set(by_id) == {"a-0", "b-1"}
    for chunk_id, vectors in by_filter.items():
        assert by_id[chunk_id].spans == vectors.spans
        assert np.array_equal(by_id[chunk_id].vectors, vectors.vectors)


def test_chunks_written_without_a_sentence_count_are_fetched_by_filter(
    store: Store, embeddings: LocalEmbeddings
) -> None:
    # As an older version wrote them: the chunk's metadata has no SENTENCE_COUNT.
    got = store.collection.get(ids=["a-1"], include=["documents", "metadatas", "embeddings"])
    meta = {k: v for k, v in got["metadatas"][0].items() if k != SENTENCE_COUNT}
    store.collection.delete(ids=["a-1"])
    store.collection.add(ids=["a-1"], documents=got["documents"], metadatas=[meta], embeddings=got["embeddings"])
    reader = Store(store.settings, embeddings)
    assert reader.get_chunks(["a-1"])[0] == make_chunk("a.txt", 1, TEXTS["a.txt"][1])
    assert reader.sentence_vectors(["a-1"])["a-1"].spans == [(0, len(TEXTS["a.txt"][1]))]


def test_query_sentences_returns_cosine_similarity_and_honours_where(store: Store, embeddings: LocalEmbeddings) -> None:
    vector = embeddings.embed_query("When does the ferry come back?")
    hits = store.query_sentences(vector, 3)
    assert hits[0][0] == "a-0"  # found by its second sentence, which the chunk's own vector blurs
    assert all(-1.0 - 1e-4 <= score <= 1.0 + 1e-4 for _, score in hits)  # float32 rounding
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    only_b = store.query_sentences(vector, 10, where={"source": "b.pdf"})
    assert {chunk_id for chunk_id, _ in only_b} == {"b-0", "b-1", "b-2"}


def test_documents_are_grouped_from_chunk_metadata(store: Store) -> None:
    docs = {d.source: d for d in store.documents()}
    assert {s: d.chunks for s, d in docs.items()} == {"a.txt": 2, "b.pdf": 3}
    assert docs["b.pdf"].title == "B" and docs["b.pdf"].metadata == {"kind": "test"}


def test_delete_and_revision_seen_by_another_client(store: Store, embeddings: LocalEmbeddings) -> None:
    other = Store(store.settings, embeddings)  # a second client: another process, or another machine in server mode
    before = other.revision()
    token = store.bump_revision()
    assert token != before and other.revision() == token
    store.delete(["a-0", "a-1"])
    assert other.count() == 3
    assert other.sentences.count() == 3  # their sentences went with them
    assert {d.source for d in other.documents()} == {"b.pdf"}


def test_document_texts_round_trip(tmp_path: Path) -> None:
    texts = DocumentTexts(tmp_path, "notes")
    doc = Document(
        source="/d/r.pdf",
        title="R",
        text="one\n\ntwo",
        pages=(PageSpan(page=1, start=0, end=3), PageSpan(page=2, start=5, end=8)),
        metadata={"date": "2025-01-18"},
    )
    texts.put_many([doc])
    assert texts.get("/d/r.pdf") == doc
    assert DocumentTexts(tmp_path, "other-collection").get("/d/r.pdf") is None
    texts.put_many([doc.model_copy(update={"text": "new"})])
    assert texts.get("/d/r.pdf").text == "new"  # type: ignore[union-attr]
    texts.delete("/d/r.pdf")
    assert texts.get("/d/r.pdf") is None


def test_server_down_is_a_one_line_store_unavailable(tmp_path: Path, embeddings: LocalEmbeddings) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = Store(Settings(home=tmp_path, chroma_url=url), embeddings)
    assert store.location == url
    with pytest.raises(StoreUnavailable) as caught:
        store.count()
    assert url in str(caught.value) and "\n" not in str(caught.value)

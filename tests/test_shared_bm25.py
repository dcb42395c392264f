"""A replica's BM25 snapshot: updated in the background while the previous one serves, from the changed chunks only;
one snapshot per search."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

import rag.bm25
import rag.retrieve
from ingest import ingest_paths
from rag.assistant import Assistant
from rag.bm25 import BM25Index, load_bm25
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.store import Store
from rag.types import Chunk


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def test_a_rebuild_runs_in_the_background_while_the_previous_snapshot_serves(
    tmp_path: Path, embeddings: LocalEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "rag")
    folder = tmp_path / "docs"
    write(folder, "owls.md", "# Owls\n\nThe barn owl hunts voles over the Tarn meadows at night.\n")
    writer, reader = Store(settings, embeddings), Store(settings, embeddings)
    ingest_paths([folder], settings=settings, store=writer)
    before = load_bm25(reader, wait=False)
    write(folder, "ferry.md", "# Ferry\n\nThe Zanzibar ferry sails at dawn from the old harbour.\n")
    # Another process (a replica) ingests: here, a writer whose own refresh is skipped, so the reader is stale.
    monkeypatch.setattr("rag.corpus.Corpus.refresh_bm25", lambda self: None)
    ingest_paths([folder], settings=settings, store=writer)

    started, release = threading.Event(), threading.Event()
    update = BM25Index.updated

    def slow_update(index: BM25Index, removed: list[str], added: Iterable[Chunk], revision: str) -> BM25Index:
        started.set()
        assert release.wait(60), "the test never released the build"
        return update(index, removed, added, revision)

    monkeypatch.setattr(BM25Index, "updated", slow_update)
    monkeypatch.setattr(rag.bm25, "_checked", {})  # the revision is asked now, not a second later
    served = load_bm25(reader, wait=False)
    assert served is before, "the stale snapshot answers at once while the next one builds"
    assert started.wait(60), "a background rebuild started"
    monkeypatch.setattr(rag.bm25, "_checked", {})
    assert load_bm25(reader, wait=False) is before, "still serving while the build runs, without waiting on it"
    release.set()
    fresh = load_bm25(reader)  # wait=True: joins the build in progress
    assert fresh is not before and fresh.revision == reader.revision()
    assert [c.title for c in reader.get_chunks([i for i, _ in fresh.search("Zanzibar ferry", 3)])] == ["Ferry"]


def test_one_search_fetches_one_snapshot(
    tmp_path: Path, embeddings: LocalEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "rag")
    write(tmp_path / "docs", "owls.md", "# Owls\n\nThe barn owl hunts voles over the Tarn meadows at night.\n")
    assistant = Assistant(settings, embeddings=embeddings)
    ingest_paths([tmp_path / "docs"], settings=settings, store=assistant.store)
    calls = []
    real = rag.retrieve.load_bm25

    def counted(store: Store, *, wait: bool = True) -> BM25Index:
        calls.append({"wait": wait})
        return real(store, wait=wait)

    monkeypatch.setattr("rag.retrieve.load_bm25", counted)
    found = assistant.retrieve("What does the barn owl hunt?")
    assert found and found[0].chunk.title == "Owls"
    assert calls == [{"wait": False}], "one snapshot per search, and a question never waits for a rebuild"
    calls.clear()
    answer = assistant.ask("What does the barn owl hunt?")
    assert answer.citations and calls == [{"wait": False}], "one snapshot for the whole question, answer included"


def test_a_changed_collection_is_followed_by_reading_only_the_chunks_that_changed(
    tmp_path: Path, embeddings: LocalEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "rag")
    folder = tmp_path / "docs"
    write(folder, "owls.md", "# Owls\n\nThe barn owl hunts voles over the Tarn meadows at night.\n")
    write(folder, "dam.md", "# Dam\n\nThe board approved the Kiambere dam on Monday.\n")
    write(folder, "ferry.md", "# Ferry\n\nThe Zanzibar ferry sails at dawn from the old harbour.\n")
    writer, reader = Store(settings, embeddings), Store(settings, embeddings)
    monkeypatch.setattr("rag.corpus.Corpus.refresh_bm25", lambda self: None)  # the reader follows on its own
    ingest_paths([folder], settings=settings, store=writer)
    before = load_bm25(reader)
    owl = before.search("barn owl voles", 1)[0][0]
    write(folder, "dam.md", "# Dam\n\nThe board rejected the Kiambere dam on Monday.\n")
    (folder / "ferry.md").unlink()
    write(folder, "heron.md", "# Heron\n\nA grey heron nests by the Tarn outflow.\n")
    ingest_paths([folder], settings=settings, store=writer, prune=True)
    fetched: list[list[str]] = []
    real = Store.iter_chunks

    def spied(store: Store, *, ids: list[str] | None = None, page_size: int = 100) -> Iterable[Chunk]:
        fetched.append(list(ids) if ids is not None else ["<every chunk>"])
        return real(store, ids=ids, page_size=page_size)

    monkeypatch.setattr(Store, "iter_chunks", spied)
    after = load_bm25(reader)
    assert after.revision == reader.revision() and after is not before
    changed = {c.title for c in reader.get_chunks(fetched[0])}
    assert len(fetched) == 1 and changed == {"Dam", "Heron"}, "only the edited and the new file are read"
    assert sorted(after.ids) == sorted(reader.chunk_ids()), "the deleted file's chunk is gone, nothing doubled"
    assert after.search("barn owl voles", 1)[0][0] == owl
    assert [c.title for c in reader.get_chunks([i for i, _ in after.search("Zanzibar ferry", 5)])] == []
    rejected = reader.get_chunks([i for i, _ in after.search("board rejected dam", 5)])
    assert len(rejected) == 1 and "rejected" in rejected[0].text
    assert set(after.openings) == {c.source for c in reader.iter_chunks()}
    monkeypatch.setattr(Store, "iter_chunks", real)
    whole = BM25Index.build(reader.iter_chunks(), after.revision)
    for query in ("barn owl", "Kiambere dam board", "heron Tarn", "approved"):
        followed, built = dict(after.search(query, 10)), dict(whole.search(query, 10))
        assert followed.keys() == built.keys() and all(followed[i] == pytest.approx(built[i]) for i in built), query

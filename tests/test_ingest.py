"""ingest.ingest_paths against real Chroma (embedded and a `chroma run` server) and the real MiniLM model."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

import rag.bm25
from ingest import ingest_paths
from ingest.index import read_document
from ingest.load import find_files
from rag.bm25 import index_folder, load_bm25
from rag.corpus import remove_source
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.store import DocumentTexts, Store
from rag.types import Chunk, IngestReport, PassageVectors

MakeSettings = Callable[..., Settings]

STORIES = {
    "floods.txt": [
        "Heavy rains caused the Nyando river to burst its banks on Tuesday.",
        "Hundreds of families in Kisumu county were displaced by the water.",
        "Relief supplies were flown in by helicopter because the road was cut.",
        "Forecasters expect the rains to continue until the end of the month.",
    ],
    "budget.md": [
        "The county assembly passed a budget of four billion shillings.",
        "Most of the money will go to clinics and rural water projects.",
        "Opposition members walked out before the final vote was taken.",
        "The governor is expected to sign the bill into law next week.",
    ],
    "nested/marathon.txt": [
        "An athlete from Iten won the city marathon in record time.",
        "She crossed the line two minutes ahead of her nearest rival.",
        "The organisers said forty thousand runners took part this year.",
    ],
}


class CountingEmbeddings(LocalEmbeddings):
    """The real model, recording every text it is asked to embed for storage."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def encode_passages(self, texts: list[str]) -> list[PassageVectors]:
        self.embedded.extend(texts)
        return super().encode_passages(texts)


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def make_settings(request: pytest.FixtureRequest, tmp_path: Path) -> MakeSettings:
    """Settings for a temp home, embedded or against the shared `chroma run` server with a collection of its own."""
    server_url = request.getfixturevalue("chroma_url") if request.param == "server" else None
    collection = f"test-{uuid.uuid4().hex[:12]}"

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "home": tmp_path / "rag",
            "chroma_url": server_url,
            "collection": collection,
            "chunk_chars": 100,  # about one sentence per chunk
            "chunk_overlap_chars": 0,
        }
        return Settings(**(values | overrides))  # type: ignore[arg-type]

    return make


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    for name, sentences in STORIES.items():
        write_story(folder / name, sentences)
    return folder


def write_story(path: Path, sentences: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(" ".join(sentences) + "\n", encoding="utf-8")


def run_ingest(
    settings: Settings, paths: Iterable[Path], *, prune: bool = False
) -> tuple[IngestReport, CountingEmbeddings, Store]:
    """One ingest as a fresh process would do it: new Store, new embeddings wrapper."""
    embeddings = CountingEmbeddings()
    store = Store(settings, embeddings)
    report = ingest_paths(list(paths), settings=settings, store=store, prune=prune)
    return report, embeddings, store


def expected_chunks(settings: Settings, *paths: Path) -> dict[str, Chunk]:
    """The chunks that ingesting these paths should leave in the collection, by id."""
    return {c.id: c for path in find_files(paths) for c in read_document(path.resolve(), settings)[1]}


def stored_chunks(store: Store) -> dict[str, Chunk]:
    chunks = list(store.iter_chunks())
    assert len(chunks) == store.count()
    return {c.id: c for c in chunks}


def test_first_run_indexes_every_chunk_with_offsets_and_metadata(make_settings: MakeSettings, docs: Path) -> None:
    settings = make_settings()
    report, embeddings, store = run_ingest(settings, [docs])
    expected = expected_chunks(settings, docs)
    assert len(expected) == 11  # one chunk per sentence
    assert report.failed == []
    assert (report.added, report.updated, report.unchanged, report.deleted) == (len(expected), 0, 0, 0)
    assert report.chunks == store.count() == len(expected)
    assert sorted(embeddings.embedded) == sorted(c.text for c in expected.values())
    stored = stored_chunks(store)
    assert stored.keys() == expected.keys()
    texts = DocumentTexts(settings.home, settings.collection)
    for chunk in stored.values():
        assert chunk == expected[chunk.id].model_copy(update={"metadata": chunk.metadata})
        document = texts.get(chunk.source)
        assert document is not None and document.text[chunk.start : chunk.end] == chunk.text
        assert chunk.metadata["ingested_at"]
    assert {d.source for d in store.documents()} == {str((docs / name).resolve()) for name in STORIES}


def test_second_run_adds_nothing_and_makes_no_embedding_call(make_settings: MakeSettings, docs: Path) -> None:
    settings = make_settings()
    first, _, _ = run_ingest(settings, [docs])
    revision = Store(settings, LocalEmbeddings()).revision()
    again, embeddings, store = run_ingest(settings, [docs])
    assert (again.added, again.updated, again.deleted, again.failed) == (0, 0, 0, [])
    assert again.unchanged == first.added
    assert embeddings.embedded == []
    assert again.chunks == store.count() == first.added
    assert store.revision() == revision, "an unchanged run must not invalidate BM25 indexes"


def test_changed_file_has_its_old_chunks_replaced(make_settings: MakeSettings, docs: Path) -> None:
    settings = make_settings()
    run_ingest(settings, [docs])
    changed = [*STORIES["floods.txt"]]
    changed[1] = "Thousands of families in Kisumu county were displaced by the floodwater."
    write_story(docs / "floods.txt", changed)
    before = expected_chunks(settings, docs)

    report, embeddings, store = run_ingest(settings, [docs])

    stored = stored_chunks(store)
    assert stored.keys() == before.keys()
    new_ids = {i for i, c in before.items() if "Thousands" in c.text}
    assert len(new_ids) == 1
    changed_at = before[next(iter(new_ids))].start
    floods = str((docs / "floods.txt").resolve())
    # Ids include the offset (stored offsets must stay exact), so chunks after the edit move and are re-embedded;
    # chunks before it and other files' chunks are not.
    moved = sorted(c.text for c in before.values() if c.source == floods and c.start >= changed_at)
    assert sorted(embeddings.embedded) == moved
    assert len(moved) < len([c for c in before.values() if c.source == floods])
    assert (report.added, report.deleted, report.failed) == (len(moved), len(moved), [])
    assert not any("Hundreds of families" in c.text for c in stored.values())
    document = DocumentTexts(settings.home, settings.collection).get(floods)
    assert document is not None and "Thousands of families" in document.text


def test_a_run_reads_and_writes_a_batch_at_a_time_and_ends_as_one_run_would(
    make_settings: MakeSettings, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.index
    from rag.corpus import Corpus

    settings = make_settings()
    monkeypatch.setattr(ingest.index, "READ_BATCH_CHUNKS", 4)  # the 3 files are 4, 4 and 3 chunks
    events: list[str] = []
    read, write = ingest.index.read_document, Corpus.write

    def reading(path: Path, settings: Settings) -> tuple:  # type: ignore[type-arg]
        events.append(f"read {path.name}")
        return read(path, settings)

    def writing(corpus: Corpus, loaded: list, report: IngestReport, **kwargs: object) -> None:  # type: ignore[type-arg]
        events.append(f"write {len(loaded)}")
        write(corpus, loaded, report, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest.index, "read_document", reading)
    monkeypatch.setattr(Corpus, "write", writing)
    progress: list[tuple[int, int]] = []
    store = Store(settings, LocalEmbeddings())
    report = ingest_paths([docs], settings=settings, store=store, progress=lambda *done: progress.append(done))
    assert [e.split()[0] for e in events] == ["read", "write"] * 3, "each file is written before the next is read"
    assert events[1::2] == ["write 1"] * 3
    expected = expected_chunks(settings, docs)
    assert (report.added, report.updated, report.unchanged, report.deleted) == (len(expected), 0, 0, 0)
    assert stored_chunks(store).keys() == expected.keys()
    assert progress[-1] == (len(expected), len(expected)), "progress counts on across batches"
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert sorted(load_bm25(store).ids) == sorted(expected), "BM25 follows the last batch"


def test_prune_removes_chunks_of_deleted_files_only_under_the_given_paths(
    make_settings: MakeSettings, docs: Path, tmp_path: Path
) -> None:
    settings = make_settings()
    elsewhere = tmp_path / "elsewhere"
    write_story(elsewhere / "note.txt", ["A note kept in another folder entirely."])
    note_ids = expected_chunks(settings, elsewhere).keys()
    budget_ids = expected_chunks(settings, docs / "budget.md").keys()
    run_ingest(settings, [docs, elsewhere])
    gone = str((docs / "budget.md").resolve())
    (docs / "budget.md").unlink()
    (elsewhere / "note.txt").unlink()  # outside the pruned path: must survive

    kept, _, store = run_ingest(settings, [docs])
    assert kept.deleted == 0
    assert budget_ids <= stored_chunks(store).keys(), "without --prune nothing is removed"

    pruned, embeddings, store = run_ingest(settings, [docs], prune=True)
    assert pruned.deleted == len(budget_ids) > 0
    assert stored_chunks(store).keys() == expected_chunks(settings, docs).keys() | note_ids
    assert embeddings.embedded == []
    assert DocumentTexts(settings.home, settings.collection).get(gone) is None
    hits = store.get_chunks([chunk_id for chunk_id, _ in load_bm25(store).search("county assembly budget", 5)])
    assert not any("assembly" in chunk.text for chunk in hits)


def test_remove_source_deletes_one_document(make_settings: MakeSettings, docs: Path) -> None:
    settings = make_settings()
    first, _, store = run_ingest(settings, [docs])
    source = str((docs / "nested" / "marathon.txt").resolve())
    removed = remove_source(source, settings=settings, store=store)
    assert removed == sum(1 for c in expected_chunks(settings, docs).values() if c.source == source) > 0
    assert store.count() == first.added - removed
    assert source not in {d.source for d in store.documents()}


def test_bm25_follows_the_collection(make_settings: MakeSettings, docs: Path) -> None:
    settings = make_settings()
    _, _, store = run_ingest(settings, [docs])
    assert load_bm25(store).search("Zanzibar ferry", 5) == []

    write_story(docs / "ferry.txt", ["A new ferry service links Mombasa and Zanzibar from June."])
    _, _, store = run_ingest(settings, [docs])
    hits = load_bm25(store).search("Zanzibar ferry", 5)
    assert hits and "Zanzibar" in store.get_chunks([hits[0][0]])[0].text
    saved = index_folder(store)
    assert (saved / "revision").read_text() == store.revision()


def test_missing_or_stale_bm25_folder_is_rebuilt_from_the_collection(
    make_settings: MakeSettings, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    _, _, store = run_ingest(settings, [docs])
    folder = index_folder(store)
    assert folder.is_dir()

    monkeypatch.setattr(rag.bm25, "_cache", {})  # as a new process would start
    (folder / "revision").write_text("stale-revision")
    rebuilt = load_bm25(store)
    assert rebuilt.revision == store.revision() == (folder / "revision").read_text()
    assert len(rebuilt.ids) == store.count()

    monkeypatch.setattr(rag.bm25, "_cache", {})
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()
    hits = load_bm25(store).search("marathon record", 3)
    assert hits and "marathon" in store.get_chunks([hits[0][0]])[0].text
    assert (folder / "revision").exists()


def test_good_file_is_ingested_and_bad_ones_are_reported(make_settings: MakeSettings, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write_story(folder / "good.txt", STORIES["floods.txt"])
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4\n1 0 obj <<>> garbage garbage\n")
    settings = make_settings()

    report, _, store = run_ingest(settings, [folder])

    failed = {Path(f.path).name: f.error for f in report.failed}
    assert failed.keys() == {"empty.txt", "binary.txt", "corrupt.pdf"}
    assert "empty" in failed["empty.txt"]
    assert "binary" in failed["binary.txt"]
    assert "corrupt PDF" in failed["corrupt.pdf"]
    assert all("\n" not in error for error in failed.values())
    assert report.added == store.count() == len(expected_chunks(settings, folder / "good.txt")) > 0
    assert {c.source for c in store.iter_chunks()} == {str((folder / "good.txt").resolve())}


def test_file_over_the_size_limit_is_refused(make_settings: MakeSettings, tmp_path: Path) -> None:
    folder = tmp_path / "sizes"
    write_story(folder / "small.txt", STORIES["budget.md"])
    write_story(folder / "large.txt", ["Padding sentence for a large file."] * 4000)  # about 140 kB
    settings = make_settings(max_file_mb=0.1)

    report, _, store = run_ingest(settings, [folder])

    assert [(Path(f.path).name, f.error) for f in report.failed] == [
        ("large.txt", "too large (0.1 MB > 0.1 MB limit, RAG_MAX_FILE_MB)")
    ]
    assert {c.source for c in store.iter_chunks()} == {str((folder / "small.txt").resolve())}


@pytest.mark.server
def test_server_dying_mid_session_is_a_store_unavailable_error(tmp_path: Path, docs: Path) -> None:
    """A server of its own, stopped between two ingests by the same Store: one-line error, no httpx traceback."""
    import subprocess
    import sys

    from conftest import free_port, wait_until_up

    from rag.types import StoreUnavailable

    port = free_port()
    chroma = Path(sys.executable).parent / "chroma"
    server = subprocess.Popen(
        [str(chroma), "run", "--path", str(tmp_path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/api/v2/heartbeat", timeout_s=60, process=server)
        settings = Settings(home=tmp_path / "rag", chroma_url=url, chunk_chars=100, chunk_overlap_chars=0)
        store = Store(settings, CountingEmbeddings())
        assert ingest_paths([docs], settings=settings, store=store).added == 11
    finally:
        server.terminate()
        server.wait(timeout=15)
    write_story(docs / "ferry.txt", ["A new ferry service links Mombasa and Zanzibar from June."])
    with pytest.raises(StoreUnavailable) as caught:
        ingest_paths([docs], settings=settings, store=store)
    assert url in str(caught.value) and "\n" not in str(caught.value)

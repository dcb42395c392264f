"""Several replicas share one state: a `chroma run` server plus PostgreSQL (RAG_DATABASE_URL), each with its own home.

Real services throughout: the session's `chroma run` and a PostgreSQL cluster from Debian's package (conftest).
Each test writes its own collection and database, so the tests share the servers and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import LIBRARY_DOC, Postgres

from ingest import ingest_paths
from ingest.index import read_document
from ingest.load import find_files
from rag.assistant import Assistant
from rag.corpus import INDEX_BATCH, Corpus, record_rows
from rag.database import DatabaseUnavailable
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.store import Store

pytestmark = [pytest.mark.server, pytest.mark.postgres]

RAG = shutil.which("rag", path=str(Path(sys.executable).parent)) or "rag"
NOTE = "# Dam decision\n\nThe river board met in Tarn on 3 May 2024. The board {verdict} the dam at Kell Gorge.\n"
# Longest a replica may keep citing a document another replica deleted (its BM25 snapshot is rebuilt in the
# background): generous for a loaded machine, and the loop ends as soon as it stops.
STALE_WAIT_S = 120


def replica(tmp_path: Path, name: str, *, chroma_url: str, database_url: str, collection: str) -> Settings:
    """One app instance's settings: its own home, the shared Chroma and database."""
    return Settings(home=tmp_path / name, chroma_url=chroma_url, database_url=database_url, collection=collection)


@pytest.fixture
def shared(chroma_url: str, postgres: Postgres) -> dict[str, str]:
    """A fresh collection on the Chroma server and a fresh database on PostgreSQL."""
    name = f"t{uuid.uuid4().hex[:12]}"
    return {"chroma_url": chroma_url, "database_url": postgres.new_database(name), "collection": name}


def state(settings: Settings, embeddings: LocalEmbeddings) -> dict[str, Any]:
    """Everything the shared stores hold for one collection, for exact comparisons."""
    store = Store(settings, embeddings)
    corpus = Corpus(settings, store)
    sentences = store.sentences.get(include=["metadatas"])
    return {
        "chunks": sorted(store.chunk_ids()),
        "chunk_count": store.count(),
        "records": sorted(key for _, key in record_rows(corpus.records)),
        "record_sources": {source for source, _ in record_rows(corpus.records)},
        "sentence_chunks": {str(m["chunk_id"]) for m in sentences["metadatas"] or []},
        "texts": set(corpus.texts.sources()),
        "staged": corpus.texts.staged_sources(),
    }


def assert_consistent(found: dict[str, Any], expected_ids: set[str], sources: set[str]) -> None:
    """No duplicates, no orphans: chunks, records, sentence vectors and texts all name the same things."""
    assert found["chunk_count"] == len(found["chunks"]) == len(expected_ids), "no duplicate and no missing chunk"
    assert set(found["chunks"]) == expected_ids, "exactly the chunks of one clean ingest"
    assert found["records"] == found["chunks"], "every chunk has one record, every record a chunk"
    assert found["record_sources"] == sources, "each record under its file"
    assert found["sentence_chunks"] == expected_ids, "sentence vectors of exactly these chunks"
    assert found["texts"] == sources and found["staged"] == [], "a text for every file with chunks, and no other"


def test_an_edit_ingested_through_another_replica_replaces_the_old_version(
    tmp_path: Path, embeddings: LocalEmbeddings, shared: dict[str, str]
) -> None:
    """The reproduction of issue 14: A ingests a note, the note changes, B ingests it; only the new one remains."""
    folder = tmp_path / "docs"
    folder.mkdir()
    note = folder / "note.md"
    note.write_text(NOTE.format(verdict="approved"), encoding="utf-8")
    a = Assistant(replica(tmp_path, "a", **shared), embeddings=embeddings)
    b = Assistant(replica(tmp_path, "b", **shared), embeddings=embeddings)
    assert ingest_paths([folder], settings=a.settings, store=a.store).added == 1

    note.write_text(NOTE.format(verdict="rejected"), encoding="utf-8")
    report = ingest_paths([folder], settings=b.settings, store=b.store)
    assert (report.added, report.deleted, report.chunks) == (1, 1, 1), "B removed A's old chunk"

    chunks = list(b.store.iter_chunks())
    assert len(chunks) == 1 and "rejected" in chunks[0].text and "approved" not in chunks[0].text
    source = str(note.resolve())
    for reader in (b, a):  # both replicas: A's own BM25 snapshot follows the revision B moved
        answer = ask_until(reader, "What did the board decide about the dam at Kell Gorge?", lambda x: "rejected" in x)
        assert answer.citations and all("approved" not in c.quote for c in answer.citations)
        whole = reader.document(source)
        assert whole is not None and "rejected" in whole.text, "the whole-document view has the new text"
        assert all(whole.text[c.start : c.end] == c.quote for c in answer.citations), "quotes verify in place"


def ask_until(assistant: Assistant, question: str, done: Any, timeout_s: float = STALE_WAIT_S) -> Any:
    """Ask until the answer's text satisfies `done` (a replica's BM25 snapshot catches up in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = assistant.ask(question)
        if done(answer.text) or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def test_upload_through_one_replica_ask_through_another_delete_through_it(
    tmp_path: Path, embeddings: LocalEmbeddings, shared: dict[str, str]
) -> None:
    from ui.uploads import delete_document, ingest_uploads

    a = Assistant(replica(tmp_path, "a", **shared), embeddings=embeddings)
    b = Assistant(replica(tmp_path, "b", **shared), embeddings=embeddings)
    other = tmp_path / "other"
    other.mkdir()
    (other / "harbour.md").write_text("# Harbour\n\nThe Port Aurelia harbour was dredged in 2019.\n", encoding="utf-8")
    ingest_paths([other], settings=a.settings, store=a.store)
    upload = tmp_path / "upload-tmp"
    upload.write_text(LIBRARY_DOC, encoding="utf-8")
    outcome = ingest_uploads([(upload, "zephyr.md")], a).outcomes[0]
    assert outcome.status == "added" and outcome.source

    question = "Who designed the Zephyr Municipal Library?"
    through_a, through_b = a.ask(question), b.ask(question)
    assert through_b.citations and any("Ines Marlow" in c.quote for c in through_b.citations)

    def cited(answer: Any) -> list[tuple[str, int, int, str]]:
        return [(c.source, c.start, c.end, c.quote) for c in answer.citations]

    assert cited(through_b) == cited(through_a), "the same verified citations through either replica"
    doc_a, doc_b = a.document(outcome.source), b.document(outcome.source)
    assert doc_b is not None and doc_b == doc_a, "the same whole-document view"
    assert all(doc_b.text[c.start : c.end] == c.quote for c in through_b.citations)

    assert delete_document(outcome.source, b) == 1
    assert b.document(outcome.source) is None

    def forgot(text: str) -> bool:
        return "Ines Marlow" not in text

    answer = ask_until(a, question, forgot)
    assert forgot(answer.text), f"A still cites the deleted document after {STALE_WAIT_S} s"
    assert all(c.source != outcome.source for c in answer.citations)
    assert a.document(outcome.source) is None


def test_a_wiped_chroma_with_surviving_records_is_indexed_again(tmp_path: Path, embeddings: LocalEmbeddings) -> None:
    """The records say every file is indexed, but the collection is new and empty: the next ingest adds it all."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(3):
        (folder / f"n{n}.md").write_text(NOTE.format(verdict=f"approved plan {n} of"), encoding="utf-8")
    settings = Settings(home=tmp_path / "rag")  # embedded Chroma and SQLite: the same check guards both
    store = Store(settings, embeddings)
    assert ingest_paths([folder], settings=settings, store=store).added == 3
    store.client.delete_collection(settings.collection)  # as a wiped or replaced Chroma data folder would
    store.client.delete_collection(f"{settings.collection}.sentences")
    store.forget_collections()

    report = ingest_paths([folder], settings=settings, store=store)
    assert (report.added, report.unchanged, report.chunks) == (3, 0, 3), "nothing skipped on stale records"
    answer = Assistant(settings, embeddings=embeddings).ask("What did the board approve?")
    assert answer.citations


def many_files(folder: Path, count: int, *, offset: int = 0) -> None:
    for n in range(offset, offset + count):
        (folder / f"note-{n:04d}.txt").write_text(
            f"Bulletin {n}: the water board of district {n} approved project {n * 7919 % 10007}.\n", encoding="utf-8"
        )


def expected_ids(folders: list[Path], settings: Settings) -> tuple[set[str], set[str]]:
    """The chunk ids and sources one clean ingest of these folders gives."""
    files = {p.resolve() for p in find_files(folders)}
    return {c.id for path in files for c in read_document(path, settings)[1]}, {str(p) for p in files}


def env_for(settings: Settings) -> dict[str, str]:
    return os.environ | {
        "RAG_HOME": str(settings.home),
        "RAG_CHROMA_URL": str(settings.chroma_url),
        "RAG_DATABASE_URL": str(settings.database_url),
        "RAG_COLLECTION": settings.collection,
    }


def test_two_concurrent_ingests_of_overlapping_folders_equal_one_clean_ingest(
    tmp_path: Path, embeddings: LocalEmbeddings, shared: dict[str, str]
) -> None:
    root = tmp_path / "docs"
    for part, (count, offset) in {"a": (40, 0), "b": (40, 40), "c": (40, 80)}.items():
        (root / part).mkdir(parents=True)
        many_files(root / part, count, offset=offset)
    first, second = replica(tmp_path, "a", **shared), replica(tmp_path, "b", **shared)
    # A takes a/ and b/ (as the folder), B takes b/ and c/: b/ is ingested by both at once.
    runs = [
        subprocess.Popen([RAG, "ingest", str(root / "a"), str(root / "b"), "--json"], env=env_for(first), **PIPES),
        subprocess.Popen([RAG, "ingest", str(root / "b"), str(root / "c"), "--json"], env=env_for(second), **PIPES),
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
        assert json.loads(out)["failed"] == []
    ids, sources = expected_ids([root], first)
    assert len(ids) == 120
    assert_consistent(state(first, embeddings), ids, sources)
    # And a third, quiet run of everything finds nothing to do.
    report = ingest_paths([root], settings=first, store=Store(first, embeddings))
    assert (report.added, report.deleted, report.unchanged, report.chunks) == (0, 0, 120, 120)


PIPES: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
# The real CLI, with the record manager's update wrapped so that the process waits where the test kills it.
KILL_HOOK = """
import sys, time, pathlib
marker, at = pathlib.Path(sys.argv.pop(1)), sys.argv.pop(1)
from langchain_classic.indexes import SQLRecordManager
update, calls = SQLRecordManager.update, []
def update_then_wait(self, *args, **kwargs):
    calls.append(1)
    if at == "before-second-record" and len(calls) == 2:  # batch 2 is in Chroma, its records are not
        marker.touch()
        time.sleep(600)
    update(self, *args, **kwargs)
    if at == "after-first-record":  # batch 1 is committed everywhere, batch 2 not started
        marker.touch()
        time.sleep(600)
SQLRecordManager.update = update_then_wait
from rag.cli import main
main()
"""


@pytest.mark.parametrize("at", ["after-first-record", "before-second-record"])
def test_kill_9_mid_write_then_a_rerun_leaves_no_duplicates_and_no_orphans(
    tmp_path: Path, embeddings: LocalEmbeddings, shared: dict[str, str], at: str
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    many_files(folder, INDEX_BATCH * 2 + 20)
    settings = replica(tmp_path, "a", **shared)
    marker = tmp_path / "mid-write"
    run = subprocess.Popen(
        [sys.executable, "-c", KILL_HOOK, str(marker), at, "ingest", str(folder)], env=env_for(settings), **PIPES
    )
    try:
        deadline = time.monotonic() + 400
        while not marker.exists():
            assert run.poll() is None, f"ingest ended before the hook: {run.communicate()}"
            assert time.monotonic() < deadline, "the hook was not reached in time"
            time.sleep(0.1)
        run.kill()
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    before = state(settings, embeddings)
    committed = INDEX_BATCH if at == "after-first-record" else 2 * INDEX_BATCH
    assert before["chunk_count"] == committed and len(before["records"]) == INDEX_BATCH, "killed where intended"

    # The rerun goes through another replica (its own home), as a restarted pod would.
    rerun = subprocess.run(
        [RAG, "ingest", str(folder), "--json"], env=env_for(replica(tmp_path, "b", **shared)), timeout=600, **PIPES
    )
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["unchanged"] >= committed, "committed work is kept, not re-embedded"
    ids, sources = expected_ids([folder], settings)
    assert summary["chunks"] == len(ids) == INDEX_BATCH * 2 + 20
    assert_consistent(state(settings, embeddings), ids, sources)


def test_postgres_down_is_one_line_naming_it_and_the_app_recovers_without_restart(
    tmp_path: Path, embeddings: LocalEmbeddings, shared: dict[str, str], postgres: Postgres
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "note.md").write_text(NOTE.format(verdict="approved"), encoding="utf-8")
    url = shared["database_url"].replace("rag@", "rag:s3cret-pw@")  # trust auth ignores it; the output must not
    settings = replica(tmp_path, "a", **(shared | {"database_url": url}))
    assistant = Assistant(settings, embeddings=embeddings)
    ingest_paths([folder], settings=settings, store=assistant.store)
    source = str((folder / "note.md").resolve())
    assert assistant.document(source) is not None

    postgres.stop()
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            assistant.document(source)
        message = str(raised.value)
        assert "\n" not in message and "s3cret-pw" not in message
        assert message.startswith(f"database at postgresql://rag:***@127.0.0.1:{postgres.port}/")
        ingest = subprocess.run([RAG, "ingest", str(folder)], env=env_for(settings), timeout=300, **PIPES)
        assert ingest.returncode == 1
        lines = ingest.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: database at postgresql://rag:***@"), ingest.stderr
        assert "s3cret-pw" not in ingest.stderr + ingest.stdout
    finally:
        postgres.start()
    whole = assistant.document(source)  # the same Assistant, no restart
    assert whole is not None and "approved" in whole.text
    report = ingest_paths([folder], settings=settings, store=assistant.store)
    assert report.unchanged == 1 and not report.failed

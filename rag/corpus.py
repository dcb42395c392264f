"""The one writer of a collection: Chroma chunks and sentence vectors, ingest records, document texts, the revision.

Every replica shares these stores (Chroma, and RAG_DATABASE_URL), so their invariants are kept here and nowhere
else:

- every record names a chunk in Chroma, and every chunk has a record (under its source), so that a changed or
  deleted file's old chunks are found and removed whichever process ingested them;
- a document's current text fits every chunk of it (`text[start:end] == chunk.text`): a changed text is staged,
  its chunks are indexed, and only then is it made current; texts of documents with no chunks are dropped;
- writes take turns: one process at a time writes a collection (home/write.lock, and on a database server an
  advisory lock that dies with its connection), and each write that changes the collection moves its revision,
  which every replica's BM25 snapshot follows.

`repair` restores the first two after a crash (kill -9, a lost server, a wiped Chroma); ingest and `rag chat` run it
first. `ingest` only produces Documents and Chunks and hands them to `write`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, cast

from rag import lock
from rag.bm25 import index_folder, load_bm25
from rag.database import RECORDS_FILE, database_url, engine_for, sqlite_file, translate_errors, writers_turn
from rag.store import MAX_CHROMA_BATCH, DocumentTexts, Store, chunk_to_metadata, move_aside, sqlite_problem
from rag.types import Chunk, Document, IngestReport

if TYPE_CHECKING:
    from langchain_classic.indexes import SQLRecordManager
    from langchain_core.documents import Document as LCDocument
    from sqlalchemy import Table
    from sqlalchemy.engine import Engine

    from rag.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (chunks done, chunks in this run) as indexing goes."""

# Chunks per index() batch: one embedding call and one record-manager commit each.
INDEX_BATCH = 256
# Bound parameters in one SQL statement (SQLite allows 32,766; PostgreSQL 65,535).
MAX_SQL_PARAMETERS = 10_000
RECORD_TABLE = "upsertion_record"  # SQLRecordManager's table; read directly, since its API lists no groups
# At chat start-up a write in progress elsewhere is waited for this long; after that its own repair covers it.
STARTUP_WAIT_S = 5.0

_schemas: set[str] = set()  # record-manager URLs whose schema this process has created
_record_tables: dict[str, Table] = {}


def namespace(settings: Settings) -> str:
    """The record manager's namespace: one per Chroma store and collection."""
    where = (settings.chroma_url or "embedded").rstrip("/")
    return f"chroma/{where}/{settings.collection}"


def make_record_manager(settings: Settings, store: Store | None = None) -> SQLRecordManager:
    """The record of what is indexed, in RAG_DATABASE_URL or home/records.sqlite.

    A corrupt records.sqlite is moved aside with a one-line warning, and, given the store, this collection's records
    are rebuilt from its chunks' metadata (chunk id and source are all a record holds), so nothing is re-embedded.
    """
    from langchain_classic.indexes import SQLRecordManager
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    settings.home.mkdir(parents=True, exist_ok=True)
    url = database_url(settings, RECORDS_FILE)
    path = sqlite_file(url)
    problem = sqlite_problem(path) if path is not None else None
    if problem and path is not None:
        aside = move_aside(path)
        _schemas.discard(url)
        _record_tables.pop(url, None)
    manager = SQLRecordManager(namespace(settings), engine=engine_for(url))
    with translate_errors(url):
        if url not in _schemas:
            try:
                manager.create_schema()
            except (IntegrityError, ProgrammingError):  # another process created it at the same moment
                manager.create_schema()
            _schemas.add(url)
    if problem:
        rebuilt = rebuild_records(manager, store) if store is not None else 0
        log.warning(
            "%s is corrupt (%s): moved to %s; rebuilt %d records of collection %s from its chunks",
            path,
            problem,
            aside.name,
            rebuilt,
            settings.collection,
        )
    return manager


def rebuild_records(records: SQLRecordManager, store: Store) -> int:
    """Record every chunk in the collection under its source, as index() would have; returns records written."""
    keys: list[str] = []
    groups: list[str | None] = []
    for chunk in store.iter_chunks():
        keys.append(chunk.id)
        groups.append(chunk.source)
    for i in range(0, len(keys), MAX_CHROMA_BATCH):
        records.update(keys[i : i + MAX_CHROMA_BATCH], group_ids=groups[i : i + MAX_CHROMA_BATCH])
    return len(keys)


def sync_engine(records: SQLRecordManager) -> Engine:
    """The record manager's engine (always a synchronous one here: make_record_manager builds it)."""
    return cast("Engine", records.engine)


def record_table(records: SQLRecordManager) -> Table:
    """The record manager's table, reflected from the database (its columns are key, namespace, group_id, ...)."""
    from sqlalchemy import MetaData, Table

    url = records.engine.url.render_as_string(hide_password=False)
    if url not in _record_tables:
        _record_tables[url] = Table(RECORD_TABLE, MetaData(), autoload_with=sync_engine(records))
    return _record_tables[url]


def record_rows(records: SQLRecordManager, sources: Sequence[str] | None = None) -> list[tuple[str | None, str]]:
    """Every (source, chunk key) recorded in this namespace, or those of these sources.

    A source of None is a record that index() left half written.
    """
    from sqlalchemy import select

    table = record_table(records)
    query = select(table.c.group_id, table.c.key).where(table.c.namespace == records.namespace)
    rows: list[tuple[str | None, str]] = []
    with sync_engine(records).connect() as conn:
        if sources is None:
            return [(source, key) for source, key in conn.execute(query)]
        for i in range(0, len(sources), MAX_SQL_PARAMETERS):
            part = query.where(table.c.group_id.in_(sources[i : i + MAX_SQL_PARAMETERS]))
            rows.extend((source, key) for source, key in conn.execute(part))
    return rows


def recorded_keys(records: SQLRecordManager, sources: Sequence[str] | None = None) -> dict[str, set[str]]:
    """The chunk keys recorded for each source in this namespace (or for these sources only)."""
    by_source: dict[str, set[str]] = {}
    for source, key in record_rows(records, sources):
        if source:
            by_source.setdefault(source, set()).add(key)
    return by_source


def count_records(records: SQLRecordManager) -> int:
    """Records in this namespace."""
    from sqlalchemy import func, select

    table = record_table(records)
    query = select(func.count()).select_from(table).where(table.c.namespace == records.namespace)
    with sync_engine(records).connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def fits(doc: Document, chunk: Chunk) -> bool:
    """True when the chunk was cut from this text: text[start:end] == chunk.text."""
    return doc.text[chunk.start : chunk.end] == chunk.text


def chunk_key(doc: LCDocument) -> str:
    """The record-manager key of a chunk: its deterministic chunk id."""
    return str(doc.metadata["chunk_id"])


def to_langchain(chunk: Chunk, ingested_at: str) -> LCDocument:
    """A LangChain Document carrying the chunk's offsets and ids as metadata."""
    from langchain_core.documents import Document as LCDocument

    # ingested_at is not part of the id, so unchanged chunks keep theirs and are skipped.
    meta = chunk_to_metadata(chunk) | {"chunk_id": chunk.id, "ingested_at": ingested_at}
    return LCDocument(id=chunk.id, page_content=chunk.text, metadata=meta)


def _with_progress(docs: Sequence[LCDocument], progress: Progress | None) -> Iterator[LCDocument]:
    for done, doc in enumerate(docs, start=1):
        yield doc
        if progress is not None and (done % INDEX_BATCH == 0 or done == len(docs)):
            progress(done, len(docs))


class Corpus:
    """Writes one collection and keeps its stores in step (see the module docstring)."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.texts = DocumentTexts(settings.home, settings.collection, database_url=settings.database_url)
        self.records_url = database_url(settings, RECORDS_FILE)

    @cached_property
    def records(self) -> SQLRecordManager:
        """The record manager (opened, and checked, on first use)."""
        return make_record_manager(self.settings, self.store)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """One-line errors from any store: Chroma (lost server, full disk) or the database (lost server)."""
        with self.store.translate_errors(), translate_errors(self.records_url):
            yield

    @contextmanager
    def writing(self, *, wait_s: float | None = None, command: str | None = None) -> Iterator[None]:
        """This process's turn to write the collection, against every other process and replica."""
        wait = self.settings.write_wait_s if wait_s is None else wait_s
        with (
            lock.writing(self.settings, command),
            writers_turn(self.records_url, namespace(self.settings), wait_s=wait),
        ):
            yield

    # Repair

    def needs_repair(self) -> bool:
        """A cheap look (no locks, a few counts) for what a crash leaves: staged texts, records out of step."""
        with self.errors():
            return bool(self.texts.staged_sources()) or count_records(self.records) != self.store.count()

    def repair(self) -> list[str]:
        """Bring texts, records and chunks back in step (call while writing); returns the sources repaired."""
        with self.errors():
            repaired = self.repair_texts()
            fixed = self.reconcile_records()
            dropped = self.drop_orphan_texts()
        if repaired or fixed or dropped:
            self.bump_revision()  # an interrupted run changed the collection and never said so: BM25 must rebuild
        return repaired

    def repair_texts(self) -> list[str]:
        """Reconcile the texts an interrupted ingest staged with the chunks it committed.

        A staged text that fits every chunk of its source becomes current (the run indexed it all). Otherwise the
        current text is kept, and the chunks that do not fit it (committed from the new text before the
        interruption) are deleted, records included, so the next ingest of that file adds them again.
        """
        repaired = []
        for source in self.texts.staged_sources():
            chunks = self.store.chunks_of(source)
            staged, current = self.texts.get(source, staged=True), self.texts.get(source)
            if chunks and staged is not None and all(fits(staged, c) for c in chunks):
                self.texts.commit_staged([source])
            else:
                misfits = [c.id for c in chunks if current is None or not fits(current, c)]
                if misfits:
                    self.store.delete(misfits)
                    self.records.delete_keys(misfits)
                self.texts.drop_staged(source)
            repaired.append(source)
        if repaired:
            log.warning(
                "an interrupted ingest left %d document(s) half-updated; their texts and chunks are consistent "
                "again, and `rag ingest` of the same files finishes the update",
                len(repaired),
            )
        return repaired

    def reconcile_records(self) -> int:
        """Make records and chunks name the same set again; returns the records changed.

        Records whose chunk is gone (a wiped or restored Chroma, a crash mid-delete) are dropped, so their files are
        indexed again; chunks with no record (a crash between Chroma's write and the record's) are recorded under
        their source, so that a later change of the file removes them. Counting first keeps the usual case (both
        agree) to two cheap queries.
        """
        if count_records(self.records) == self.store.count():
            return 0
        rows = record_rows(self.records)  # records first, then chunks: a chunk written between is only recorded
        chunk_ids = self.store.chunk_ids()
        good = {key for source, key in rows if source and key in chunk_ids}
        stale = sorted({key for _, key in rows} - good)
        unrecorded = self.store.sources_of(sorted(chunk_ids - good))
        for i in range(0, len(stale), MAX_CHROMA_BATCH):
            self.records.delete_keys(stale[i : i + MAX_CHROMA_BATCH])
        keys = list(unrecorded)
        for i in range(0, len(keys), MAX_CHROMA_BATCH):
            part = keys[i : i + MAX_CHROMA_BATCH]
            self.records.update(part, group_ids=[unrecorded[k] for k in part])
        if stale or unrecorded:
            log.warning(
                "records of collection %s were out of step with %s: dropped %d records whose chunks are gone (their "
                "files are indexed again by the next ingest), recorded %d chunks that had none",
                self.settings.collection,
                self.store.location,
                len(set(stale) - set(unrecorded)),
                len(unrecorded),
            )
        return len(stale) + len(unrecorded)

    def drop_orphan_texts(self) -> int:
        """Forget texts of documents that have no chunks left; returns how many."""
        recorded = recorded_keys(self.records)
        orphans = [s for s in self.texts.sources() if s not in recorded]
        if orphans:
            self.texts.delete_many(orphans)
        return len(orphans)

    # Writes

    def write(
        self, loaded: Sequence[tuple[Document, list[Chunk]]], report: IngestReport, *, progress: Progress | None = None
    ) -> None:
        """Index documents and their chunks (call while writing).

        Unchanged ones cost a lookup, a changed one's old chunks are removed, and texts never run ahead of chunks.
        """
        from langchain_core.indexing import index

        ingested_at = datetime.now(UTC).isoformat(timespec="seconds")
        with self.errors():
            recorded = recorded_keys(self.records, [doc.source for doc, _ in loaded])
        unchanged: list[Document] = []
        changed: list[Document] = []
        lc_docs: list[LCDocument] = []
        for doc, chunks in loaded:
            if recorded.get(doc.source) == {c.id for c in chunks}:
                # Exactly these chunks are indexed already: skip index(), whose per-chunk timestamp refresh
                # costs more than everything else in an unchanged re-run.
                report.unchanged += len(chunks)
                unchanged.append(doc)
                continue
            changed.append(doc)
            lc_docs.extend(to_langchain(c, ingested_at) for c in chunks)
        # An unchanged file's text fits its chunks (same ids, same spans) and is written now. A changed file's new
        # text is staged, and made current only after its chunks are indexed: until then the current text still
        # fits the old chunks, and an interrupted run leaves both texts for repair_texts to reconcile.
        with self.errors():
            self.texts.put_many(unchanged)
            self.texts.stage_many(changed)
        if lc_docs:
            # scoped_full cleans up a changed file's old chunks after all batches, so unchanged chunks of a long
            # file are never deleted and re-embedded between batches (as per-batch "incremental" cleanup would).
            with self.errors():
                result = index(
                    _with_progress(lc_docs, progress),
                    self.records,
                    self.store.vectorstore,
                    batch_size=INDEX_BATCH,
                    cleanup="scoped_full",
                    source_id_key="source",
                    key_encoder=chunk_key,
                )
            report.added += result["num_added"]
            report.updated += result["num_updated"]
            report.unchanged += result["num_skipped"]
            report.deleted += result["num_deleted"]
        with self.errors():
            self.texts.commit_staged([d.source for d in changed])

    def remove(self, source: str) -> int:
        """Delete one document's chunks, records and text (call while writing); returns chunks deleted."""
        with self.errors():
            keys = self.records.list_keys(group_ids=[source])
            ids = sorted(set(keys) | {c.id for c in self.store.chunks_of(source)})
            if ids:
                self.store.delete(ids)
                self.records.delete_keys(keys)
            self.texts.delete(source)
        return len(ids)

    def prune(self, paths: Sequence[Path]) -> int:
        """Delete the chunks of files under `paths` that no longer exist (call while writing); returns how many."""
        roots = [p.resolve() for p in paths]
        deleted = 0
        with self.errors():
            sources = list(recorded_keys(self.records))
        for source in sources:
            path = Path(source)
            if path.exists() or not any(path == root or root in path.parents for root in roots):
                continue
            deleted += self.remove(source)
        return deleted

    def bump_revision(self) -> str:
        """Mark the collection changed, so every replica's BM25 snapshot is rebuilt."""
        return self.store.bump_revision()

    def refresh_bm25(self) -> None:
        """Rebuild this process's BM25 index now if it lags the collection, so the next question is fast."""
        with self.store.translate_errors():
            if self.store.count() or index_folder(self.store).exists():
                load_bm25(self.store)


def repair_interrupted(settings: Settings, store: Store) -> list[str]:
    """At start-up (the chat): repair what a crash left; a few counts when it left nothing.

    A write in progress in another process is not waited for long: that writer repairs first itself.
    """
    corpus = Corpus(settings, store)
    if not corpus.needs_repair():
        return []
    with corpus.writing(wait_s=STARTUP_WAIT_S):
        repaired = corpus.repair()
    corpus.refresh_bm25()  # this process serves next: not from the snapshot of before the repair
    return repaired


def remove_source(source: str, *, settings: Settings, store: Store) -> int:
    """Delete one document everywhere (every replica's BM25 too, via the revision); returns chunks deleted."""
    corpus = Corpus(settings, store)
    with corpus.writing():
        deleted = corpus.remove(source)
        if deleted:
            corpus.bump_revision()
    if deleted:
        corpus.refresh_bm25()
    return deleted

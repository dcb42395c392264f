"""Index chunks with LangChain's indexing API and a persistent record manager, and keep BM25 in step."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.chunk import chunk_document
from ingest.clean import clean_document
from ingest.load import find_files, load_file
from rag.bm25 import index_folder, load_bm25
from rag.lock import writing
from rag.store import MAX_CHROMA_BATCH, DocumentTexts, Store, chunk_to_metadata, move_aside, sqlite_problem
from rag.types import Chunk, Document, IngestFailure, IngestReport, LoadError

if TYPE_CHECKING:
    from langchain_classic.indexes import SQLRecordManager
    from langchain_core.documents import Document as LCDocument

    from rag.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (chunks done, chunks in this run) as indexing goes."""

# Chunks per index() batch: one embedding call and one record-manager commit each.
INDEX_BATCH = 256


def make_record_manager(settings: Settings, store: Store | None = None) -> SQLRecordManager:
    """The persistent record of what is indexed, one namespace per collection and store.

    A corrupt records.sqlite is moved aside with a one-line warning, and, given the store, this collection's records
    are rebuilt from its chunks' metadata (chunk id and source are all a record holds), so nothing is re-embedded.
    """
    from langchain_classic.indexes import SQLRecordManager

    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / "records.sqlite"
    problem = sqlite_problem(path)
    if problem:
        aside = move_aside(path)
    where = settings.chroma_url or "embedded"
    manager = SQLRecordManager(f"chroma/{where}/{settings.collection}", db_url=f"sqlite:///{path.resolve()}")
    manager.create_schema()
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


def repair_texts(settings: Settings, *, store: Store, records: SQLRecordManager) -> list[str]:
    """Reconcile the texts an interrupted ingest staged with the chunks it committed; returns the sources repaired.

    A staged text that fits every chunk of its source becomes current (the run indexed it all, or the document is
    new). Otherwise the current text is kept, and the chunks that do not fit it (committed from the new text
    before the interruption) are deleted, records included, so the next ingest of that file adds them again.
    """
    texts = DocumentTexts(settings.home, settings.collection)
    repaired = []
    for source in texts.staged_sources():
        chunks = store.chunks_of(source)
        staged, current = texts.get(source, staged=True), texts.get(source)
        if staged is not None and all(fits(staged, c) for c in chunks):
            texts.commit_staged([source])
        else:
            misfits = [c.id for c in chunks if current is None or not fits(current, c)]
            if misfits:
                store.delete(misfits)
                records.delete_keys(misfits)
            texts.drop_staged(source)
        repaired.append(source)
    if repaired:
        store.bump_revision()  # the interrupted run changed the collection and never said so: BM25 must rebuild
        log.warning(
            "an interrupted ingest left %d document(s) half-updated; their texts and chunks are consistent again, "
            "and `rag ingest` of the same files finishes the update",
            len(repaired),
        )
    return repaired


def repair_interrupted(settings: Settings, store: Store) -> list[str]:
    """At start-up (the chat): repair what an interrupted ingest left; cheap when it left nothing."""
    if not DocumentTexts(settings.home, settings.collection).staged_sources():
        return []
    with writing(settings):
        return repair_texts(settings, store=store, records=make_record_manager(settings, store))


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


def read_document(path: Path, settings: Settings) -> tuple[Document, list[Chunk]]:
    """Load, clean and chunk one file; LoadError says why a file is unusable."""
    doc = clean_document(
        load_file(
            path,
            max_bytes=int(settings.max_file_mb * 2**20),
            timeout_s=settings.parse_timeout_s,
            memory_mb=settings.parse_memory_mb,
        )
    )
    if not doc.text.strip():
        raise LoadError("no text after cleaning (empty or boilerplate only)")
    chunks = chunk_document(doc, max_chars=settings.chunk_chars, overlap_chars=settings.chunk_overlap_chars)
    return doc, chunks


def _with_progress(docs: Sequence[LCDocument], progress: Progress | None) -> Iterator[LCDocument]:
    for done, doc in enumerate(docs, start=1):
        yield doc
        if progress is not None and (done % INDEX_BATCH == 0 or done == len(docs)):
            progress(done, len(docs))


def ingest_paths(
    paths: Iterable[Path],
    *,
    settings: Settings,
    store: Store,
    prune: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest files and folders; bad files are reported and skipped, committed work survives interruption."""
    with writing(settings):  # embedded: this process becomes the home's owner; and no reader sees a half write
        return _ingest_paths(paths, settings=settings, store=store, prune=prune, progress=progress)


def _ingest_paths(
    paths: Iterable[Path], *, settings: Settings, store: Store, prune: bool, progress: Progress | None
) -> IngestReport:
    from langchain_core.indexing import index

    paths = [Path(p) for p in paths]
    report = IngestReport()
    texts = DocumentTexts(settings.home, settings.collection)
    ingested_at = datetime.now(UTC).isoformat(timespec="seconds")
    records = make_record_manager(settings, store)
    repair_texts(settings, store=store, records=records)
    recorded = recorded_keys(records)
    lc_docs: list[LCDocument] = []
    changed: list[Document] = []
    loaded: list[Document] = []
    for path in find_files(paths, refused=report.failed):
        try:
            doc, chunks = read_document(path.resolve(), settings)
        except LoadError as exc:
            report.failed.append(IngestFailure(path=str(path), error=str(exc)))
            continue
        except Exception as exc:  # a parser bug on one file must not stop the others
            log.debug("unexpected error reading path=%s", path, exc_info=True)
            report.failed.append(IngestFailure(path=str(path), error=f"{type(exc).__name__}: {exc}".splitlines()[0]))
            continue
        loaded.append(doc)
        if recorded.get(doc.source) == {c.id for c in chunks}:
            # Exactly these chunks are indexed already: skip index(), whose per-chunk timestamp refresh
            # costs more than everything else in an unchanged re-run.
            report.unchanged += len(chunks)
            continue
        changed.append(doc)
        lc_docs.extend(to_langchain(c, ingested_at) for c in chunks)

    # Texts and chunks must agree (text[start:end] == chunk.text). An unchanged file's text fits its chunks (same
    # ids, same spans) and is written now. A changed file's new text is staged, and made current only after its
    # chunks are indexed: until then the current text still fits the old chunks, and an interrupted run leaves
    # both texts for repair_texts to reconcile with whatever chunks were committed.
    staged = {d.source for d in changed}
    with store.translate_errors():  # a full disk is one line too
        texts.put_many([d for d in loaded if d.source not in staged])
        texts.stage_many(changed)
    if lc_docs:
        # scoped_full cleans up a changed file's old chunks after all batches, so unchanged chunks of a long
        # file are never deleted and re-embedded between batches (as per-batch "incremental" cleanup would).
        with store.translate_errors():  # a server that dies mid-run is one line, not a traceback
            result = index(
                _with_progress(lc_docs, progress),
                records,
                store.vectorstore,
                batch_size=INDEX_BATCH,
                cleanup="scoped_full",
                source_id_key="source",
                key_encoder=chunk_key,
            )
        report.added, report.updated = result["num_added"], result["num_updated"]
        report.unchanged += result["num_skipped"]
        report.deleted = result["num_deleted"]
    with store.translate_errors():
        texts.commit_staged([d.source for d in changed])
    if prune:
        report.deleted += prune_missing(paths, settings=settings, store=store, records=records)
    if report.added or report.updated or report.deleted:
        store.bump_revision()
    with store.translate_errors():
        refresh_bm25(store)
    report.chunks = store.count()
    return report


def refresh_bm25(store: Store) -> None:
    """Rebuild the BM25 index now if it lags the collection, so the first question is fast."""
    if store.count() or index_folder(store).exists():
        load_bm25(store)


def recorded_keys(records: SQLRecordManager) -> dict[str, set[str]]:
    """The chunk keys recorded for each source in this namespace."""
    from langchain_classic.indexes._sql_record_manager import UpsertionRecord
    from sqlalchemy import select

    # The record manager's public API lists keys, not keys by group, so ask its table directly.
    query: Any = select(UpsertionRecord.group_id, UpsertionRecord.key).where(
        UpsertionRecord.namespace == records.namespace
    )
    by_source: dict[str, set[str]] = {}
    with records._make_session() as session:
        for source, key in session.execute(query):
            if source:
                by_source.setdefault(source, set()).add(key)
    return by_source


def prune_missing(paths: Sequence[Path], *, settings: Settings, store: Store, records: SQLRecordManager) -> int:
    """Delete the chunks of files under `paths` that no longer exist; returns chunks deleted."""
    roots = [p.resolve() for p in paths]
    deleted = 0
    for source in recorded_keys(records):
        path = Path(source)
        if path.exists() or not any(path == root or root in path.parents for root in roots):
            continue
        deleted += remove_source(source, settings=settings, store=store, records=records)
    return deleted


def remove_source(source: str, *, settings: Settings, store: Store, records: SQLRecordManager | None = None) -> int:
    """Delete one document's chunks everywhere (BM25 included, via the revision); returns chunks deleted."""
    with writing(settings):
        records = records or make_record_manager(settings, store)
        keys = records.list_keys(group_ids=[source])
        if keys:
            store.delete(keys)
            records.delete_keys(keys)
            store.bump_revision()
        DocumentTexts(settings.home, settings.collection).delete(source)
        return len(keys)

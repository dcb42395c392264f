"""Read files into Documents and Chunks, and hand them to the collection's one writer (rag.corpus)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.chunk import chunk_document
from ingest.clean import clean_document
from ingest.load import find_files, load_file
from rag.corpus import Corpus, Progress
from rag.types import Chunk, Document, IngestFailure, IngestReport, LoadError

if TYPE_CHECKING:
    from rag.settings import Settings
    from rag.store import Store

log = logging.getLogger(__name__)

# Chunks read before each write turn: a run's memory is one batch's, however many files it reads.
READ_BATCH_CHUNKS = 4096


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


def read_documents(
    paths: list[Path], settings: Settings, failed: list[IngestFailure]
) -> Iterator[tuple[Document, list[Chunk]]]:
    """Each readable file's Document and Chunks; unreadable ones are added to `failed`, one line each."""
    for path in find_files(paths, refused=failed):
        try:
            yield read_document(path.resolve(), settings)
        except LoadError as exc:
            failed.append(IngestFailure(path=str(path), error=str(exc)))
        except Exception as exc:  # a parser bug on one file must not stop the others
            log.debug("unexpected error reading path=%s", path, exc_info=True)
            failed.append(IngestFailure(path=str(path), error=f"{type(exc).__name__}: {exc}".splitlines()[0]))


def batches(
    loaded: Iterable[tuple[Document, list[Chunk]]], max_chunks: int
) -> Iterator[list[tuple[Document, list[Chunk]]]]:
    """Documents in runs of about max_chunks chunks (a document is never split); at least one run, maybe empty."""
    batch: list[tuple[Document, list[Chunk]]] = []
    count, yielded = 0, False
    for doc, chunks in loaded:
        batch.append((doc, chunks))
        count += len(chunks)
        if count >= max_chunks:
            yield batch
            batch, count, yielded = [], 0, True
    if batch or not yielded:
        yield batch


def ingest_paths(
    paths: Iterable[Path],
    *,
    settings: Settings,
    store: Store,
    prune: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest files and folders; bad files are reported and skipped, committed work survives interruption.

    Files are read and written a batch at a time (READ_BATCH_CHUNKS), so a run holds one batch in memory whatever
    the corpus size. Each batch is read before the write turn is taken, so ingests elsewhere write meanwhile.
    """
    paths = [Path(p) for p in paths]
    report = IngestReport()
    corpus = Corpus(settings, store)
    done = 0
    for number, batch in enumerate(batches(read_documents(paths, settings, report.failed), READ_BATCH_CHUNKS)):
        before = (report.added, report.updated, report.deleted)
        # Embedded: this process becomes the home's owner; every store: no other writer meanwhile, no half write read.
        with corpus.writing():
            if number == 0 or corpus.needs_repair():  # a crash elsewhere between two turns of this run
                corpus.repair()
            corpus.write(batch, report, progress=offset(progress, done))
            if (report.added, report.updated, report.deleted) != before:
                corpus.bump_revision()
        done += sum(len(chunks) for _, chunks in batch)
    if prune:
        with corpus.writing():
            deleted = corpus.prune(paths)
            if deleted:
                report.deleted += deleted
                corpus.bump_revision()
    corpus.refresh_bm25()  # this replica's own index, outside the shared turns
    with store.translate_errors():
        report.chunks = store.count()
    return report


def offset(progress: Progress | None, done: int) -> Progress | None:
    """Progress of one batch, counted after the `done` chunks of earlier batches."""
    if progress is None:
        return None
    return lambda finished, total: progress(done + finished, done + total)

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


def ingest_paths(
    paths: Iterable[Path],
    *,
    settings: Settings,
    store: Store,
    prune: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest files and folders; bad files are reported and skipped, committed work survives interruption."""
    paths = [Path(p) for p in paths]
    report = IngestReport()
    corpus = Corpus(settings, store)
    # Files are read before the write turn is taken, so that ingests elsewhere parse while this one waits.
    loaded = list(read_documents(paths, settings, report.failed))
    # Embedded: this process becomes the home's owner; every store: no other writer meanwhile, no half write read.
    with corpus.writing():
        corpus.repair()
        corpus.write(loaded, report, progress=progress)
        if prune:
            report.deleted += corpus.prune(paths)
        if report.added or report.updated or report.deleted:
            corpus.bump_revision()
    corpus.refresh_bm25()  # this replica's own index, outside the shared turn
    with store.translate_errors():
        report.chunks = store.count()
    return report

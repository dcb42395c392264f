"""Index a dataset's own passages (SQuAD, NQ-open) as documents, once: a second run finds them unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rag.corpus import Progress
    from rag.settings import Settings
    from rag.store import Store
    from rag.types import IngestReport

SQUAD_COLLECTION = "squad2-dev"


class TextFile(Protocol):
    """A passage to index as one small file: SQuAD's Paragraph, NQ-open's Passage."""

    @property
    def file_name(self) -> str:
        """A stable file name, so a second run finds the same sources."""

    @property
    def title(self) -> str:
        """Written as the file's front matter."""

    @property
    def text(self) -> str:
        """The passage itself."""


def paragraph_folder(settings: Settings) -> Path:
    """Where the paragraph files for the settings' collection are cached, inside RAG_HOME."""
    return settings.home / "evals" / settings.collection


def write_paragraphs(paragraphs: Sequence[TextFile], folder: Path) -> None:
    """One small text file per passage, with its title as front matter; unchanged files are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    for para in paragraphs:
        # Titles never hold newlines; a colon is fine because front matter splits on the first one.
        content = f"---\ntitle: {para.title}\n---\n{para.text}\n"
        path = folder / para.file_name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")


def ensure_indexed(
    paragraphs: Sequence[TextFile], *, settings: Settings, store: Store, progress: Progress | None = None
) -> IngestReport:
    """Write and ingest the paragraphs into the settings' collection; the record manager skips what is there."""
    from ingest import ingest_paths
    from rag.lock import claim_home

    claim_home(settings, "rag eval")  # before the files: a home another process owns is left untouched
    folder = paragraph_folder(settings)
    write_paragraphs(paragraphs, folder)
    report = ingest_paths([folder], settings=settings, store=store, prune=True, progress=progress)
    report.deleted += drop_foreign_sources(folder, settings=settings, store=store)
    return report


def drop_foreign_sources(folder: Path, *, settings: Settings, store: Store) -> int:
    """Drop sources outside `folder`: a dataset's collection holds its own passage files only.

    A copied or moved RAG_HOME names them by their old paths, which `prune` never looks under, so the copy would
    otherwise answer from every passage twice.
    """
    from rag.corpus import Corpus, recorded_keys

    corpus = Corpus(settings, store)
    root = folder.resolve()
    with corpus.writing():
        with corpus.errors():
            foreign = [s for s in recorded_keys(corpus.records) if root not in Path(s).parents]
        deleted = sum(corpus.remove(source) for source in foreign)
        if deleted:
            corpus.bump_revision()
    if deleted:
        corpus.refresh_bm25()
    return deleted

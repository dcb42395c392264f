"""Files uploaded through the chat: checked, given safe names, kept in home/uploads, then ingested."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ingest import ingest_paths
from rag.assistant import Assistant
from rag.corpus import remove_source
from rag.settings import Settings

ALLOWED_SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf")
MAX_NAME_CHARS = 120

_queues: dict[Path, threading.Lock] = {}
_queues_guard = threading.Lock()


@dataclass
class UploadOutcome:
    """What happened to one uploaded file, in words a user reads."""

    name: str
    status: str  # "added", "updated", "duplicate" or "failed"
    detail: str = ""
    source: str | None = None
    # Why a failed file failed, for the HTTP API's status codes: too_large, unsupported_type or invalid_file.
    reason: str = ""


@dataclass
class UploadReport:
    """The outcome of one batch of uploads."""

    outcomes: list[UploadOutcome] = field(default_factory=list)
    chunks: int = 0

    @property
    def failed(self) -> list[UploadOutcome]:
        """The files that were not indexed."""
        return [o for o in self.outcomes if o.status == "failed"]


def uploads_dir(home: Path) -> Path:
    """Where uploaded files are kept: inside home, so nothing is written elsewhere."""
    return home / "uploads"


def incoming_dir(home: Path) -> Path:
    """Gradio's own upload cache, pointed inside home too (it copies every upload there first)."""
    return uploads_dir(home) / ".incoming"


@contextmanager
def upload_queue(home: Path) -> Iterator[None]:
    """One upload or delete at a time per home, from the chat and the HTTP API alike.

    Names, duplicates and the kept copies are then decided from what the previous one left.
    """
    with _queues_guard:
        queue = _queues.setdefault(home.resolve(), threading.Lock())
    with queue:
        yield


def sanitize_filename(name: str) -> str:
    """A safe base name: no directories, no leading dots, only [A-Za-z0-9._-], bounded length."""
    base = re.split(r"[\\/]", name)[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = stem[: MAX_NAME_CHARS - len(suffix) - 1].strip("._-") or "upload"
    return f"{stem}.{suffix.lower()}" if suffix else stem


class UploadRefused(Exception):
    """Why one uploaded file is not taken; the message names the reason in the user's words."""

    def __init__(self, message: str, *, reason: str = "invalid_file") -> None:
        super().__init__(message)
        self.reason = reason


def upload_limit(settings: Settings) -> int:
    """The largest file either face takes, in bytes."""
    return int(settings.max_upload_mb * 2**20)


def too_large(max_bytes: int, size: int | None = None) -> UploadRefused:
    """The refusal of a file over the limit (its size when known: a stream is refused as soon as it passes)."""
    what = f"{size / 2**20:.1f} MB is" if size is not None else "the file is"
    return UploadRefused(
        f"{what} over the {max_bytes / 2**20:g} MB upload limit (RAG_MAX_UPLOAD_MB)", reason="too_large"
    )


def read_upload(path: Path, original_name: str, *, max_bytes: int) -> bytes:
    """The upload's bytes, read once, so every check, the hash and the kept copy see the same content."""
    suffix = Path(original_name).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise UploadRefused(
            f"file type '{suffix or 'none'}' is not accepted (allowed: {', '.join(ALLOWED_SUFFIXES)})",
            reason="unsupported_type",
        )
    with path.open("rb") as fh:
        before = os.fstat(fh.fileno())
        data = fh.read(max_bytes + 1)  # never more than the limit in memory
        after = os.fstat(fh.fileno())
    if len(data) > max_bytes:
        raise too_large(max_bytes, max(before.st_size, after.st_size, len(data)))
    # A writer still busy with the file: what was read may be half old, half new.
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
        raise UploadRefused("the file changed while it was being read; upload it again once it is complete")
    if not data:
        raise UploadRefused("the file is empty")
    if suffix == ".pdf" and not data[:1024].lstrip().startswith(b"%PDF"):
        raise UploadRefused("not a PDF file (no %PDF header)")
    return data


class Staging:
    """Files arriving over HTTP, written as they arrive into a temporary folder in home/uploads/.incoming.

    The chat's Gradio copies land there too. A file is refused the moment it passes the limit: no more of it is kept.
    """

    def __init__(self, settings: Settings) -> None:
        incoming_dir(settings.home).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(dir=incoming_dir(settings.home)))
        self.limit = upload_limit(settings)
        self.files: list[tuple[Path, str]] = []  # (staged path, original name), as ingest_uploads takes them
        self._out: BinaryIO | None = None
        self._size = 0

    def begin(self, name: str) -> None:
        """Start the next file."""
        self.end()
        path = self.folder / f"{len(self.files)}{Path(name).suffix.lower()[:16]}"
        self._out, self._size = path.open("wb"), 0
        self.files.append((path, name))

    def write(self, data: bytes) -> None:
        """More of the current file; UploadRefused (too_large) once it is over the limit."""
        assert self._out is not None, "write() after begin()"
        self._size += len(data)
        if self._size > self.limit:
            raise too_large(self.limit)
        self._out.write(data)

    def end(self) -> None:
        """The current file is complete."""
        if self._out is not None:
            self._out.close()
            self._out = None

    def close(self) -> None:
        """Drop every staged file (ingest_uploads keeps its own copies)."""
        self.end()
        shutil.rmtree(self.folder, ignore_errors=True)


def sha256(path: Path) -> str:
    """Hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class IndexedFiles:
    """The indexed files (uploaded or ingested from disk) by size and, when asked, by content hash."""

    def __init__(self, sources: set[str]) -> None:
        self.sources = sources
        self._by_size: dict[int, list[Path]] | None = None
        self._hashes: dict[Path, str] = {}

    def duplicate_of(self, data: bytes, digest: str) -> Path | None:
        """An indexed file with exactly these bytes, if any; each file is stat-ed and hashed at most once."""
        if self._by_size is None:  # sizes first: hashing is the slow part, and most sizes differ
            self._by_size = {}
            for source in sorted(self.sources):
                kept = Path(source)
                if kept.is_file():
                    self._by_size.setdefault(kept.stat().st_size, []).append(kept)
        for kept in self._by_size.get(len(data), []):
            if kept not in self._hashes:
                self._hashes[kept] = sha256(kept)
            if self._hashes[kept] == digest:
                return kept
        return None

    def add(self, path: Path, digest: str, size: int) -> None:
        """A file kept in this batch: a later copy of it is a duplicate."""
        self.sources.add(str(path))
        self._hashes[path] = digest
        if self._by_size is not None:
            self._by_size.setdefault(size, []).append(path)


def unique_name(name: str, taken: set[str]) -> str:
    """name, or the first of name-2, name-3, ... that is not taken."""
    if name not in taken:
        return name
    stem, dot, suffix = name.rpartition(".")
    stem, suffix = (stem, f".{suffix}") if dot else (name, "")
    number = 2
    while f"{stem}-{number}{suffix}" in taken:
        number += 1
    return f"{stem}-{number}{suffix}"


def ingest_uploads(
    files: Sequence[tuple[Path, str]],
    assistant: Assistant,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> UploadReport:
    """Check, store and index uploaded files given as (temp path, original name); each file gets one outcome."""
    with upload_queue(assistant.settings.home):
        return _ingest_uploads(files, assistant, progress)


def _ingest_uploads(
    files: Sequence[tuple[Path, str]], assistant: Assistant, progress: Callable[[int, int], None] | None
) -> UploadReport:
    settings = assistant.settings
    folder = uploads_dir(settings.home)
    folder.mkdir(parents=True, exist_ok=True)
    indexed = IndexedFiles({doc.source for doc in assistant.store.documents()})
    report = UploadReport()
    staged: list[tuple[UploadOutcome, Path, bool]] = []  # (outcome, kept path, existed before)
    names: set[str] = set()  # safe names given in this batch
    on_disk = {p.name for p in folder.iterdir()}
    for temp_path, original in files:
        safe = sanitize_filename(original)
        try:
            data = read_upload(temp_path, original, max_bytes=upload_limit(settings))
        except UploadRefused as exc:
            report.outcomes.append(UploadOutcome(safe, "failed", str(exc), reason=exc.reason))
            continue
        except OSError as exc:  # vanished or unreadable between Gradio's copy and ours
            detail = f"could not be read: {exc.strerror or exc}"
            report.outcomes.append(UploadOutcome(safe, "failed", detail, reason="invalid_file"))
            continue
        digest = hashlib.sha256(data).hexdigest()
        duplicate = indexed.duplicate_of(data, digest)
        if duplicate is not None:
            report.outcomes.append(UploadOutcome(safe, "duplicate", f"same content as {duplicate.name}, not re-added"))
            continue
        # Two different files whose names sanitise alike ("a b.md", "a_b.md") must not overwrite each other, nor
        # may a kept file this collection does not hold (another collection's upload) be overwritten.
        # A renamed file also avoids every kept one, so it updates no unrelated document.
        in_batch = safe in names
        foreign = safe in on_disk and str((folder / safe).resolve()) not in indexed.sources
        name = unique_name(safe, names | on_disk) if in_batch or foreign else safe
        names.add(name)
        target = (folder / name).resolve()
        if target.parent != folder.resolve():  # belt and braces: the sanitised name cannot leave the folder
            report.outcomes.append(UploadOutcome(name, "failed", "unsafe file name", reason="invalid_file"))
            continue
        existed = str(target) in indexed.sources
        target.write_bytes(data)
        why = "another file in this upload is also named" if in_batch else "a file not in this collection is named"
        detail = f"'{Path(original).name}' saved as {name}: {why} {safe}" if name != safe else ""
        outcome = UploadOutcome(name, "updated" if existed else "added", detail, source=str(target))
        staged.append((outcome, target, existed))
        indexed.add(target, digest, len(data))
        report.outcomes.append(outcome)

    if staged:
        result = ingest_paths(
            [path for _, path, _ in staged], settings=settings, store=assistant.store, progress=progress
        )
        errors = {str(Path(f.path).resolve()): f.error for f in result.failed}
        for outcome, path, existed in staged:
            if str(path) in errors:
                outcome.status, outcome.detail, outcome.source = "failed", errors[str(path)], None
                outcome.reason = "invalid_file"
                if not existed:  # keep no file that is not in the index
                    path.unlink(missing_ok=True)
        report.chunks = result.chunks
    else:
        report.chunks = assistant.store.count()
    return report


def delete_document(source: str, assistant: Assistant) -> int:
    """Remove a document from the index (and its uploaded copy, if it was uploaded); returns chunks deleted."""
    settings = assistant.settings
    with upload_queue(settings.home):
        deleted = remove_source(source, settings=settings, store=assistant.store)
        path = Path(source)
        if path.parent == uploads_dir(settings.home).resolve():
            path.unlink(missing_ok=True)
    return deleted

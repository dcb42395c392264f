"""Files uploaded through the chat: checked, given safe names, kept in home/uploads, then ingested."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest import ingest_paths, remove_source
from rag.assistant import Assistant

ALLOWED_SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf")
MAX_NAME_CHARS = 120


@dataclass
class UploadOutcome:
    """What happened to one uploaded file, in words a user reads."""

    name: str
    status: str  # "added", "updated", "duplicate" or "failed"
    detail: str = ""
    source: str | None = None


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


def check_upload(path: Path, original_name: str, *, max_bytes: int) -> str | None:
    """Why this upload is refused, or None when its type and size are acceptable."""
    suffix = Path(original_name).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        return f"file type '{suffix or 'none'}' is not accepted (allowed: {', '.join(ALLOWED_SUFFIXES)})"
    size = path.stat().st_size
    if size > max_bytes:
        return f"{size / 2**20:.1f} MB is over the {max_bytes / 2**20:g} MB upload limit (RAG_MAX_UPLOAD_MB)"
    if size == 0:
        return "the file is empty"
    if suffix == ".pdf" and not path.read_bytes()[:1024].lstrip().startswith(b"%PDF"):
        return "not a PDF file (no %PDF header)"
    return None


def sha256(path: Path) -> str:
    """Hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_duplicate(path: Path, indexed: set[str]) -> Path | None:
    """An indexed file (uploaded or ingested from disk) with exactly the same bytes, if any."""
    size, data_hash = path.stat().st_size, None
    for source in sorted(indexed):
        kept = Path(source)
        if not kept.is_file() or kept.stat().st_size != size:  # sizes first: hashing is the slow part
            continue
        data_hash = data_hash or sha256(path)
        if sha256(kept) == data_hash:
            return kept
    return None


def ingest_uploads(
    files: Sequence[tuple[Path, str]],
    assistant: Assistant,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> UploadReport:
    """Check, store and index uploaded files given as (temp path, original name); each failure says why."""
    settings = assistant.settings
    folder = uploads_dir(settings.home)
    folder.mkdir(parents=True, exist_ok=True)
    indexed = {doc.source for doc in assistant.store.documents()}
    report = UploadReport()
    staged: list[tuple[UploadOutcome, Path, bool]] = []  # (outcome, kept path, existed before)
    for temp_path, original in files:
        name = sanitize_filename(original)
        refusal = check_upload(temp_path, original, max_bytes=int(settings.max_upload_mb * 2**20))
        if refusal:
            report.outcomes.append(UploadOutcome(name, "failed", refusal))
            continue
        duplicate = find_duplicate(temp_path, indexed)
        if duplicate is not None:
            report.outcomes.append(UploadOutcome(name, "duplicate", f"same content as {duplicate.name}, not re-added"))
            continue
        target = (folder / name).resolve()
        if target.parent != folder.resolve():  # belt and braces: the sanitised name cannot leave the folder
            report.outcomes.append(UploadOutcome(name, "failed", "unsafe file name"))
            continue
        existed = str(target) in indexed
        target.write_bytes(temp_path.read_bytes())
        outcome = UploadOutcome(name, "updated" if existed else "added", source=str(target))
        staged.append((outcome, target, existed))
        indexed.add(str(target))  # a second copy in the same batch is a duplicate of this one
        report.outcomes.append(outcome)

    if staged:
        result = ingest_paths(
            [path for _, path, _ in staged], settings=settings, store=assistant.store, progress=progress
        )
        errors = {str(Path(f.path).resolve()): f.error for f in result.failed}
        for outcome, path, existed in staged:
            if str(path) in errors:
                outcome.status, outcome.detail, outcome.source = "failed", errors[str(path)], None
                if not existed:  # keep no file that is not in the index
                    path.unlink(missing_ok=True)
        report.chunks = result.chunks
    else:
        report.chunks = assistant.store.count()
    return report


def delete_document(source: str, assistant: Assistant) -> int:
    """Remove a document from the index (and its uploaded copy, if it was uploaded); returns chunks deleted."""
    settings = assistant.settings
    deleted = remove_source(source, settings=settings, store=assistant.store)
    path = Path(source)
    if path.parent == uploads_dir(settings.home).resolve():
        path.unlink(missing_ok=True)
    return deleted

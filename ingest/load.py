"""One reader per file format, each returning a Document with its metadata and, for PDFs, page spans."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from rag.types import Document, LoadError, PageSpan

FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)
MD_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)
PLACEHOLDER_TITLES = frozenset({"untitled", "untitled document", "title", "document"})


def decode_text(data: bytes) -> str:
    """UTF-8 text, or a LoadError for binary or undecodable bytes."""
    if b"\x00" in data[:8192]:
        raise LoadError("binary file (contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(f"not UTF-8 text (byte {exc.start})") from exc


def title_from_name(path: Path) -> str:
    """A readable title from a file name: 'kenya-police_haiti.txt' -> 'Kenya police haiti'."""
    words = re.sub(r"[_\-]+", " ", path.stem).strip()
    return words[:1].upper() + words[1:] if words else path.name


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Simple `key: value` front matter at the top of a text or Markdown file."""
    match = FRONT_MATTER.match(text.replace("\r\n", "\n"))
    if not match:
        return {}, text
    meta = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            meta[key.strip().lower()] = value.strip().strip("\"'")
    return meta, text.replace("\r\n", "\n")[match.end() :]


def read_text(path: Path, data: bytes) -> Document:
    """Plain text or Markdown, with optional front matter for title, date and other metadata."""
    meta, body = split_front_matter(decode_text(data))
    title = meta.pop("title", "")
    if not title and path.suffix.lower() == ".md" and (heading := MD_HEADING.search(body)):
        title = heading.group(1)
    return Document(source=str(path), title=title or title_from_name(path), text=body, metadata=meta)


def read_html(path: Path, data: bytes) -> Document:
    """The main text of a web page, without navigation and comments."""
    import trafilatura

    html = decode_text(data)
    text = trafilatura.extract(html, include_comments=False, include_tables=True, favor_recall=True)
    if not text:
        raise LoadError("no readable text in the HTML")
    found = trafilatura.extract_metadata(html)
    meta = {}
    if found is not None and found.date:
        meta["date"] = str(found.date)
    title = (found.title if found is not None else None) or title_from_name(path)
    return Document(source=str(path), title=title, text=text, metadata=meta)


def read_pdf(path: Path, data: bytes) -> Document:
    """Text page by page, keeping where each page starts and ends."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        info_title = (reader.metadata.title if reader.metadata else None) or ""
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise LoadError(f"corrupt PDF ({exc})") from exc
    spans, parts, offset = [], [], 0
    for number, page_text in enumerate(pages, start=1):
        spans.append(PageSpan(page=number, start=offset, end=offset + len(page_text)))
        parts.append(page_text)
        offset += len(page_text)
    # PDF writers often fill the title field with a placeholder; the file name says more.
    title = info_title.strip()
    if title.lower() in PLACEHOLDER_TITLES:
        title = ""
    return Document(source=str(path), title=title or title_from_name(path), text="".join(parts), pages=tuple(spans))


def read_docx(path: Path, data: bytes) -> Document:
    """Paragraph text of a Word document."""
    import io
    import zipfile

    import docx

    try:
        word = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise LoadError(f"corrupt DOCX ({exc})") from exc
    text = "\n\n".join(p.text for p in word.paragraphs)
    title = word.core_properties.title or title_from_name(path)
    return Document(source=str(path), title=title, text=text)


READERS: dict[str, Callable[[Path, bytes], Document]] = {
    ".txt": read_text,
    ".md": read_text,
    ".markdown": read_text,
    ".html": read_html,
    ".htm": read_html,
    ".pdf": read_pdf,
    ".docx": read_docx,
}
SUPPORTED_SUFFIXES = tuple(READERS)


def load_file(path: Path, *, max_bytes: int) -> Document:
    """Read one file into a Document, or raise LoadError with a one-line reason."""
    if not path.exists():
        raise LoadError("no such file or directory")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise LoadError(f"unsupported file type '{path.suffix or path.name}' (supported: {', '.join(READERS)})")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LoadError(f"too large ({size / 2**20:.1f} MB > {max_bytes / 2**20:.3g} MB limit, RAG_MAX_FILE_MB)")
        if size == 0:
            raise LoadError("empty file")
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"unreadable ({exc.strerror or exc})") from exc
    return reader(path, data)


def find_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and every non-hidden file under named folders, in a stable order, each once."""
    seen: set[Path] = set()

    def first_time(path: Path) -> bool:
        # `rag ingest docs/ docs/a.txt` must not index a.txt twice in one run.
        key = path.resolve()
        if key in seen:
            return False
        seen.add(key)
        return True

    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if child.is_file() and not hidden and first_time(child):
                    yield child
        elif first_time(path):
            yield path

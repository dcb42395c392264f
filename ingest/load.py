"""One reader per file format, each returning a Document with its metadata and, for PDFs, page spans."""

from __future__ import annotations

import atexit
import errno
import os
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

from rag.dates import created_date, dated_metadata
from rag.types import Document, IngestFailure, LoadError, PageSpan, one_line

FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)
# The text of the first level-1 heading line; the closing #s are cut in Python: a lazy group followed by \s*#*\s*$
# backtracked cubically (a 2,000-space heading line took 27 s).
MD_HEADING = re.compile(r"^#[ \t]+(\S.*)$", re.MULTILINE)
PLACEHOLDER_TITLES = frozenset({"untitled", "untitled document", "title", "document"})
# Word files are XML that deflates about 10:1; 100:1 (beyond the first 64 MB) is a zip bomb, not prose.
MAX_DOCX_INFLATION = 100
# python-docx's blank template's creation time, which files written with it keep unless they set their own.
DOCX_TEMPLATE_CREATED = datetime(2013, 12, 23, 23, 15, tzinfo=UTC)


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


def heading_text(line: str) -> str:
    """A Markdown heading's text without its optional closing sequence: 'Title ##' -> 'Title', 'C#' stays."""
    text = line.strip()
    bare = text.rstrip("#")
    return bare.rstrip() if bare != text and (not bare or bare[-1] in " \t") else text


def read_text(path: Path, data: bytes) -> Document:
    """Plain text or Markdown, with optional front matter for title, date and other metadata."""
    meta, body = split_front_matter(decode_text(data))
    title = meta.pop("title", "")
    if not title and path.suffix.lower() == ".md" and (heading := MD_HEADING.search(body)):
        title = heading_text(heading.group(1))
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
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        info_title = (reader.metadata.title if reader.metadata else None) or ""
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:  # PyPdfError: also its size limits
        raise LoadError(f"corrupt PDF ({exc})") from exc
    meta = {}
    try:
        created = created_date(reader.metadata.creation_date if reader.metadata else None)
    except (PyPdfError, ValueError, KeyError, TypeError):  # a malformed date field loses the date, not the file
        created = None
    if created:
        meta["date"] = created
    spans, parts, offset = [], [], 0
    for number, page_text in enumerate(pages, start=1):
        spans.append(PageSpan(page=number, start=offset, end=offset + len(page_text)))
        parts.append(page_text)
        offset += len(page_text)
    # PDF writers often fill the title field with a placeholder; the file name says more.
    title = info_title.strip()
    if title.lower() in PLACEHOLDER_TITLES:
        title = ""
    return Document(
        source=str(path), title=title or title_from_name(path), text="".join(parts), pages=tuple(spans), metadata=meta
    )


def read_docx(path: Path, data: bytes) -> Document:
    """Paragraph text of a Word document."""
    import io
    import zipfile

    import docx

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            # A zip bomb declares its real size; zipfile never inflates a member past what it declares.
            inflated = sum(member.file_size for member in archive.infolist())
        if inflated > MAX_DOCX_INFLATION * len(data) + 2**20 * 64:
            raise LoadError(f"zip bomb ({len(data) / 2**20:.1f} MB inflates to {inflated / 2**20:.0f} MB)")
        word = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:
        raise LoadError(f"corrupt DOCX ({exc})") from exc
    text = "\n\n".join(p.text for p in word.paragraphs)
    title = word.core_properties.title or title_from_name(path)
    created = word.core_properties.created
    created_at = None if created == DOCX_TEMPLATE_CREATED else created_date(created)
    return Document(source=str(path), title=title, text=text, metadata={"date": created_at} if created_at else {})


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
# Third-party parsers of complex formats run in the worker; text is decoded here, in linear time and memory.
ISOLATED_SUFFIXES = frozenset({".html", ".htm", ".pdf", ".docx"})


def _address_space() -> int:
    """Bytes of virtual memory this process maps now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def error_line(message: str, limit: int = 300) -> str:
    """A parser's message as one printable line of at most limit characters (lxml's span lines and quote bytes)."""
    line = one_line(" ".join(message.split()))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def serve(read_fd: int, write_fd: int, memory_mb: int) -> None:
    """The worker's loop: parse (suffix, path, data) requests under an address-space limit until the pipe closes."""
    import logging
    import resource

    import docx  # noqa: F401  (imported before the limit is set, so the limit is what a parse adds)
    import pypdf  # noqa: F401
    import trafilatura  # noqa: F401

    logging.disable(logging.WARNING)  # parsers log every oddity they repair; a failure is reported by the parent
    limit = _address_space() + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    requests, replies = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    while True:
        try:
            suffix, path, data = requests.recv()
        except EOFError:
            return
        try:
            replies.send(("ok", READERS[suffix](Path(path), data)))
        except LoadError as exc:
            replies.send(("error", error_line(str(exc))))
        except MemoryError:
            del data
            # A parser out of memory may have left its state half-built: this worker ends, the next starts afresh.
            replies.send(("fatal", f"needs more than {memory_mb} MB of memory to parse (RAG_PARSE_MEMORY_MB)"))
            return
        except RecursionError:
            replies.send(("error", "nested too deeply to parse"))
        except Exception as exc:  # a parser bug on one file is that file's failure, not the worker's
            replies.send(("error", error_line(f"cannot parse ({type(exc).__name__}: {exc})")))


class ParserWorker:
    """One long-lived process that runs the PDF, DOCX and HTML parsers, killed and replaced when a file hangs it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._requests: Connection | None = None
        self._replies: Connection | None = None
        self._memory_mb = 0

    def parse(self, suffix: str, path: Path, data: bytes, *, timeout_s: float, memory_mb: int) -> Document:
        """The reader's Document, or a LoadError when the parse fails, runs out of time or memory, or crashes."""
        with self._lock:
            if self._process is None or self._memory_mb != memory_mb or self._process.poll() is not None:
                self._start(memory_mb)
            assert self._process is not None and self._requests is not None and self._replies is not None
            try:
                self._requests.send((suffix, str(path), data))
                if not self._replies.poll(timeout_s):
                    self.stop()
                    raise LoadError(f"parsing took longer than {timeout_s:g} s (RAG_PARSE_TIMEOUT_S)")
                kind, value = self._replies.recv()
            except (EOFError, OSError) as exc:
                try:
                    code = self._process.wait(5)
                except subprocess.TimeoutExpired:
                    code = None
                self.stop()
                raise LoadError(f"the parser crashed on this file (exit code {code})") from exc
            except BaseException:
                self.stop()  # Ctrl-C mid-exchange: the pipe's state is unknown, so the next file gets a new worker
                raise
            if kind == "fatal":
                self.stop()
        if kind != "ok":
            raise LoadError(value)
        return value  # type: ignore[no-any-return]

    def _start(self, memory_mb: int) -> None:
        self.stop()
        # A fresh interpreter, not a fork: a fork would inherit (and count against the limit) the parent's torch and
        # Chroma mappings and threads. Its own session: Ctrl-C in the terminal is the parent's to handle.
        from_parent, to_child = os.pipe()  # (read end, write end)
        from_child, to_parent = os.pipe()
        # This file alone, not the ingest package, whose __init__ pulls in Chroma and LangChain (seconds, and more).
        code = (
            f"import importlib.util as u; s = u.spec_from_file_location('rag_parser', {__file__!r}); "
            f"m = u.module_from_spec(s); s.loader.exec_module(m); m.serve({from_parent}, {to_parent}, {memory_mb})"
        )
        env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # the same rag package
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=(from_parent, to_parent),
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(from_parent)
            os.close(to_parent)
        self._requests = Connection(to_child, readable=False)
        self._replies = Connection(from_child, writable=False)
        self._memory_mb = memory_mb

    def stop(self) -> None:
        """End the worker process, if one runs."""
        for conn in (self._requests, self._replies):
            if conn is not None:
                conn.close()
        self._requests = self._replies = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process = None


PARSER = ParserWorker()
atexit.register(PARSER.stop)


def describe_mode(mode: int) -> str:
    """What a file that is not a regular one is, in words."""
    kinds = [(stat.S_ISDIR, "is a directory"), (stat.S_ISFIFO, "is a FIFO"), (stat.S_ISSOCK, "is a socket")]
    kinds += [(stat.S_ISCHR, "is a character device"), (stat.S_ISBLK, "is a block device")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_bytes(path: Path, *, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes, or a LoadError that says why not."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat of the open file then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise LoadError("no such file or directory") from exc
        raise LoadError(f"unreadable ({exc.strerror or exc})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LoadError(f"unreadable ({describe_mode(info.st_mode)})")
        if info.st_size > max_bytes:
            raise LoadError(
                f"too large ({info.st_size / 2**20:.1f} MB > {max_bytes / 2**20:.3g} MB limit, RAG_MAX_FILE_MB)"
            )
        # Up to one byte past the limit: a file that grows while it is read is held to the same limit.
        pieces, left = [], max_bytes + 1
        while left > 0 and (piece := os.read(fd, min(left, max(info.st_size + 1, 2**16)))):
            pieces.append(piece)
            left -= len(piece)
        data = b"".join(pieces)
    except OSError as exc:
        raise LoadError(f"unreadable ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise LoadError(f"too large (grew past the {max_bytes / 2**20:.3g} MB limit while read, RAG_MAX_FILE_MB)")
    if not data:
        raise LoadError("empty file")
    return data


def load_file(path: Path, *, max_bytes: int, timeout_s: float, memory_mb: int) -> Document:
    """Read one file into a Document, or raise LoadError with a one-line reason.

    PDF, DOCX and HTML are parsed in a separate process, stopped after timeout_s and limited to memory_mb more
    address space than it starts with; text and Markdown are decoded here. The metadata's `date` is ISO
    YYYY-MM-DD, or absent when unknown (rag.dates.dated_metadata).
    """
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError as exc:
        # Sources are stored as UTF-8 text (Chroma, SQLite); a name that is not cannot be stored or cited.
        raise LoadError("file name is not valid UTF-8; rename the file") from exc
    suffix = path.suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        if not os.path.lexists(path):
            raise LoadError("no such file or directory")
        raise LoadError(f"unsupported file type '{path.suffix or path.name}' (supported: {', '.join(READERS)})")
    data = read_bytes(path, max_bytes=max_bytes)
    if suffix in ISOLATED_SUFFIXES:
        doc = PARSER.parse(suffix, path, data, timeout_s=timeout_s, memory_mb=memory_mb)
    else:
        doc = reader(path, data)
    # One date rule for every format: the reader's date (front matter, HTML or PDF metadata) as ISO, else a dateline.
    return doc.model_copy(update={"metadata": dated_metadata(doc.metadata, doc.text)})


def find_files(paths: Iterable[Path], *, refused: list[IngestFailure] | None = None) -> Iterator[Path]:
    """Files named directly, and every non-hidden file under named folders, in a stable order, each once.

    Under a folder, a symbolic link is followed only when it ends inside that folder; links that point outside,
    dangle or loop are appended to refused (when given) with the reason, and not yielded. Files named directly
    are yielded as named, links or not: the user chose them.
    """
    seen: set[Path] = set()

    def first_time(path: Path) -> bool:
        # `rag ingest docs/ docs/a.txt` must not index a.txt twice in one run.
        key = path.resolve()
        if key in seen:
            return False
        seen.add(key)
        return True

    def refuse(path: Path, reason: str) -> None:
        if refused is not None:
            refused.append(IngestFailure(path=str(path), error=reason))

    for path in paths:
        if not path.is_dir():
            if first_time(path):
                yield path
            continue
        root = path.resolve()
        for child in sorted(path.rglob("*")):
            if any(part.startswith(".") for part in child.relative_to(path).parts):
                continue
            try:
                mode = child.lstat().st_mode
            except OSError:
                continue  # gone since the listing
            if stat.S_ISLNK(mode):
                try:
                    target = child.resolve(strict=True)
                except (OSError, RuntimeError):
                    refuse(child, "broken symbolic link or symbolic link loop")
                    continue
                if not target.is_relative_to(root):
                    # A folder may hold a link to /etc/passwd or ~/.ssh; ingesting it would leak that file.
                    refuse(child, "symbolic link to outside the folder (not followed)")
                    continue
                mode = target.stat().st_mode
            if not stat.S_ISDIR(mode) and first_time(child):
                yield child

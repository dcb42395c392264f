"""Advisory locks on RAG_HOME, so that two processes never break each other's embedded Chroma.

Embedded Chroma (PersistentClient) is single-process: a process that keeps a client open serves stale HNSW state,
and fails ("Error finding id"), once another process has written the same directory. Reading is safe: a second
process that only reads leaves the first one's client intact (tests/test_lock.py runs both). So:

- the *owner*: one process at a time serves or writes an embedded home (`rag chat`, `rag ingest`, any process that
  ingests). It holds `home/lock` until it exits; a second would-be owner is refused at once with HomeInUse.
- *writes* (one ingest run, one upload, one delete) hold `home/write.lock` exclusively, and *readers* (`rag ask`,
  `rag status` in another process) hold it shared for their short lives, so a reader never sees a write half done.
  Each side waits a little for the other, then gives up with HomeInUse.

With a Chroma server (RAG_CHROMA_URL) the server serialises Chroma itself, so there is no owner and readers take no
lock; writes still hold `home/write.lock`, because records.sqlite, documents.sqlite and bm25/ stay in the home.
flock locks die with their process (kill -9 included), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rag.types import RagError

if TYPE_CHECKING:
    from rag.settings import Settings

# The exit code of a command refused because another process holds RAG_HOME: sysexits' EX_TEMPFAIL, "try again".
EXIT_IN_USE = 75
OWNER_FILE = "lock"
WRITE_FILE = "write.lock"
# A reader waits this long for a write in progress (a chat upload), a writer this long for readers (`rag ask`).
READ_WAIT_S = 10.0
WRITE_WAIT_S = 60.0
POLL_S = 0.05
SERVER_HINT = "or run a Chroma server and set RAG_CHROMA_URL"


class HomeInUse(RagError):
    """Another process holds RAG_HOME; the message names it and says what to do."""


_guard = threading.Lock()
_owned: dict[Path, int] = {}  # home -> fd of its owner lock, held until this process exits
_write_locks: dict[Path, threading.RLock] = {}
_write_fds: dict[Path, tuple[int, int]] = {}  # home -> (fd, nesting depth) while this process writes


def this_command() -> str:
    """How this process was started, for the message another process shows: `rag chat`, `python app.py`."""
    script = Path(sys.argv[0] if sys.argv and sys.argv[0] else "python")
    name = script.parent.name if script.name == "__main__.py" else script.name  # `python -m rag` -> rag
    args = [a for a in sys.argv[1:2] if not a.startswith("-")]
    return " ".join([name, *args])


def _holder(fd: int) -> tuple[str, int | None]:
    """The command and pid written into a lock file by its holder (best effort: it may be mid-write)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return str(info["command"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return "another process", None


def _describe(fd: int) -> str:
    command, pid = _holder(fd)
    return f"`{command}` (pid {pid})" if pid else f"`{command}`"


def _write_holder(fd: int, command: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command}).encode("utf-8"), 0)


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def _flock(fd: int, mode: int, wait_s: float) -> bool:
    """Take a flock, retrying for wait_s seconds; False when it stayed taken."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)


def claim_home(settings: Settings, command: str | None = None) -> None:
    """Make this process the owner of an embedded home until it exits (a no-op with a Chroma server, or if owned)."""
    if settings.is_server_mode:
        return
    home = settings.home.resolve()
    with _guard:
        if home in _owned:
            return
        fd = _open(home / OWNER_FILE)
        if not _flock(fd, fcntl.LOCK_EX, 0):
            holder, chat = _describe(fd), " chat" in _holder(fd)[0]
            os.close(fd)
            advice = "upload files in its Documents tab, stop it first" if chat else "wait until it ends"
            raise HomeInUse(f"RAG_HOME {settings.home} is in use by {holder}: {advice}, {SERVER_HINT}")
        _write_holder(fd, command or this_command())
        _owned[home] = fd


def owns_home(settings: Settings) -> bool:
    """True when this process is the owner of the (embedded) home."""
    return settings.home.resolve() in _owned


@contextmanager
def writing(settings: Settings, command: str | None = None) -> Iterator[None]:
    """Hold the home for one write: claims it (embedded), then waits for readers in other processes to finish."""
    claim_home(settings, command)
    home = settings.home.resolve()
    with _guard:
        rlock = _write_locks.setdefault(home, threading.RLock())
    with rlock:  # threads of this process (two chat uploads) write one after the other
        fd, depth = _write_fds.get(home, (-1, 0))
        if depth == 0:
            fd = _open(home / WRITE_FILE)
            if not _flock(fd, fcntl.LOCK_EX, WRITE_WAIT_S):
                # Embedded, this process owns the home, so the others are readers; with a server, another writer.
                who = "being read by another process"
                if settings.is_server_mode:
                    who = f"being written by {_describe(fd)}"
                os.close(fd)
                raise HomeInUse(f"RAG_HOME {settings.home} is {who}: try again when it ends")
            _write_holder(fd, command or this_command())
        _write_fds[home] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _write_fds.pop(home)
            if depth > 1:
                _write_fds[home] = (fd, depth - 1)
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


@contextmanager
def reading(settings: Settings) -> Iterator[None]:
    """Read an embedded home that another process may own: waits until no write is in progress, then holds one off."""
    home = settings.home.resolve()
    if settings.is_server_mode or home in _owned or not home.is_dir():
        yield  # a server serialises itself; an owner reads its own writes; a missing home has no writer
        return
    fd = _open(home / WRITE_FILE)
    try:
        if not _flock(fd, fcntl.LOCK_SH, READ_WAIT_S):
            raise HomeInUse(
                f"RAG_HOME {settings.home} is being written by {_describe(fd)}: try again when it ends, {SERVER_HINT}"
            )
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the flock

"""The SQL database behind the ingest records and document texts: SQLite in home, or one server every replica shares.

RAG_DATABASE_URL is any SQLAlchemy URL; PostgreSQL (through psycopg 3) is the server option. Unset, each home keeps
today's two SQLite files, records.sqlite and documents.sqlite.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rag.types import RagError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from rag.settings import Settings

RECORDS_FILE = "records.sqlite"
TEXTS_FILE = "documents.sqlite"
CONNECT_TIMEOUT_S = 5  # a server that does not answer in this long is reported down, not waited for
POLL_S = 0.2

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


class DatabaseUnavailable(RagError):
    """The database server cannot be reached; the message names it, password masked."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"database at {masked(url)} is unreachable: {reason}")


class WriterBusy(RagError):
    """Another process kept writing the collection for longer than RAG_WRITE_WAIT_S."""


def database_url(settings: Settings, file: str) -> str:
    """RAG_DATABASE_URL, or the default SQLite file of that name in home."""
    return settings.database_url or f"sqlite:///{(settings.home / file).resolve()}"


def is_sqlite(url: str) -> bool:
    """True for a SQLite URL (a local file: its locks and damage checks are ours)."""
    return url.startswith("sqlite")


def masked(url: str) -> str:
    """The URL with its password replaced by ***, fit to print."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unparsable RAG_DATABASE_URL)"


def engine_for(url: str) -> Engine:
    """One engine per URL and process.

    A server connection is checked before each use, so a restarted server is reconnected to without restarting the
    app; SQLite opens the file afresh each time, as a moved-aside file must not stay open.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    from sqlalchemy.pool import NullPool

    with _engines_lock:
        if url in _engines:
            return _engines[url]
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise RagError(f"RAG_DATABASE_URL is not a database URL ({exc})") from exc
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, poolclass=NullPool, connect_args={"timeout": 30})
        else:
            if parsed.drivername == "postgresql":  # psycopg 3 is the driver installed, not psycopg2
                parsed = parsed.set(drivername="postgresql+psycopg")
            args = {"connect_timeout": CONNECT_TIMEOUT_S} if parsed.get_backend_name() == "postgresql" else {}
            engine = create_engine(parsed, pool_pre_ping=True, connect_args=args)
        _engines[url] = engine
        return engine


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """A lost database server becomes one DatabaseUnavailable line; SQLite errors pass (the store judges them)."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        if is_sqlite(url):
            raise
        raise DatabaseUnavailable(url, one_line(exc.orig if isinstance(exc, DBAPIError) else exc)) from exc


def one_line(exc: BaseException | None) -> str:
    """The first line of an exception's message."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


@contextmanager
def writers_turn(url: str, name: str, *, wait_s: float) -> Iterator[None]:
    """Hold the database's write turn for `name` (one collection) across every process and replica.

    On PostgreSQL this is a session advisory lock: the server drops it when the holder's connection ends, kill -9
    included, so a crash never leaves it stale. SQLite lives in one home, whose write.lock already serialises writers.
    """
    if is_sqlite(url):
        yield
        return
    from sqlalchemy import text

    key = lock_key(name)
    with translate_errors(url), engine_for(url).connect() as conn:
        deadline = time.monotonic() + wait_s
        while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            conn.rollback()  # no transaction may stay open while waiting
            if time.monotonic() >= deadline:
                raise WriterBusy(
                    f"collection {name} in {masked(url)} is being written by another process for over {wait_s:.0f} s "
                    "(RAG_WRITE_WAIT_S): try again when it ends"
                )
            time.sleep(POLL_S)
        conn.commit()
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            except Exception:  # a lost connection has released the lock already
                conn.invalidate()


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None for other databases or an in-memory one)."""
    if not is_sqlite(url):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None

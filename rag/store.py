"""Chroma (embedded or server) holding the chunks and vectors, plus the SQL store of full document texts."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast
from urllib.parse import urlsplit

import numpy as np

from rag.database import TEXTS_FILE, engine_for, sqlite_file, translate_errors
from rag.types import (
    Chunk,
    Document,
    DocumentInfo,
    PassageVectors,
    RagError,
    SentenceVectors,
    StoreFull,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from chromadb.api.types import GetResult, Metadata, Where, WhereDocument
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection, Engine

    from rag.embeddings import LocalEmbeddings
    from rag.settings import Settings
    from rag.vectorstore import ChunkVectorStore

log = logging.getLogger(__name__)

# Chroma refuses larger upserts; see chromadb's max_batch_size.
MAX_CHROMA_BATCH = 5461
# Rows per page of a scan. Chroma walks past an offset row by row, so a page costs more the deeper it starts, and
# small pages make a scan quadratic (1M ids took minutes in pages of 5,461). Ids are small; chunks carry their text.
ID_SCAN_PAGE = 50_000
CHUNK_SCAN_PAGE = 10_000
REVISION_KEY = "rag_revision"
# Chunks whose sentence vectors stay in memory (about 8 KB each).
SENTENCE_CACHE_CHUNKS = 20_000
# Chunks whose text and metadata stay in memory (up to about 3 KB each): the candidates of recent questions.
CHUNK_CACHE_CHUNKS = 2_000
# Chunk metadata fields that are ours; everything else is the document's own metadata.
CHUNK_FIELDS = ("source", "title", "start", "end", "page")
# Written by upsert() beside a chunk's own metadata: how many sentence vectors it has, so that they are fetched by
# id, not by a `chunk_id` filter (100 chunks' over 100k sentences: 19 ms by id, 44 ms filtered). Older chunks,
# written without it, are fetched by the filter.
SENTENCE_COUNT = "sentence_count"
STORE_FIELDS = (*CHUNK_FIELDS, SENTENCE_COUNT)
# Values per SQL statement: old SQLite builds allow 999 variables.
SQL_BATCH = 500

# A full disk reaches us as ENOSPC from Python's own writes, but embedded Chroma reports it only as an InternalError
# ("Failed to apply logs to the metadata segment"): a storage error with less room than this left counts as full.
# Measured: on a 3 MB tmpfs, Chroma's upserts failed with 0.45 MB still free.
LOW_ROOM_BYTES = 16 * 2**20
OUT_OF_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

V = TypeVar("V")


def make_client(settings: Settings) -> ClientAPI:
    """An embedded PersistentClient in home/chroma, or an HttpClient when RAG_CHROMA_URL is set."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if not settings.chroma_url:
        path = settings.home / "chroma"
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    url = urlsplit(settings.chroma_url)
    try:
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or 8000,
            ssl=url.scheme == "https",
            settings=chroma_settings,
        )
    except Exception as exc:  # chromadb raises bare ValueError/ConnectionError/httpx errors here
        raise StoreUnavailable(settings.chroma_url, one_line(exc)) from exc


def room_left(path: Path) -> int:
    """Bytes that can still be written under path: the disk's free space, or less under a file size limit."""
    import resource

    while not path.exists() and path != path.parent:
        path = path.parent
    room = shutil.disk_usage(path).free
    limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)  # ulimit -f: each file may grow only this far
    if limit != resource.RLIM_INFINITY:
        largest = max((f.stat().st_size for f in path.rglob("*") if f.is_file()), default=0)
        room = min(room, max(0, limit - largest))
    return room


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and the ones it was raised from or during (SQLAlchemy wraps sqlite3's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_out_of_room(exc: BaseException, path: Path) -> bool:
    """True when a storage failure comes from a full disk or a file size limit, not from a bug."""
    from chromadb.errors import ChromaError

    chain = list(causes(exc))
    if any(isinstance(e, OSError) and e.errno in OUT_OF_ROOM_ERRNOS for e in chain):
        return True
    if any("disk is full" in str(e) for e in chain):  # SQLite's SQLITE_FULL
        return True
    is_storage = any(isinstance(e, OSError | sqlite3.Error | ChromaError) for e in chain)
    return is_storage and room_left(path) < LOW_ROOM_BYTES


def sentence_collection_name(collection: str) -> str:
    """The sibling collection holding a collection's sentence vectors."""
    return f"{collection}.sentences"


def of_chunks(chunk_ids: Sequence[str]) -> Where:
    """A Chroma filter for the sentences of these chunks."""
    return cast("Where", {"chunk_id": {"$in": list(chunk_ids)}})  # the stubs can't infer the "$in" literal


def sentence_id(chunk_id: str, n: int) -> str:
    """The id of a chunk's n-th sentence vector (from 0, in text order)."""
    return f"{chunk_id}#{n}"


def chunk_of_sentence(sentence: str) -> str:
    """The chunk id a sentence id names: all before its last '#'."""
    return sentence.rsplit("#", 1)[0]


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def chunk_to_metadata(chunk: Chunk) -> dict[str, str | int]:
    """Flatten a chunk's fields into Chroma metadata (no None values allowed there)."""
    meta: dict[str, str | int] = dict(chunk.metadata)
    meta.update(source=chunk.source, title=chunk.title, start=chunk.start, end=chunk.end)
    if chunk.page is not None:
        meta["page"] = chunk.page
    return meta


def chunk_from_record(chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
    """Rebuild a Chunk from a Chroma record."""
    page = meta.get("page")
    return Chunk(
        id=chunk_id,
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", len(text))),
        page=int(page) if page is not None else None,
        text=text,
        metadata={k: str(v) for k, v in meta.items() if k not in STORE_FIELDS},
    )


def sentence_count(meta: Mapping[str, Any] | None) -> int | None:
    """The SENTENCE_COUNT a chunk's metadata holds, or None when it was written without one."""
    count = (meta or {}).get(SENTENCE_COUNT)
    return None if count is None else int(count)


def chunks_in(page: GetResult) -> list[Chunk]:
    """The chunks of a Chroma get() that included documents and metadatas."""
    return [
        chunk_from_record(i, d or "", dict(m or {}))
        for i, d, m in zip(page["ids"], page["documents"] or [], page["metadatas"] or [], strict=True)
    ]


class LRU(Generic[V]):
    """The most recently used values by chunk id, safe across threads.

    Chunk ids hash the chunk's content, so a cached value never goes stale; a deleted chunk's is dropped.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ids: Sequence[str]) -> dict[str, V]:
        """The cached values of these ids."""
        with self._lock:
            found = {i: self._values[i] for i in ids if i in self._values}
            for i in found:
                self._values.move_to_end(i)
        return found

    def put(self, values: dict[str, V]) -> None:
        """Remember these, forgetting the least recently used beyond the size."""
        with self._lock:
            self._values.update(values)
            while len(self._values) > self.size:
                self._values.popitem(last=False)

    def drop(self, ids: Sequence[str]) -> None:
        """Forget these ids."""
        with self._lock:
            for i in ids:
                self._values.pop(i, None)


class Store:
    """One collection in Chroma, reached lazily so that commands which never touch it stay fast."""

    def __init__(self, settings: Settings, embeddings: LocalEmbeddings) -> None:
        self.settings = settings
        self.embeddings = embeddings
        self._sentence_cache: LRU[SentenceVectors] = LRU(SENTENCE_CACHE_CHUNKS)
        # Each read chunk with its SENTENCE_COUNT (None when it was written without one).
        self._chunk_cache: LRU[tuple[Chunk, int | None]] = LRU(CHUNK_CACHE_CHUNKS)

    @property
    def location(self) -> str:
        """Where the data lives, for humans."""
        return self.settings.chroma_url or str((self.settings.home / "chroma").resolve())

    @cached_property
    def client(self) -> ClientAPI:
        """The Chroma client (connects on first use)."""
        return make_client(self.settings)

    @cached_property
    def collection(self) -> Collection:
        """The collection, created with cosine space and no Chroma-side embedding function."""
        with self.translate_errors():
            return self.client.get_or_create_collection(
                self.settings.collection,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
            )

    @cached_property
    def sentences(self) -> Collection:
        """The sibling collection of sentence vectors, one record per sentence of every chunk."""
        with self.translate_errors():
            return self.client.get_or_create_collection(
                sentence_collection_name(self.settings.collection),
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
            )

    @cached_property
    def vectorstore(self) -> ChunkVectorStore:
        """The collection as a LangChain VectorStore, embedding with our model and writing sentence vectors too."""
        from rag.vectorstore import ChunkVectorStore

        self.collection  # noqa: B018 - create it with our configuration before LangChain opens it
        return ChunkVectorStore(self.settings.collection, client=self.client, embeddings=self.embeddings, writer=self)

    def upsert(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        vectors: Sequence[PassageVectors],
    ) -> None:
        """Write chunks and their sentence vectors; sentences go first, so a chunk never lacks them."""
        sentence_ids: list[str] = []
        sentence_vectors: list[np.ndarray] = []
        sentence_meta: list[Metadata] = []
        for chunk_id, meta, passage in zip(ids, metadatas, vectors, strict=True):
            for n, ((start, end), vector) in enumerate(
                zip(passage.sentences.spans, passage.sentences.vectors, strict=True)
            ):
                sentence_ids.append(sentence_id(chunk_id, n))
                sentence_vectors.append(vector)
                sentence_meta.append(
                    {"chunk_id": chunk_id, "source": meta["source"], "title": meta["title"], "start": start, "end": end}
                )
        with self.translate_errors():
            for i in range(0, len(sentence_ids), MAX_CHROMA_BATCH):
                part = slice(i, i + MAX_CHROMA_BATCH)
                self.sentences.upsert(
                    ids=sentence_ids[part], embeddings=sentence_vectors[part], metadatas=sentence_meta[part]
                )
            for i in range(0, len(ids), MAX_CHROMA_BATCH):
                part = slice(i, i + MAX_CHROMA_BATCH)
                self.collection.upsert(
                    ids=list(ids[part]),
                    embeddings=[v.vector for v in vectors[part]],
                    metadatas=[
                        meta | {SENTENCE_COUNT: len(v.sentences.spans)}
                        for meta, v in zip(metadatas[part], vectors[part], strict=True)
                    ],
                    documents=list(texts[part]),
                )

    def translate_errors(self) -> Any:
        """A context manager for one-line errors: StoreUnavailable for a server's connection, StoreFull for no room."""
        return _StoreErrors(self)

    def forget_collections(self) -> None:
        """Drop the cached collection handles, so that the next use looks the collections up (or creates them) again."""
        for name in ("collection", "sentences", "vectorstore"):
            self.__dict__.pop(name, None)

    def count(self) -> int:
        """Chunks in the collection."""
        with self.translate_errors():
            return self.collection.count()

    def revision(self) -> str:
        """A token that changes whenever ingest changes the collection (shared by every client of a server)."""
        from chromadb.errors import NotFoundError

        with self.translate_errors():
            try:
                fresh = self.client.get_collection(self.settings.collection, embedding_function=None)
            except NotFoundError:
                return ""
        return str((fresh.metadata or {}).get(REVISION_KEY, ""))

    def bump_revision(self) -> str:
        """Mark the collection as changed, so every BM25 index built from it goes stale."""
        token = uuid.uuid4().hex
        with self.translate_errors():
            self.collection.modify(metadata={REVISION_KEY: token})
        return token

    def iter_chunks(self, *, ids: Sequence[str] | None = None, page_size: int = CHUNK_SCAN_PAGE) -> Iterator[Chunk]:
        """Every chunk in the collection, or those with these ids (missing ones skipped), in pages."""
        if ids is not None:
            for i in range(0, len(ids), page_size):
                with self.translate_errors():
                    page = self.collection.get(ids=list(ids[i : i + page_size]), include=["documents", "metadatas"])
                yield from chunks_in(page)
            return
        offset = 0
        while True:
            with self.translate_errors():
                page = self.collection.get(include=["documents", "metadatas"], limit=page_size, offset=offset)
            if not page["ids"]:
                return
            yield from chunks_in(page)
            offset += len(page["ids"])

    def chunk_ids(self, where: dict[str, Any] | None = None) -> set[str]:
        """Every chunk id in the collection, or those whose metadata match a Chroma filter (ids only: cheap)."""
        found: set[str] = set()
        while True:
            with self.translate_errors():
                page = self.collection.get(
                    where=cast("Where | None", where), include=[], limit=ID_SCAN_PAGE, offset=len(found)
                )
            if not page["ids"]:
                return found
            found.update(page["ids"])

    def sources_of(self, ids: Sequence[str]) -> dict[str, str]:
        """Each chunk's source, from its metadata (missing chunks are left out)."""
        out: dict[str, str] = {}
        for i in range(0, len(ids), MAX_CHROMA_BATCH):
            with self.translate_errors():
                page = self.collection.get(ids=list(ids[i : i + MAX_CHROMA_BATCH]), include=["metadatas"])
            out.update(
                (i, str((m or {}).get("source", ""))) for i, m in zip(page["ids"], page["metadatas"] or [], strict=True)
            )
        return out

    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids, in the order given (missing ones are skipped; recent ones are cached)."""
        by_id = self._chunk_cache.get(ids)
        missing = [i for i in ids if i not in by_id]
        if missing:
            with self.translate_errors():
                page = self.collection.get(ids=missing, include=["documents", "metadatas"])
            fetched = {
                chunk.id: (chunk, sentence_count(meta))
                for chunk, meta in zip(chunks_in(page), page["metadatas"] or [], strict=True)
            }
            self._chunk_cache.put(fetched)
            by_id |= fetched
        return [by_id[i][0] for i in ids if i in by_id]

    def chunks_containing(self, texts: Sequence[str], limit: int) -> list[Chunk]:
        """Up to `limit` chunks whose text contains any of these texts verbatim."""
        if not texts:
            return []
        clauses = [{"$contains": text} for text in texts]
        where_document = clauses[0] if len(clauses) == 1 else {"$or": clauses}
        with self.translate_errors():
            page = self.collection.get(
                where_document=cast("WhereDocument", where_document), include=["documents", "metadatas"], limit=limit
            )
        return chunks_in(page)

    def chunks_of(self, source: str) -> list[Chunk]:
        """Every chunk of one source, in no particular order."""
        with self.translate_errors():
            page = self.collection.get(where={"source": source}, include=["documents", "metadatas"])
        return chunks_in(page)

    def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id, and their sentence vectors."""
        for i in range(0, len(ids), MAX_CHROMA_BATCH):
            part = list(ids[i : i + MAX_CHROMA_BATCH])
            self._chunk_cache.drop(part)
            self._sentence_cache.drop(part)
            with self.translate_errors():
                self.collection.delete(ids=part)
                self.sentences.delete(where=of_chunks(part))

    def query_sentences(
        self, vector: Sequence[float], n: int, *, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """The n sentences nearest the vector, as (chunk id, cosine similarity)."""
        with self.translate_errors():
            # Ids only, no metadata: a sentence id names its chunk, and Chroma reading each hit's metadata cost
            # more than its search (400 hits over 100k sentences: 39 ms with metadata, 14 ms without).
            found = self.sentences.query(
                query_embeddings=[list(vector)],  # type: ignore[arg-type]  # chromadb's stubs want numpy
                n_results=n,
                where=where,
                include=["distances"],
            )
        ids, dists = found["ids"][0], (found["distances"] or [[]])[0]
        return [(chunk_of_sentence(i), 1.0 - float(d)) for i, d in zip(ids, dists, strict=True)]

    def sentence_vectors(self, chunk_ids: Sequence[str]) -> dict[str, SentenceVectors]:
        """Each chunk's sentence spans (offsets into the chunk) and unit vectors, in text order."""
        out = self._sentence_cache.get(chunk_ids)
        missing = [i for i in chunk_ids if i not in out]
        if not missing:
            return out
        counts = {i: count for i, (_, count) in self._chunk_cache.get(missing).items() if count is not None}
        by_id = [sentence_id(chunk_id, n) for chunk_id, count in counts.items() for n in range(count)]
        filtered = [i for i in missing if i not in counts]
        pages = []
        with self.translate_errors():
            for i in range(0, len(by_id), MAX_CHROMA_BATCH):
                part = by_id[i : i + MAX_CHROMA_BATCH]
                pages.append(self.sentences.get(ids=part, include=["embeddings", "metadatas"]))
            if filtered:
                pages.append(self.sentences.get(where=of_chunks(filtered), include=["embeddings", "metadatas"]))
        rows: dict[str, list[tuple[int, int, Any]]] = {}
        for page in pages:
            for meta, vector in zip(
                page["metadatas"] or [], page["embeddings"] if page["embeddings"] is not None else [], strict=True
            ):
                rows.setdefault(str(meta["chunk_id"]), []).append((int(meta["start"]), int(meta["end"]), vector))  # type: ignore[arg-type]
        fetched = {}
        for chunk_id, found in rows.items():
            found.sort(key=lambda row: row[0])
            fetched[chunk_id] = SentenceVectors(
                [(start, end) for start, end, _ in found], np.asarray([v for *_, v in found], dtype=np.float32)
            )
        self._sentence_cache.put(fetched)
        return out | fetched

    def documents(self) -> list[DocumentInfo]:
        """The indexed documents, grouped from chunk metadata (so server mode sees every client's ingests)."""
        by_source: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            with self.translate_errors():
                page = self.collection.get(include=["metadatas"], limit=CHUNK_SCAN_PAGE, offset=offset)
            if not page["ids"]:
                break
            for meta in page["metadatas"] or []:
                meta = dict(meta or {})
                entry = by_source.setdefault(str(meta.get("source", "")), {"meta": meta, "chunks": 0})
                entry["chunks"] += 1
            offset += len(page["ids"])
        infos = []
        for source, entry in sorted(by_source.items()):
            meta = entry["meta"]
            extra = {k: str(v) for k, v in meta.items() if k not in (*STORE_FIELDS, "ingested_at")}
            infos.append(
                DocumentInfo(
                    source=source,
                    title=str(meta.get("title", source)),
                    chunks=entry["chunks"],
                    ingested_at=str(meta.get("ingested_at", "")),
                    metadata=extra,
                )
            )
        return infos


class _StoreErrors:
    """One-line errors: StoreUnavailable for a lost server, StoreFull for no room, RagError for a lost collection."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, RagError) or not isinstance(exc, Exception):
            return
        import httpx
        from chromadb.errors import NotFoundError

        url, home = self.store.settings.chroma_url, self.store.settings.home
        if url is not None and isinstance(exc, httpx.TransportError | ConnectionError):
            raise StoreUnavailable(url, one_line(exc)) from exc
        if isinstance(exc, NotFoundError):
            # The server was reset or another client deleted the collection: our cached handle names a dead id.
            self.store.forget_collections()
            raise RagError(
                f"collection {self.store.settings.collection} is gone from {self.store.location} ({one_line(exc)}); "
                "the next request starts a new, empty one"
            ) from exc
        # Embedded Chroma, the record manager and the document texts all live under home.
        if is_out_of_room(exc, home):
            raise StoreFull(str(home.resolve()), room_left(home), one_line(exc)) from exc
        if url is not None and isinstance(exc, OSError):
            raise StoreUnavailable(url, one_line(exc)) from exc


_sound_files: set[Path] = set()  # SQLite files checked (or replaced) by this process
_sound_lock = threading.Lock()
_schemas: set[str] = set()  # database URLs whose text tables this process has created


def text_tables() -> tuple[Table, Table]:
    """The current texts and the staged ones, one row per (collection, source), same columns."""
    from sqlalchemy import Column, MetaData, Table, Text

    meta = MetaData()
    return tuple(  # type: ignore[return-value]
        Table(
            name,
            meta,
            Column("collection", Text, primary_key=True),
            Column("source", Text, primary_key=True),
            Column("title", Text),
            Column("text", Text),
            Column("pages", Text),
            Column("metadata", Text),
        )
        for name in ("documents", "staged")
    )


DOCUMENTS, STAGED = text_tables()


class DocumentTexts:
    """Full cleaned texts of ingested documents, so quotes are verified and shown in place.

    They live in RAG_DATABASE_URL when set (every replica then sees every text), else in home/documents.sqlite.
    Every chunk must satisfy `text[chunk.start:chunk.end] == chunk.text` against its document's stored text. An
    ingest that changes a document therefore *stages* the new text beside the current one, indexes, and only then
    *commits* it (see rag.corpus). Until the commit, the current text still fits every old chunk; an interrupted
    run leaves the staged text behind, and the next ingest or chat start repairs the pair (Corpus.repair).
    """

    def __init__(self, home: Path, collection: str, *, database_url: str | None = None) -> None:
        self.url = database_url or f"sqlite:///{(home / TEXTS_FILE).resolve()}"
        self.path = sqlite_file(self.url)
        self.collection = collection

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[Connection]:
        """A connection in one transaction (committed when `write`); a lost server is one line."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._check(self.path)
        engine = engine_for(self.url)
        with translate_errors(self.url):
            if self.url not in _schemas:
                create_tables(engine, [DOCUMENTS, STAGED])
                _schemas.add(self.url)
            with engine.begin() if write else engine.connect() as conn:
                yield conn

    def _check(self, path: Path) -> None:
        """Once per process: a corrupt file is moved aside with a one-line warning, never silently used."""
        with _sound_lock:
            if path.resolve() in _sound_files:
                return
            problem = sqlite_problem(path)
            if problem:
                aside = move_aside(path)
                _schemas.discard(self.url)
                log.warning(
                    "%s is corrupt (%s): moved to %s. Document texts cannot be rebuilt exactly from the chunks, so "
                    "quotes are checked against the chunks alone until you re-ingest your files (`rag ingest PATH`)",
                    path,
                    problem,
                    aside.name,
                )
            _sound_files.add(path.resolve())

    def _rows(self, docs: Sequence[Document]) -> list[dict[str, str]]:
        return [
            {
                "collection": self.collection,
                "source": doc.source,
                "title": doc.title,
                "text": doc.text,
                "pages": json.dumps([p.model_dump() for p in doc.pages]),
                "metadata": json.dumps(doc.metadata),
            }
            for doc in docs
        ]

    def put_many(self, docs: Sequence[Document]) -> None:
        """Store or replace documents' current texts, in one transaction (for texts that fit the indexed chunks)."""
        with self._connect(write=True) as conn:
            upsert(conn, DOCUMENTS, self._rows(docs))

    def stage_many(self, docs: Sequence[Document]) -> None:
        """Keep new texts beside the current ones until their chunks are indexed (then commit_staged)."""
        with self._connect(write=True) as conn:
            upsert(conn, STAGED, self._rows(docs))

    def commit_staged(self, sources: Sequence[str]) -> None:
        """Make these sources' staged texts current, in one transaction."""
        from sqlalchemy import delete, select

        with self._connect(write=True) as conn:
            for i in range(0, len(sources), SQL_BATCH):
                part = list(sources[i : i + SQL_BATCH])
                mine = (STAGED.c.collection == self.collection) & STAGED.c.source.in_(part)
                rows = [dict(r._mapping) for r in conn.execute(select(STAGED).where(mine))]
                upsert(conn, DOCUMENTS, rows)
                conn.execute(delete(STAGED).where(mine))

    def drop_staged(self, source: str) -> None:
        """Forget a staged text (its chunks never made it)."""
        from sqlalchemy import delete

        with self._connect(write=True) as conn:
            conn.execute(delete(STAGED).where((STAGED.c.collection == self.collection) & (STAGED.c.source == source)))

    def staged_sources(self) -> list[str]:
        """Sources whose new text is staged: an ingest of them was interrupted, or is running now."""
        return self._sources(STAGED)

    def sources(self) -> list[str]:
        """Sources with a current text."""
        return self._sources(DOCUMENTS)

    def _sources(self, table: Table) -> list[str]:
        from sqlalchemy import select

        with self._connect() as conn:
            return list(conn.execute(select(table.c.source).where(table.c.collection == self.collection)).scalars())

    def get(self, source: str, *, staged: bool = False) -> Document | None:
        """The stored (or staged) document for a source, if it was ingested."""
        from sqlalchemy import select

        table = STAGED if staged else DOCUMENTS
        query = select(table.c.source, table.c.title, table.c.text, table.c.pages, table.c["metadata"]).where(
            (table.c.collection == self.collection) & (table.c.source == source)
        )
        with self._connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return Document(
            source=row[0], title=row[1], text=row[2], pages=tuple(json.loads(row[3])), metadata=json.loads(row[4])
        )

    def delete(self, source: str) -> None:
        """Forget one document."""
        self.delete_many([source])

    def delete_many(self, sources: Sequence[str]) -> None:
        """Forget documents, current and staged texts alike."""
        from sqlalchemy import delete

        with self._connect(write=True) as conn:
            for i in range(0, len(sources), SQL_BATCH):
                part = list(sources[i : i + SQL_BATCH])
                for table in (DOCUMENTS, STAGED):
                    conn.execute(
                        delete(table).where((table.c.collection == self.collection) & table.c.source.in_(part))
                    )


def create_tables(engine: Engine, tables: Sequence[Table]) -> None:
    """Create missing tables; two processes racing to create them is fine (the loser finds them made)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    try:
        tables[0].metadata.create_all(engine, tables=list(tables))
    except (IntegrityError, ProgrammingError):  # PostgreSQL: "duplicate key ... pg_type" when another won the race
        tables[0].metadata.create_all(engine, tables=list(tables))


def upsert(conn: Connection, table: Table, rows: list[dict[str, str]]) -> None:
    """Insert rows, replacing those with the same (collection, source), in the database's own dialect."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        insert: Any = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        insert = sqlite_insert(table)
    columns = ("title", "text", "pages", "metadata")
    statement = insert.on_conflict_do_update(
        index_elements=["collection", "source"], set_={c: insert.excluded[c] for c in columns}
    )
    conn.execute(statement, rows)  # executemany: one statement per row, no variable limit


def sqlite_problem(path: Path) -> str | None:
    """Why an SQLite file is unusable (not a database, truncated, malformed), or None when it is sound or absent."""
    if not path.exists():
        return None
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        return one_line(exc)
    return None if rows == [("ok",)] else str(rows[0][0])


def move_aside(path: Path) -> Path:
    """Rename a damaged file (and its journal) out of the way, keeping it for inspection."""
    aside = path.with_name(f"{path.name}.corrupt-{uuid.uuid4().hex[:8]}")
    path.rename(aside)
    for suffix in ("-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return aside

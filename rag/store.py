"""Chroma (embedded or server) holding the chunks and vectors, plus a local store of full document texts."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rag.types import Chunk, Document, DocumentInfo, RagError, StoreUnavailable

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from langchain_chroma import Chroma

    from rag.embeddings import LocalEmbeddings
    from rag.settings import Settings

log = logging.getLogger(__name__)

# Chroma refuses larger upserts; see chromadb's max_batch_size.
MAX_CHROMA_BATCH = 5461
REVISION_KEY = "rag_revision"
# Chunk metadata fields that are ours; everything else is the document's own metadata.
CHUNK_FIELDS = ("source", "title", "start", "end", "page")

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


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
        metadata={k: str(v) for k, v in meta.items() if k not in CHUNK_FIELDS},
    )


class Store:
    """One collection in Chroma, reached lazily so that commands which never touch it stay fast."""

    def __init__(self, settings: Settings, embeddings: LocalEmbeddings) -> None:
        self.settings = settings
        self.embeddings = embeddings

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
    def vectorstore(self) -> Chroma:
        """The same collection as a LangChain VectorStore, embedding with our model."""
        from langchain_chroma import Chroma

        self.collection  # noqa: B018 - create it with our configuration before LangChain opens it
        return Chroma(
            collection_name=self.settings.collection,
            embedding_function=self.embeddings,
            client=self.client,
        )

    def translate_errors(self) -> Any:
        """A context manager that turns a Chroma server's connection failures into one-line StoreUnavailable."""
        return _StoreErrors(self.settings.chroma_url)

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

    def iter_chunks(self, *, page_size: int = MAX_CHROMA_BATCH) -> Iterator[Chunk]:
        """Every chunk in the collection, in pages."""
        offset = 0
        while True:
            with self.translate_errors():
                page = self.collection.get(include=["documents", "metadatas"], limit=page_size, offset=offset)
            ids = page["ids"]
            if not ids:
                return
            for chunk_id, text, meta in zip(ids, page["documents"] or [], page["metadatas"] or [], strict=True):
                yield chunk_from_record(chunk_id, text or "", dict(meta or {}))
            offset += len(ids)

    def query(
        self, vector: Sequence[float], n: int, *, where: dict[str, Any] | None = None
    ) -> list[tuple[Chunk, float]]:
        """The n nearest chunks with their cosine similarity."""
        with self.translate_errors():
            found = self.collection.query(
                query_embeddings=[list(vector)],  # type: ignore[arg-type]  # chromadb's stubs want numpy
                n_results=n,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
        ids, docs = found["ids"][0], (found["documents"] or [[]])[0]
        metas, dists = (found["metadatas"] or [[]])[0], (found["distances"] or [[]])[0]
        return [
            (chunk_from_record(i, d or "", dict(m or {})), 1.0 - float(dist))
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids, in the order given (missing ones are skipped)."""
        if not ids:
            return []
        with self.translate_errors():
            page = self.collection.get(ids=list(ids), include=["documents", "metadatas"])
        by_id = {
            i: chunk_from_record(i, d or "", dict(m or {}))
            for i, d, m in zip(page["ids"], page["documents"] or [], page["metadatas"] or [], strict=True)
        }
        return [by_id[i] for i in ids if i in by_id]

    def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id."""
        for i in range(0, len(ids), MAX_CHROMA_BATCH):
            with self.translate_errors():
                self.collection.delete(ids=list(ids[i : i + MAX_CHROMA_BATCH]))

    def documents(self) -> list[DocumentInfo]:
        """The indexed documents, grouped from chunk metadata (so server mode sees every client's ingests)."""
        by_source: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            with self.translate_errors():
                page = self.collection.get(include=["metadatas"], limit=MAX_CHROMA_BATCH, offset=offset)
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
            extra = {k: str(v) for k, v in meta.items() if k not in (*CHUNK_FIELDS, "ingested_at")}
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
    """Turn a Chroma server's connection failures into one-line StoreUnavailable errors."""

    def __init__(self, url: str | None) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or self.url is None or isinstance(exc, RagError):
            return
        import httpx

        if isinstance(exc, httpx.TransportError | ConnectionError | OSError):
            raise StoreUnavailable(self.url, one_line(exc)) from exc


class DocumentTexts:
    """Full cleaned texts of ingested documents, kept in home so the UI can show a quote in place."""

    def __init__(self, home: Path, collection: str) -> None:
        self.path = home / "documents.sqlite"
        self.collection = collection

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        db.execute(
            "CREATE TABLE IF NOT EXISTS documents (collection TEXT, source TEXT, title TEXT, text TEXT,"
            " pages TEXT, metadata TEXT, PRIMARY KEY (collection, source))"
        )
        return db

    def put_many(self, docs: Sequence[Document]) -> None:
        """Store or replace documents' texts, in one transaction."""
        rows = [
            (
                self.collection,
                doc.source,
                doc.title,
                doc.text,
                json.dumps([p.model_dump() for p in doc.pages]),
                json.dumps(doc.metadata),
            )
            for doc in docs
        ]
        with closing(self._connect()) as db, db:
            db.executemany("INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?)", rows)

    def get(self, source: str) -> Document | None:
        """The stored document for a source, if this machine ingested it."""
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT source, title, text, pages, metadata FROM documents WHERE collection = ? AND source = ?",
                (self.collection, source),
            ).fetchone()
        if row is None:
            return None
        return Document(
            source=row[0], title=row[1], text=row[2], pages=tuple(json.loads(row[3])), metadata=json.loads(row[4])
        )

    def delete(self, source: str) -> None:
        """Forget one document."""
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM documents WHERE collection = ? AND source = ?", (self.collection, source))

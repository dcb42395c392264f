"""The HTTP API: OpenAI-compatible chat completions with verified citations, search, documents, health, metrics."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.assistant import Assistant, with_as_of
from rag.dates import chunk_date, iso
from rag.retrieve import Method
from rag.settings import AnswerMode, ApiScope
from rag.store import sentence_collection_name
from rag.types import (
    Answer,
    Candidate,
    Citation,
    Conflict,
    DocumentInfo,
    IndexNotFound,
    RagError,
    ShortAnswer,
    StoreUnavailable,
    StreamEvent,
    TokenEvent,
)
from ui.auth import ApiKeys
from ui.uploads import Staging, UploadRefused, delete_document, ingest_uploads, sanitize_filename

log = logging.getLogger(__name__)

DEFAULT_MODEL = "rag"  # the `model` that names the default collection (RAG_COLLECTION)
ModelQuery = Annotated[str, Query(description="A collection, or `rag` for the default one (as in chat completions).")]
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "array",
                        "items": {"type": "string", "contentMediaType": "application/octet-stream"},
                        "description": "One or more files.",
                    }
                },
            }
        }
    },
}
# Upload failure reasons (ui.uploads) and the status each gets when every file of a request failed.
UPLOAD_STATUS = {"too_large": 413, "unsupported_type": 415, "invalid_file": 422}
# Starts the final delta of a stream whose tokens were withdrawn (see completion_chunks).
REPLACED_NOTICE = "\n\n[The text above could not be verified against the sources and is withdrawn. Answer:]\n\n"


class ApiError(Exception):
    """An error with its HTTP status, answered as OpenAI does: {"error": {"message", "type", "code"}}."""

    def __init__(self, status: int, message: str, *, code: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.code, self.kind = status, code, kind


def error_body(message: str, *, kind: str, code: str | int | None) -> dict[str, Any]:
    """The OpenAI error shape."""
    return {"error": {"message": message, "type": kind, "code": code}}


class ErrorDetail(BaseModel):
    """What went wrong, in one line, with a machine-readable code."""

    message: str
    type: str
    code: str | int | None


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "model": ErrorBody}
    for status, text in (
        (400, "a request the library refused (the message says why)"),
        (401, "no key, or a wrong one"),
        (403, "the key's scope does not allow this"),
        (404, "no such collection or document"),
        (422, "a bad request body"),
        (500, "an unexpected error (see the server log)"),
        (503, "the store is unreachable"),
    )
}


# -- request and response models --------------------------------------------------------------------------------


class ContentPart(BaseModel):
    """One part of a message's content; only text parts carry anything the assistant reads."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message of the conversation, as OpenAI clients send it."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        """The message's text, its text parts joined."""
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """POST /v1/chat/completions. Unknown OpenAI parameters (temperature, max_tokens, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(default=DEFAULT_MODEL, description="A collection, or `rag` for the default one.")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation; the last one is the question.")
    stream: bool = False
    k: int | None = Field(default=None, ge=1, le=100, description="Chunks handed to the answer step (extra_body).")
    where: dict[str, str] | None = Field(default=None, description="Metadata filter on chunks (extra_body).")
    mode: AnswerMode | None = Field(default=None, description="auto, extractive or llm (extra_body).")
    as_of: datetime.date | None = Field(default=None, description="Answer as of this ISO date (extra_body).")


class ChoiceMessage(BaseModel):
    """The assistant's message."""

    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: ChoiceMessage
    finish_reason: Literal["stop"] = "stop"


class AnswerFields(BaseModel):
    """What the assistant adds to OpenAI's shape, on a completion and on the last chunk of a stream."""

    citations: list[Citation] = Field(description="Every [n] marker's verified span of a source document.")
    status: Literal["answered", "uncertain", "abstained"]
    short_answer: ShortAnswer | None = None
    abstain_reason: str | None = None
    mode: Literal["extractive", "llm", "corpus"]
    notice: str | None = None
    llm_error: str | None = None
    as_of: str | None = Field(default=None, description="The date the question was answered as of, YYYY-MM-DD.")
    conflicts: list[Conflict] = Field(
        default_factory=list, description="Where cited sources disagree: each value with its date and citation."
    )

    @classmethod
    def of(cls, answer: Answer) -> dict[str, Any]:
        """The fields of an answer, as JSON-ready values."""
        return cls(
            citations=list(answer.citations),
            status=answer.status,
            short_answer=answer.short_answer,
            abstain_reason=answer.abstain_reason,
            mode=answer.mode,
            notice=answer.notice,
            llm_error=answer.llm_error,
            as_of=answer.as_of,
            conflicts=list(answer.conflicts),
        ).model_dump(mode="json")


class ChatCompletion(AnswerFields):
    """A chat.completion with the assistant's fields at the top level."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]


class ModelCard(BaseModel):
    """One collection, as OpenAI lists a model."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "rag"


class ModelList(BaseModel):
    """GET /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class SearchRequest(BaseModel):
    """POST /v1/search."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    k: int | None = Field(default=None, ge=1, le=100)
    method: Method = "hybrid"
    where: dict[str, str] | None = Field(
        default=None, description="Equality on metadata, plus `since`/`until` (YYYY-MM-DD) bounding document dates."
    )
    as_of: datetime.date | None = Field(default=None, description="Search as of this date: later documents unseen.")
    model: str = Field(default=DEFAULT_MODEL, description="A collection, or `rag` for the default one.")


class SearchHit(BaseModel):
    """One ranked chunk with every retriever's rank and score (None: that retriever missed it)."""

    rank: int
    chunk_id: str
    source: str
    title: str
    start: int
    end: int
    page: int | None
    date: str | None = Field(description="The document's date, YYYY-MM-DD, or None when it has none.")
    text: str
    fused_rank: int
    fused_score: float
    bm25_rank: int | None
    bm25_score: float | None
    vector_rank: int | None
    vector_score: float | None
    window_rank: int | None = Field(description="Rank among the documents of the query's time window, if any.")
    rerank_score: float | None

    @classmethod
    def of(cls, c: Candidate) -> SearchHit:
        """A candidate as a hit."""
        chunk = c.chunk
        return cls(
            rank=c.rank,
            chunk_id=chunk.id,
            source=chunk.source,
            title=chunk.title,
            start=chunk.start,
            end=chunk.end,
            page=chunk.page,
            date=iso(day) if (day := chunk_date(chunk.metadata)) else None,
            text=chunk.text,
            fused_rank=c.fused_rank,
            fused_score=c.fused_score,
            bm25_rank=c.bm25_rank,
            bm25_score=c.bm25_score,
            vector_rank=c.vector_rank,
            vector_score=c.vector_score,
            window_rank=c.window_rank,
            rerank_score=c.rerank_score,
        )


class SearchResults(BaseModel):
    """POST /v1/search's answer."""

    object: Literal["list"] = "list"
    data: list[SearchHit]
    scope: dict[str, str | None] = Field(
        description="The dates searched: as_of and where it came from, since, until, the query's time window."
    )


class DocumentEntry(BaseModel):
    """One indexed document; `id` is stable for its source path."""

    id: str
    source: str
    title: str
    chunks: int
    ingested_at: str
    metadata: dict[str, str]


class DocumentList(BaseModel):
    """GET /v1/documents."""

    object: Literal["list"] = "list"
    data: list[DocumentEntry]


class DocumentText(DocumentEntry):
    """GET /v1/documents/{id}: the metadata and the cleaned text citations point into."""

    text: str | None = Field(description="The cleaned text; None if this machine never ingested it.")


class UploadResult(BaseModel):
    """What happened to one uploaded file."""

    name: str
    status: Literal["added", "updated", "duplicate", "failed"]
    detail: str
    id: str | None = None


class UploadResults(BaseModel):
    """POST /v1/documents."""

    object: Literal["list"] = "list"
    data: list[UploadResult]
    chunks: int


class Deleted(BaseModel):
    """DELETE /v1/documents/{id}."""

    id: str
    deleted: bool = True
    chunks: int


class Health(BaseModel):
    """/healthz and /readyz."""

    status: Literal["ok"] = "ok"
    chunks: int | None = None


# -- the pieces behind the routes --------------------------------------------------------------------------------


def document_id(source: str) -> str:
    """A stable, URL-safe id for a source path."""
    return hashlib.sha256(source.encode()).hexdigest()[:32]


class Collections:
    """One warm Assistant per collection, sharing the default one's embedding model and settings."""

    def __init__(self, assistant: Assistant) -> None:
        self.default = assistant
        self._others: dict[str, Assistant] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The collections in the store (without their sentence siblings)."""
        store = self.default.store
        with store.translate_errors():
            names = sorted(c.name for c in store.client.list_collections())
        siblings = {sentence_collection_name(n) for n in names}
        return [n for n in names if n not in siblings]

    def get(self, model: str) -> Assistant:
        """The Assistant for a model name; ApiError 404 for a collection that does not exist."""
        if model in (DEFAULT_MODEL, self.default.settings.collection):
            return self.default
        with self._lock:
            if model not in self._others:
                if model not in self.names():
                    raise ApiError(
                        404, f"no collection named '{model}' (GET /v1/models lists them)", code="model_not_found"
                    )
                settings = self.default.settings.model_copy(update={"collection": model})
                self._others[model] = Assistant(settings, embeddings=self.default.embeddings)
            return self._others[model]


def split_conversation(messages: list[ChatMessage]) -> tuple[str, list[tuple[str, str]]]:
    """The question (the last user message) and the earlier (question, answer) pairs; system messages are ignored."""
    talk = [m for m in messages if m.role in ("user", "assistant")]
    if not talk or talk[-1].role != "user" or not talk[-1].text.strip():
        raise ApiError(422, "the last message must be a non-empty user message", code="invalid_messages")
    history: list[tuple[str, str]] = []
    question: str | None = None
    for message in talk[:-1]:
        if message.role == "user":
            question = message.text
        elif question is not None:  # an assistant message answers the user message before it
            history.append((question, message.text))
            question = None
    return talk[-1].text.strip(), history


def ask_kwargs(request: ChatRequest) -> dict[str, Any]:
    """The Assistant keywords a request sets."""
    return {"k": request.k, "mode": request.mode, "where": request.where, "as_of": request.as_of}


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rag_http_request_duration_seconds",
            "Time from request to the end of the response.",
            ["route"],
            registry=self.registry,
        )
        self.answers = Counter(
            "rag_answers", "Answers by graded status and mode.", ["status", "mode"], registry=self.registry
        )


class MetricsMiddleware:
    """Count each request and time it to the last byte of its response (streams included)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, noting its status and duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            # The route's template, not the path: ids would make one series per document.
            label = getattr(route, "path", None) or "chat-ui"
            self.metrics.requests.labels(scope["method"], label, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)


# -- streaming ----------------------------------------------------------------------------------------------------


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n".encode()


def completion_chunks(
    first: StreamEvent, events: Iterator[StreamEvent], *, chunk_id: str, model: str, metrics: Metrics
) -> Iterator[bytes]:
    """The SSE body: a role chunk, one chunk per token, a final chunk with the answer's fields, then [DONE].

    The deltas always join to text that ends with the final answer's text. When the streamed tokens are not the
    start of the final answer (a generated answer that failed verification, or an LLM that failed mid-stream, was
    replaced by extraction), the final chunk's delta is REPLACED_NOTICE and then the whole final answer, and the chunk
    says `"replaced": true`; its `answer` field always holds the final text alone, for clients that redraw.
    """
    created = int(time.time())

    def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> bytes:
        body = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return sse(body)

    yield chunk({"role": "assistant", "content": ""})
    shown = ""
    try:
        for event in _chain(first, events):
            if isinstance(event, TokenEvent):
                shown += event.text
                yield chunk({"content": event.text})
                continue
            answer = event.answer
            metrics.answers.labels(answer.status, answer.mode).inc()
            replaced = not answer.text.startswith(shown)
            rest = f"{REPLACED_NOTICE}{answer.text}" if replaced else answer.text[len(shown) :]
            yield chunk(
                {"content": rest} if rest else {},
                "stop",
                answer=answer.text,
                replaced=replaced,
                **AnswerFields.of(answer),
            )
    except Exception as exc:  # headers are out: the error becomes an event, which the openai client raises
        if not isinstance(exc, RagError):
            log.exception("streaming failed chunk_id=%s", chunk_id)
        _, kind, code = error_kind(exc)
        yield sse(error_body(str(exc) if isinstance(exc, RagError) else "internal error", kind=kind, code=code))
    yield sse("[DONE]")


def _chain(first: StreamEvent, rest: Iterator[StreamEvent]) -> Iterator[StreamEvent]:
    yield first
    yield from rest


def error_kind(exc: Exception) -> tuple[int, str, str]:
    """(status, type, code) for an exception from the library."""
    if isinstance(exc, ApiError):
        return exc.status, exc.kind, exc.code
    if isinstance(exc, StoreUnavailable):
        return 503, "service_unavailable", "store_unavailable"
    if isinstance(exc, IndexNotFound):
        return 404, "invalid_request_error", "index_not_found"
    if isinstance(exc, RagError):
        return 400, "invalid_request_error", "bad_request"
    return 500, "server_error", "internal_error"


# -- the app ------------------------------------------------------------------------------------------------------


def create_api(assistant: Assistant, *, keys: ApiKeys | None = None, warmed: threading.Event | None = None) -> FastAPI:
    """The API over one warm Assistant; keys (default: from its settings) guard every route but the probes.

    warmed: set when the assistant's warm-up (ui.app.warm_in_background) has ended; until then /readyz answers 503.
    """
    settings = assistant.settings
    keys = keys if keys is not None else ApiKeys.of(settings)
    collections = Collections(assistant)
    metrics = Metrics()
    app = FastAPI(
        title="rag",
        version="1",
        description="Answers from your documents with verified citations, OpenAI-compatible.",
        responses=ERROR_RESPONSES,
    )

    def require(needed: ApiScope) -> Any:
        # async: FastAPI runs a sync dependency in the threadpool, one more thread hop per request for a
        # check of microseconds (the hash compares do no I/O).
        async def check(request: Request) -> None:
            header = request.headers.get("authorization", "")
            scheme, _, presented = header.partition(" ")
            scope = keys.scope_of(presented.strip()) if scheme.lower() == "bearer" and presented.strip() else None
            if scope is None:
                raise ApiError(
                    401, "missing or wrong API key: send Authorization: Bearer <key>", code="invalid_api_key"
                )
            if not keys.allows(scope, needed):
                raise ApiError(
                    403,
                    f"this key's scope is {scope}; {needed} is needed",
                    code="insufficient_scope",
                    kind="permission_error",
                )

        return Depends(check)

    # Without keys there is nothing to check: no dependency at all, which FastAPI would still solve per request.
    read, write = ([require("read")], [require("write")]) if keys.required else ([], [])

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(error_body(str(exc), kind=exc.kind, code=exc.code), exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        if first.get("type") == "json_invalid":  # its loc is a character position, not a field
            where = "body"
        return JSONResponse(
            error_body(f"{where}: {first['msg']}", kind="invalid_request_error", code="invalid_request"), 422
        )

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (not UTF-8, broken multipart): a bad body
            message = "the body could not be parsed (send UTF-8 JSON, or multipart form data for uploads)"
            return JSONResponse(error_body(message, kind="invalid_request_error", code="invalid_request"), 422)
        return JSONResponse(
            error_body(str(exc.detail), kind="invalid_request_error", code=exc.status_code),
            exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RagError)
    async def on_rag_error(request: Request, exc: RagError) -> JSONResponse:
        status, kind, code = error_kind(exc)
        return JSONResponse(error_body(str(exc), kind=kind, code=code), status)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed path=%s", request.url.path)
        return JSONResponse(
            error_body("internal error (see the server log)", kind="server_error", code="internal_error"), 500
        )

    @app.post("/v1/chat/completions", response_model=ChatCompletion, dependencies=read)
    async def chat_completions(body: ChatRequest) -> Any:
        """Answer the last user message with the earlier ones as history; `stream: true` gives SSE chunks."""
        question, history = split_conversation(body.messages)
        target = collections.get(body.model)
        chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            events = target.stream(question, history=history, **ask_kwargs(body))
            # The first event before any header: a down store or an empty index still gets its status code.
            first = await run_in_threadpool(next, events)
            return StreamingResponse(
                completion_chunks(first, events, chunk_id=chunk_id, model=body.model, metrics=metrics),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        answer = await run_in_threadpool(lambda: target.ask(question, history=history, **ask_kwargs(body)))
        metrics.answers.labels(answer.status, answer.mode).inc()
        # A JSONResponse skips FastAPI re-validating what AnswerFields just built (about 1 ms a request);
        # response_model still documents the shape, and schemathesis checks it.
        return JSONResponse(
            {
                "id": chunk_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}
                ],
                **AnswerFields.of(answer),
            }
        )

    @app.get("/v1/models", response_model=ModelList, dependencies=read)
    def models() -> ModelList:
        """`rag` (the default collection) and every collection in the store."""
        names = [DEFAULT_MODEL, *(n for n in collections.names() if n != DEFAULT_MODEL)]
        return ModelList(data=[ModelCard(id=n) for n in names])

    @app.post("/v1/search", response_model=SearchResults, dependencies=read)
    def search(body: SearchRequest) -> SearchResults:
        """Ranked chunks with every retriever's rank and score, and the dates the search could see."""
        assistant = collections.get(body.model)
        where = with_as_of(body.where, body.as_of)
        with assistant.search.pinned():  # the scope's dates and the ranking from one BM25 snapshot, read once
            scope = assistant.search.scope(body.query, where).describe()  # a malformed date is a 400 here
            found = assistant.retrieve(body.query, k=body.k, method=body.method, where=where)
        return SearchResults(data=[SearchHit.of(c) for c in found], scope=scope)

    def entry(info: DocumentInfo) -> DocumentEntry:
        return DocumentEntry(
            id=document_id(info.source),
            source=info.source,
            title=info.title,
            chunks=info.chunks,
            ingested_at=info.ingested_at,
            metadata=info.metadata,
        )

    def find(target: Assistant, doc_id: str) -> DocumentInfo:
        for info in target.documents():
            if document_id(info.source) == doc_id:
                return info
        raise ApiError(404, f"no document with id '{doc_id}' (GET /v1/documents lists them)", code="document_not_found")

    @app.get("/v1/documents", response_model=DocumentList, dependencies=read)
    def list_documents(model: ModelQuery = DEFAULT_MODEL) -> DocumentList:
        """The indexed documents of a collection."""
        return DocumentList(data=[entry(d) for d in collections.get(model).documents()])

    @app.get("/v1/documents/{doc_id}", response_model=DocumentText, dependencies=read)
    def read_document(doc_id: str, model: ModelQuery = DEFAULT_MODEL) -> DocumentText:
        """One document's metadata and cleaned text."""
        target = collections.get(model)
        info = find(target, doc_id)
        doc = target.document(info.source)
        return DocumentText(**entry(info).model_dump(), text=doc.text if doc else None)

    @app.delete("/v1/documents/{doc_id}", response_model=Deleted, dependencies=write)
    def remove_document(doc_id: str, model: ModelQuery = DEFAULT_MODEL) -> Deleted:
        """Delete a document from the index (and its uploaded copy)."""
        target = collections.get(model)
        return Deleted(id=doc_id, chunks=delete_document(find(target, doc_id).source, target))

    @app.post(
        "/v1/documents",
        response_model=UploadResults,
        dependencies=write,
        openapi_extra={"requestBody": UPLOAD_BODY},
        responses={
            413: {"description": "a file or the request was too large, or every file was", "model": ErrorBody},
            415: {"description": "every file was of an unsupported type", "model": ErrorBody},
        },
    )
    async def upload_documents(request: Request, model: ModelQuery = DEFAULT_MODEL) -> Any:
        """Upload files (multipart `file` fields) with the chat's limits, name sanitising and duplicate detection.

        A request over RAG_MAX_UPLOAD_REQUEST_MB (by its Content-Length, or as it arrives) or a file over
        RAG_MAX_UPLOAD_MB is 413, and reading stops there: nothing of it is indexed. Otherwise, when every file fails,
        the answer is 415 (type) or 422 (empty, unreadable); else 200 with each file's outcome.
        """
        target = collections.get(model)
        request_limit = int(settings.max_upload_request_mb * 2**20)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > request_limit:
            raise ApiError(413, request_too_large(request_limit), code="request_too_large")
        staging = Staging(target.settings)
        try:
            await receive_files(request, staging, request_limit)
            report = await run_in_threadpool(ingest_uploads, staging.files, target)
        finally:
            staging.close()
        results = [
            UploadResult(name=o.name, status=o.status, detail=o.detail, id=document_id(o.source) if o.source else None)  # type: ignore[arg-type]
            for o in report.outcomes
        ]
        if report.outcomes and len(report.failed) == len(report.outcomes):
            first = report.failed[0]
            status = UPLOAD_STATUS.get(first.reason, 422)
            code = first.reason or "invalid_file"
            raise ApiError(status, f"{first.name}: {first.detail}", code=code)
        return UploadResults(data=results, chunks=report.chunks)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        """Liveness: the process answers."""
        return Health()

    @app.get(
        "/readyz", response_model=Health, responses={503: {"description": "warming up, store down or index not loaded"}}
    )
    def readyz() -> Health:
        """Readiness: the warm-up has ended, the store answers and the index is loaded."""
        if warmed is not None and not warmed.is_set():
            message = "not ready: loading the embedding model and the BM25 index"
            raise ApiError(503, message, code="warming_up", kind="service_unavailable")
        try:
            chunks = assistant.store.count()
            assistant.search.bm25()
        except RagError as exc:
            raise ApiError(503, f"not ready: {exc}", code="not_ready", kind="service_unavailable") from exc
        if chunks == 0:
            raise ApiError(503, "not ready: nothing is indexed yet", code="index_empty", kind="service_unavailable")
        return Health(chunks=chunks)

    @app.get("/metrics", dependencies=read, response_class=Response)
    def prometheus() -> Response:
        """Prometheus text: requests, latencies and answer statuses."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.state.keys = keys
    return app


def request_too_large(limit: int) -> str:
    """The refusal of an upload request over RAG_MAX_UPLOAD_REQUEST_MB."""
    return f"the upload is over the {limit / 2**20:g} MB request limit (RAG_MAX_UPLOAD_REQUEST_MB): send fewer files"


async def receive_files(request: Request, staging: Staging, limit: int) -> None:
    """Stream a multipart body's `file` parts into staging as they arrive.

    Nothing is spooled whole, and reading stops at the first byte over a limit (ApiError 413). Other fields are read
    past and ignored.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise ApiError(422, "send the files as multipart/form-data fields named file", code="invalid_request")
    steps: list[tuple[str, Any]] = []  # what the parser found in one read, applied off the event loop
    part: dict[str, Any] = {}

    def on_part_begin() -> None:
        part.clear()
        part.update(field=b"", value=b"", disposition=b"", is_file=False)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        if part["field"].lower() == b"content-disposition":
            part["disposition"] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_headers_finished() -> None:
        _, options = parse_options_header(part["disposition"])
        if options.get(b"name") == b"file" and b"filename" in options:
            part["is_file"] = True
            steps.append(("begin", options[b"filename"].decode("utf-8", "replace")))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part["is_file"]:
            steps.append(("write", data[start:end]))

    def on_part_end() -> None:
        if part["is_file"]:
            steps.append(("end", None))

    def apply(batch: list[tuple[str, Any]]) -> None:
        for step, value in batch:
            if step == "begin":
                staging.begin(value)
            elif step == "write":
                staging.write(value)
            else:
                staging.end()

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    received = 0
    try:
        async for block in request.stream():
            received += len(block)
            if received > limit:
                raise ApiError(413, request_too_large(limit), code="request_too_large")
            parser.write(block)
            if steps:
                batch = steps[:]
                steps.clear()
                await run_in_threadpool(apply, batch)
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(422, "the multipart body could not be parsed", code="invalid_request") from exc
    except UploadRefused as exc:
        raise ApiError(413, f"{sanitize_filename(staging.files[-1][1])}: {exc}", code=exc.reason) from exc
    if not staging.files:
        message = "file: no file fields in the upload (send multipart fields named file)"
        raise ApiError(422, message, code="invalid_request")

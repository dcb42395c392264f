"""The chat model: any OpenAI-compatible endpoint through ChatOpenAI, or a local GGUF served in-process by xllamacpp."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from rag.types import RagError

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

    from rag.settings import Settings

log = logging.getLogger(__name__)

# Local servers (llama.cpp, Ollama, vLLM, LM Studio) ignore the key, but the openai client refuses to run without one.
PLACEHOLDER_API_KEY = "not-needed"
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
# Room for the lean answer prompt (about 1,500 tokens of sources), a short history and the answer.
LOCAL_CONTEXT_TOKENS = 4096
LOCAL_STARTUP_TIMEOUT_S = 120.0
# Longest run of bytes without a newline from the endpoint. An SSE event is one line of a few hundred bytes, and the
# SSE decoder buffers a line whole before it yields anything, so without this cap a server that never ends a line
# would grow our memory until the deadline, which cannot interrupt a read.
MAX_LINE_BYTES = 2**20


class LineTooLong(httpx.RemoteProtocolError):
    """The endpoint sent more than MAX_LINE_BYTES without a newline."""


class LineCappedStream(httpx.SyncByteStream):
    """A response body that fails as soon as one line grows past the cap, instead of being buffered whole."""

    def __init__(self, inner: httpx.SyncByteStream, cap: int) -> None:
        self.inner = inner
        self.cap = cap

    def __iter__(self) -> Iterator[bytes]:
        run = 0  # bytes since the last newline
        for chunk in self.inner:
            newline = chunk.rfind(b"\n")
            run = len(chunk) - newline - 1 if newline >= 0 else run + len(chunk)
            if run > self.cap:
                raise LineTooLong(f"the server sent a line longer than {self.cap // 2**20} MiB")
            yield chunk

    def close(self) -> None:
        """Close the connection's stream."""
        self.inner.close()


class LineCappedTransport(httpx.HTTPTransport):
    """The default transport, with every response body read through LineCappedStream."""

    def __init__(self, *, cap: int = MAX_LINE_BYTES) -> None:
        super().__init__()
        self.cap = cap

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send as usual; the body is checked line by line as it is read."""
        response = super().handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=LineCappedStream(response.stream, self.cap),
            extensions=response.extensions,
            request=request,
        )


class LocalModelServer:
    """A llama.cpp server for one GGUF file, running inside this process on 127.0.0.1 and a free port."""

    def __init__(self, gguf: Path, *, alias: str) -> None:
        try:
            import xllamacpp
        except ImportError as exc:  # pragma: no cover - xllamacpp is a runtime dependency
            raise RagError("RAG_LLM_GGUF needs the xllamacpp package: pip install xllamacpp") from exc
        params = xllamacpp.CommonParams()
        params.model.path = str(gguf)
        params.model_alias = {alias}
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # 0: the OS picks a free port; listening_address reports it
        params.n_ctx = LOCAL_CONTEXT_TOKENS
        params.n_parallel = 1
        params.verbosity = -1  # llama.cpp logs every request to stderr otherwise
        # Half the cores we may run on (llama.cpp's physical-core rule): its threads meet at a barrier every layer, so
        # on a busy CPU one preempted thread stalls all the others. Measured here under load: 1 thread 15 tok/s,
        # 2 threads 4 tok/s on 2 cores.
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = max(1, len(os.sched_getaffinity(0)) // 2)
        self.gguf = gguf
        self.alias = alias
        self._server: Any = xllamacpp.Server(params)
        self.url = str(self._server.listening_address).rstrip("/")
        self._wait_until_healthy()

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, for ChatOpenAI(base_url=...)."""
        return f"{self.url}/v1"

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + LOCAL_STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.close()
        raise RagError(f"the local model server for {self.gguf} did not become ready in {LOCAL_STARTUP_TIMEOUT_S:.0f}s")

    def close(self) -> None:
        """Stop the server and free the model (dropping the last reference shuts xllamacpp's server down)."""
        self._server = None


_servers: dict[Path, LocalModelServer] = {}
_servers_lock = threading.Lock()


def serve_gguf(gguf: Path, *, alias: str | None = None) -> LocalModelServer:
    """The running local server for this GGUF file, started on first use and shared within the process."""
    path = gguf.expanduser().resolve()
    if not path.is_file():
        raise RagError(f"RAG_LLM_GGUF: no such file: {gguf}")
    with _servers_lock:
        server = _servers.get(path)
        if server is None:
            log.info("starting local model server gguf=%s", path)
            server = _servers[path] = LocalModelServer(path, alias=alias or path.stem)
        return server


def stop_local_servers() -> None:
    """Stop every local model server this process started (registered with atexit)."""
    with _servers_lock:
        for server in _servers.values():
            server.close()
        _servers.clear()


atexit.register(stop_local_servers)


def model_name(settings: Settings) -> str:
    """The model name sent to the endpoint: RAG_LLM_MODEL, else the GGUF file's name, else OpenAI's small model."""
    if settings.llm_model:
        return settings.llm_model
    if settings.llm_gguf:
        return settings.llm_gguf.stem
    # llama.cpp servers answer with whatever model they loaded; vLLM, Ollama and LM Studio need RAG_LLM_MODEL.
    return "default" if settings.llm_base_url else OPENAI_DEFAULT_MODEL


def describe_llm(settings: Settings) -> str | None:
    """A short human description of the configured model, without starting anything (None: no model)."""
    if not settings.is_llm_configured:
        return None
    if settings.llm_gguf:
        return f"{model_name(settings)} (local GGUF {settings.llm_gguf}, served by xllamacpp)"
    return f"{model_name(settings)} at {settings.llm_base_url or 'https://api.openai.com/v1'}"


def make_llm(settings: Settings, *, max_tokens: int | None = None) -> ChatOpenAI:
    """The chat model the settings name; a local GGUF is served first, then reached through the same client."""
    from langchain_openai import ChatOpenAI

    if settings.llm_gguf:
        base_url: str | None = serve_gguf(settings.llm_gguf, alias=model_name(settings)).base_url
        api_key = PLACEHOLDER_API_KEY
    else:
        base_url = settings.llm_base_url
        api_key = settings.llm_api_key or PLACEHOLDER_API_KEY
    return ChatOpenAI(
        model=model_name(settings),
        base_url=base_url,
        api_key=api_key,  # type: ignore[arg-type]
        timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        temperature=0,  # grounded answers: the most likely wording, and repeatable tests
        max_tokens=max_tokens or settings.llm_max_tokens,  # type: ignore[call-arg]
        stream_usage=True,  # the last chunk carries the prompt size in tokens
        http_client=httpx.Client(transport=LineCappedTransport(), follow_redirects=True),
    )

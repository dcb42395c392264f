"""`rag serve`: one process, one warm Assistant, serving the HTTP API and the Gradio chat at `/`."""

from __future__ import annotations

import logging
import threading

import gradio as gr
import uvicorn
from fastapi import FastAPI

from rag.assistant import Assistant
from rag.settings import Settings
from ui.api import create_api
from ui.app import CHAT_CONCURRENCY, build_app, page_kwargs, warm_in_background
from ui.auth import ApiKeys

log = logging.getLogger(__name__)


def create_server(
    assistant: Assistant, *, keys: ApiKeys | None = None, warmed: threading.Event | None = None
) -> FastAPI:
    """The API with the chat mounted at `/`; with keys, the chat asks for a login (any name, a write key).

    warmed: set when the assistant's warm-up has ended; until then /readyz answers 503.
    """
    keys = keys if keys is not None else ApiKeys.of(assistant.settings)
    app = create_api(assistant, keys=keys, warmed=warmed)
    demo = build_app(assistant)
    demo.queue(default_concurrency_limit=CHAT_CONCURRENCY)
    # The API's routes are registered first, so /v1/..., /healthz and /openapi.json are never the chat's.
    return gr.mount_gradio_app(
        app,
        demo,
        path="/",
        auth=keys.chat_login if keys.required else None,
        auth_message="Sign in with any user name and an API key of scope write as the password."
        if keys.required
        else None,
        **page_kwargs(assistant.settings),
    )


def create_app() -> FastAPI:
    """The server built from RAG_* variables: the factory each `--workers` process calls."""
    assistant = Assistant(Settings())
    return create_server(assistant, warmed=warm_in_background(assistant))


def serve(assistant: Assistant, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the server until Ctrl+C; several workers each build their own Assistant (server-mode Chroma only)."""
    # The access log is off: /metrics counts requests, and a log line per token-streaming request costs CPU.
    if workers > 1:
        uvicorn.run(
            "ui.server:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_level="warning",
        )
        return
    app = create_server(assistant, warmed=warm_in_background(assistant))
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")

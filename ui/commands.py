"""`rag chat` and `rag serve`: this package's sub-commands, registered through the `rag.commands` entry point."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rag.cli_support import CollectionOption, fail, load_settings, progress_bar
from rag.types import RagError

if TYPE_CHECKING:
    from rag.assistant import Assistant
    from ui.auth import ApiKeys

# A refused start (no keys beyond loopback, workers with the embedded store) is a usage error, like a bad option.
EXIT_USAGE = 2

HostOption = Annotated[str, typer.Option("--host", help="Address to listen on (beyond loopback, keys are required).")]
CorpusOption = Annotated[Path, typer.Option("--corpus", help="Ingested first when the index is empty.")]


def start(name: str, *, host: str, collection: str | None, corpus: Path, workers: int = 1) -> tuple[Assistant, ApiKeys]:
    """Check the address and keys, own the home, and fill an empty index from corpus: what both servers need first."""
    from rag.assistant import Assistant
    from rag.lock import EXIT_IN_USE, HomeInUse, claim_home
    from ui.auth import ApiKeys, InsecureBind, check_bind

    try:
        settings = load_settings(collection=collection)
        keys = ApiKeys.of(settings)
        check_bind(host, keys)  # before anything loads: a refusal is one line, at once
        if workers > 1 and not settings.is_server_mode:
            raise fail(
                "--workers above 1 needs a Chroma server (RAG_CHROMA_URL): embedded Chroma is single-process",
                code=EXIT_USAGE,
            )
        claim_home(settings, f"rag {name}")  # it serves and writes (uploads): no other process may write meanwhile
        assistant = Assistant.from_settings(settings)
    except InsecureBind as exc:
        raise fail(str(exc), code=EXIT_USAGE) from exc
    except HomeInUse as exc:
        raise fail(str(exc), code=EXIT_IN_USE) from exc
    except RagError as exc:
        raise fail(str(exc)) from exc
    try:
        from rag.corpus import repair_interrupted

        repair_interrupted(assistant.settings, assistant.store)
        if assistant.store.count() == 0 and corpus.is_dir():
            from ingest import ingest_paths

            typer.echo(f"The index is empty: ingesting {corpus}/ first.", err=True)
            with progress_bar(enabled=sys.stderr.isatty()) as progress:
                report = ingest_paths([corpus], settings=assistant.settings, store=assistant.store, progress=progress)
            for failure in report.failed:
                typer.echo(f"failed: {failure.path}: {failure.error}", err=True)
            typer.echo(f"Indexed {report.chunks} chunks.", err=True)
    except RagError as exc:  # e.g. the Chroma server is down: start anyway, each request shows the error
        typer.echo(f"warning: {exc}", err=True)
    return assistant, keys


def chat(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 7860,
    corpus: CorpusOption = Path("corpus"),
    collection: CollectionOption = None,
) -> None:
    """Open the web chat; an empty index is first filled from --corpus, with progress."""
    assistant, keys = start("chat", host=host, collection=collection, corpus=corpus)
    from ui.app import serve

    typer.echo(f"Chat on http://{host}:{port}/ (Ctrl+C stops it)", err=True)
    try:
        serve(assistant, host=host, port=port, auth=keys.chat_login if keys.required else None)
    except OSError as exc:  # port taken, address not available
        raise fail(f"cannot listen on {host}:{port}: {exc}") from exc


def serve(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Server processes (above 1 needs RAG_CHROMA_URL).")
    ] = 1,
    corpus: CorpusOption = Path("corpus"),
    collection: CollectionOption = None,
) -> None:
    """Serve the OpenAI-compatible HTTP API under /v1 and the chat at /, from one warm assistant."""
    assistant, _ = start("serve", host=host, collection=collection, corpus=corpus, workers=workers)
    from ui.server import serve as run_server

    typer.echo(f"API on http://{host}:{port}/v1 and the chat on http://{host}:{port}/ (Ctrl+C stops it)", err=True)
    try:
        run_server(assistant, host=host, port=port, workers=workers)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc}") from exc


def register(app: typer.Typer) -> None:
    """Add `chat` and `serve` to the `rag` command line (the `rag.commands` entry point)."""
    app.command()(chat)
    app.command()(serve)

"""`rag ...`: parse arguments, call the library, print. Subcommands import their packages lazily."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rag.types import RagError

app = typer.Typer(
    name="rag",
    help="Question answering over your documents, with verified citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CollectionOption = Annotated[
    str | None, typer.Option("--collection", "-c", help="Collection to use (default: RAG_COLLECTION).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def load_settings(**overrides: object) -> object:
    """Settings from the environment, with command-line overrides that were actually given."""
    from pydantic import ValidationError

    from rag.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise RagError(f"invalid setting {where}: {first['msg']}") from exc


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


@app.command()
def status(collection: CollectionOption = None, as_json: JsonOption = False) -> None:
    """Show where the data lives, what is indexed, and which models answer."""
    from rag.assistant import Assistant

    try:
        assistant = Assistant.from_settings(load_settings(collection=collection))  # type: ignore[arg-type]
        info = assistant.status()
    except RagError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"store:       {info['store_mode']} ({info['location']})")
    typer.echo(f"collection:  {info['collection']}")
    typer.echo(f"documents:   {info['documents']}")
    typer.echo(f"chunks:      {info['chunks']}")
    typer.echo(f"embeddings:  {info['embedding_model']}")
    typer.echo(f"answers:     {info['answer_mode']}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively).")],
    collection: CollectionOption = None,
    prune: Annotated[bool, typer.Option("--prune", help="Remove chunks of files under PATHS that are gone.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Load, chunk, embed and index documents. Unchanged files cost nothing; exit 1 if any file failed."""
    from ingest import ingest_paths
    from rag.assistant import Assistant

    try:
        assistant = Assistant.from_settings(load_settings(collection=collection))  # type: ignore[arg-type]
        with _progress_bar(enabled=not as_json and sys.stderr.isatty()) as progress:
            report = ingest_paths(paths, settings=assistant.settings, store=assistant.store, prune=prune, progress=progress)
    except RagError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        for failure in report.failed:
            typer.echo(f"failed: {failure.path}: {failure.error}", err=True)
        typer.echo(
            f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
            f"deleted {report.deleted} chunks; {len(report.failed)} files failed; {report.chunks} chunks indexed"
        )
    if report.failed:
        raise typer.Exit(code=1)


class _progress_bar:  # noqa: N801 - used as a context manager, reads like one
    """A rich progress bar with an ETA on a terminal; a no-op otherwise."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = None
        self._task = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
        )
        self._bar.start()
        self._task = self._bar.add_task("chunks", total=None)

        def update(done: int, total: int) -> None:
            self._bar.update(self._task, completed=done, total=total)  # type: ignore[union-attr, arg-type]

        return update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def main() -> None:
    """Console entry point."""
    import logging
    import os

    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()

"""`rag ingest`: this package's sub-command, registered through the `rag.commands` entry point."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rag.cli_support import (
    CollectionOption,
    JsonOption,
    fail,
    load_settings,
    progress_bar,
)
from rag.types import RagError


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively).")],
    collection: CollectionOption = None,
    prune: Annotated[bool, typer.Option("--prune", help="Remove chunks of files under PATHS that are gone.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Load, chunk, embed and index documents. Unchanged files cost nothing; exit 1 if any file failed."""
    try:
        from ingest import ingest_paths
        from rag.assistant import Assistant
        from rag.lock import EXIT_IN_USE, HomeInUse, claim_home

        settings = load_settings(collection=collection)
        claim_home(settings, "rag ingest")  # before any model loads: a refusal is instant
        assistant = Assistant.from_settings(settings)
        with progress_bar(enabled=not as_json and sys.stderr.isatty()) as progress:
            report = ingest_paths(
                paths, settings=assistant.settings, store=assistant.store, prune=prune, progress=progress
            )
    except HomeInUse as exc:
        raise fail(str(exc), code=EXIT_IN_USE) from exc
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


def register(app: typer.Typer) -> None:
    """Add `ingest` to the `rag` command line (the `rag.commands` entry point)."""
    app.command()(ingest)

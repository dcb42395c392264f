"""What every `rag` sub-command shares: settings from options, one-line failures, the progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from rag.types import RagError

if TYPE_CHECKING:
    from rag.settings import Settings

CollectionOption = Annotated[
    str | None, typer.Option("--collection", "-c", help="Collection to use (default: RAG_COLLECTION).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with command-line overrides that were actually given."""
    from pydantic import ValidationError

    from rag.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise RagError(f"invalid setting {where}: {first['msg']}") from exc


# Ctrl-C: the shell's code for SIGINT, and what a rerun does.
EXIT_INTERRUPTED = 130
INTERRUPTED = "interrupted: work committed so far is kept; run the same command again to finish"


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


@contextmanager
def progress_bar(*, enabled: bool, label: str = "indexing") -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar with an ETA on a terminal, yielding its update(done, total); None otherwise."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    # On stderr: stdout carries the result (JSON included), which a bar must never mix into.
    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=Console(stderr=True),
    )
    task = bar.add_task("chunks", total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update

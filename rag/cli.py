"""`rag ...`: the shell. It owns `ask` and `status`; other packages add theirs through `rag.commands` entry points."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer

from rag.cli_support import EXIT_INTERRUPTED, INTERRUPTED, CollectionOption, JsonOption, fail, load_settings
from rag.types import Answer, FinalEvent, IndexNotFound, RagError, StreamEvent, TokenEvent

# The entry-point group through which a package contributes sub-commands: a callable taking the Typer app.
COMMANDS_GROUP = "rag.commands"

app = typer.Typer(
    name="rag",
    help="Question answering over your documents, with verified citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def status(collection: CollectionOption = None, as_json: JsonOption = False) -> None:
    """Show where the data lives, what is indexed, and which models answer."""
    from rag.assistant import Assistant
    from rag.lock import EXIT_IN_USE, HomeInUse, reading

    try:
        settings = load_settings(collection=collection)
        with reading(settings):
            info = Assistant.from_settings(settings).status()
    except HomeInUse as exc:
        raise fail(str(exc), code=EXIT_IN_USE) from exc
    except RagError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"store:       {info['store_mode']} ({info['location']})")
    typer.echo(f"collection:  {info['collection']}")
    typer.echo(f"documents:   {info['documents']}")
    typer.echo(f"chunks:      {info['chunks']}")
    dates = info["dates"]
    if dates["dated_documents"]:
        span = f"{dates['oldest']} to {dates['newest']}"
        typer.echo(f"dates:       {span} ({dates['dated_documents']} of {info['documents']} documents dated)")
    else:
        typer.echo("dates:       none known")
    typer.echo(f"embeddings:  {info['embedding_model']} (ingest in {info['embedding_precision']})")
    typer.echo(f"answers:     {info['answer_mode']}")
    typer.echo(f"llm:         {info.get('llm_model') or 'none'}")


class BadHistory(RagError):
    """--history is not a JSON list of [question, answer] pairs (exit 2, like other usage errors)."""


def read_history(value: str | None) -> list[tuple[str, str]]:
    """Earlier turns from inline JSON or a JSON file path: [["question", "answer"], ...]."""
    if not value:
        return []
    try:
        # JSON first: Path.is_file() on a long inline answer raises "File name too long".
        turns = json.loads(value)
    except (ValueError, RecursionError) as json_error:
        try:
            text = Path(value).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            looks_inline = value.lstrip()[:1] in ("[", "{", '"')
            reason = f"invalid JSON: {json_error}" if looks_inline else f"no readable file: {_reason(exc)}"
            raise BadHistory(f"--history {reason}") from exc
        try:
            turns = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise BadHistory(f"--history file {value} is not JSON: {_reason(exc)}") from exc
    if not isinstance(turns, list) or not all(
        isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in turns
    ):
        raise BadHistory('--history must be a JSON list of ["question", "answer"] pairs of strings')
    return [(q, a) for q, a in turns]


def _reason(exc: BaseException) -> str:
    """A short one-line reason: an OSError's strerror (its str repeats the possibly huge file name)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    lines = str(exc).splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def format_answer(answer: Answer) -> str:
    """The answer, its short answer in bold (typer.echo drops the bold off a terminal), then the sources."""
    lines = [answer.text]
    if answer.short_answer:
        lines += ["", f"Short answer: {typer.style(answer.short_answer.text, bold=True)} [{answer.short_answer.n}]"]
    if answer.notice:
        lines += ["", f"note: {answer.notice}"]
    if answer.llm_error:
        lines.append(f"llm error: {answer.llm_error}")
    if answer.abstained and answer.abstain_reason:
        lines += ["", f"why: {answer.abstain_reason}"]
    if answer.citations:
        lines += ["", "Sources:"]
        for c in answer.citations:
            where = f", p. {c.page}" if c.page else ""
            flag = "" if c.is_supported else " (not supported by the source)"
            dated = c.date or "undated"
            lines.append(f"[{c.n}] {c.title}, {dated} ({c.source}{where}, chars {c.start}-{c.end}){flag}")
            lines.append(f"    “{c.quote}”")
    return "\n".join(lines)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOption = None,
    k: Annotated[int | None, typer.Option("--k", min=1, help="Chunks handed to the answer step.")] = None,
    history: Annotated[
        str | None,
        typer.Option("--history", help='Earlier turns: a JSON file or inline JSON, [["question", "answer"], ...].'),
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="llm, extractive or auto: llm when a model is set (RAG_MODE).")
    ] = None,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the answer as it is generated (with --json: one event a line).")
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Answer as of YYYY-MM-DD: later documents are unseen (default: today).", show_default=False
        ),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only documents dated YYYY-MM-DD or later.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only documents dated YYYY-MM-DD or earlier.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Answer QUESTION from the indexed documents, with numbered, verified citations."""
    from rag.assistant import Assistant
    from rag.dates import DateError, require_date
    from rag.lock import EXIT_IN_USE, HomeInUse, reading

    try:
        day = require_date(as_of, name="--as-of") if as_of is not None else None
        where = {key: value for key, value in (("since", since), ("until", until)) if value is not None} or None
        for key, value in (where or {}).items():
            require_date(value, name=f"--{key}")
    except DateError as exc:
        raise fail(str(exc), code=2) from exc
    try:
        turns = read_history(history)
        settings = load_settings(collection=collection, k=k, mode=mode)
        with reading(settings):  # another process (a chat) may own the home: read between its writes
            assistant = Assistant.from_settings(settings)  # type: ignore[arg-type]
            if stream:
                print_stream(assistant.stream(question, history=turns, where=where, as_of=day), as_json=as_json)
                return
            answer = assistant.ask(question, history=turns, where=where, as_of=day)
    except (IndexNotFound, BadHistory) as exc:
        raise fail(str(exc), code=2) from exc
    except HomeInUse as exc:
        raise fail(str(exc), code=EXIT_IN_USE) from exc
    except RagError as exc:
        raise fail(str(exc)) from exc
    typer.echo(json.dumps(answer.to_json_dict(), indent=2, ensure_ascii=False) if as_json else format_answer(answer))


def print_stream(events: Iterator[StreamEvent], *, as_json: bool) -> None:
    """Print tokens as they arrive, then the sources; a fallback answer that differs is printed whole."""
    shown = ""
    for event in events:
        if as_json:
            line = {"kind": "token", "text": event.text} if isinstance(event, TokenEvent) else {}
            if isinstance(event, FinalEvent):
                line = {"kind": "final", **event.answer.to_json_dict()}
            typer.echo(json.dumps(line, ensure_ascii=False))
        elif isinstance(event, TokenEvent):
            typer.echo(event.text, nl=False)
            sys.stdout.flush()
            shown += event.text
        elif shown and event.answer.text == shown:
            typer.echo(format_answer(event.answer)[len(shown) :])
        else:
            typer.echo(("\n\n" if shown else "") + format_answer(event.answer))


def register_commands(cli: typer.Typer) -> None:
    """Let every installed package add its sub-commands (`ingest`, `chat`, `serve`, `eval`, ...) to cli."""
    # Sorted: the order of `rag --help` must not depend on the order distributions are found in.
    for entry_point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name):
        entry_point.load()(cli)


register_commands(app)


def main() -> None:
    """Console entry point."""
    import logging
    import os

    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except SystemExit as done:
        # Typer ends any command that Ctrl-C reaches, at whatever point, with 130 and no word; say what it means.
        if done.code == EXIT_INTERRUPTED:
            typer.echo(f"error: {INTERRUPTED}", err=True)
        raise

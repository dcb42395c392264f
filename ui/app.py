"""The Gradio chat: streamed cited answers, a Sources panel, documents, and a retrieval inspector."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, cast

# Set before gradio is imported: it reads this flag at import time, and no page may phone home.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr

from rag.assistant import Assistant
from rag.dates import iso, require_date
from rag.llm import model_name
from rag.settings import AnswerMode
from rag.types import Answer, FinalEvent, RagError, TokenEvent
from ui import render
from ui.uploads import ALLOWED_SUFFIXES, delete_document, incoming_dir, ingest_uploads, upload_limit

log = logging.getLogger(__name__)

MODES = ("auto", "extractive", "llm")
# Chat events that may run at once; one Assistant serves them all (reads are thread-safe).
CHAT_CONCURRENCY = 16
# Each update resends the conversation; batching tokens this often keeps streaming smooth and cheap.
STREAM_INTERVAL_S = 0.05
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")
STATIC = Path(__file__).parent / "static"
INSPECTOR_EMPTY = '<div class="empty">Ask a question to see how its sources were found.</div>'


@dataclass(frozen=True)
class ChatTurn:
    """One question of a session and what came of it: an answer, or an error message."""

    question: str
    answer: Answer | None = None
    error: str | None = None


def history_of(turns: list[ChatTurn]) -> list[tuple[str, str]]:
    """The (question, answer) pairs the assistant uses for follow-ups; failed turns are left out."""
    return [(t.question, t.answer.text) for t in turns if t.answer is not None]


def chat_messages(turns: list[ChatTurn]) -> list[dict[str, str]]:
    """The Chatbot value for a session, rebuilt from its turns."""
    messages = []
    for number, turn in enumerate(turns, start=1):
        messages.append({"role": "user", "content": render.question_markdown(turn.question)})
        if turn.answer is not None:
            messages.append({"role": "assistant", "content": render.answer_markdown(turn.answer, number)})
        else:
            messages.append({"role": "assistant", "content": render.error_markdown(turn.error or "unknown error")})
    return messages


def answer_mode(value: str | None) -> AnswerMode | None:
    """A mode choice as the Assistant takes it; None (the settings' mode) when not given."""
    if not value:
        return None
    if value not in MODES:
        raise RagError(f"unknown mode '{value}' (choose one of {', '.join(MODES)})")
    return cast(AnswerMode, value)


def chunk_count(value: float | None) -> int | None:
    """A k choice as the Assistant takes it; None (the settings' k) when not given."""
    if value is None or value == "":
        return None
    if not 1 <= value <= 100 or value != int(value):
        raise RagError(f"k must be a whole number from 1 to 100, not {value}")
    return int(value)


def date_options(as_of: str | None, since: str | None, until: str | None) -> tuple[date | None, dict[str, str] | None]:
    """The settings' date controls as the Assistant takes them; DateError names a malformed one."""
    # The date picker gives "YYYY-MM-DD" (a typed value may carry a time after it).
    values = {
        name: (value or "").strip().split(" ")[0]
        for name, value in (("as of", as_of), ("since", since), ("until", until))
    }
    dates = {name: require_date(value, name=name) for name, value in values.items() if value}
    where: dict[str, str] = {name: iso(dates[name]) for name in ("since", "until") if name in dates}
    return dates.get("as of"), where or None


def failure_message(exc: Exception) -> str:
    """One line for the user; RagError messages already say what to do."""
    if isinstance(exc, RagError):
        return str(exc)
    detail = str(exc).splitlines()[0] if str(exc) else "no details"
    return f"unexpected {type(exc).__name__}: {detail} (see the server log)"


class ChatApp:
    """The handlers of one app; a single Assistant answers every session."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.settings = assistant.settings

    # -- header and documents ------------------------------------------------------------------

    def badge(self, mode: str) -> str:
        """The mode badge for a mode choice ('auto' resolves as the settings do)."""
        effective = self.assistant.answer_mode if mode == "auto" else mode
        return render.mode_badge(effective, model_name(self.settings) if self.settings.is_llm_configured else None)

    def refresh_documents(self) -> tuple[str, Any, str]:
        """The documents table, the picker's choices and the header count, read fresh from the store."""
        try:
            infos = self.assistant.documents()
        except RagError as exc:
            message = render.status_html(str(exc), kind="error")
            return message, gr.update(choices=[], value=None), message
        choices = [(f"{d.title} ({Path(d.source).name})", d.source) for d in infos]
        count = f"{len(infos)} documents · {sum(d.chunks for d in infos)} chunks"
        return render.documents_html(infos), gr.update(choices=choices, value=None), count

    def lookup(self, source: str) -> Any:
        """The stored full text of a source, or None when it is unavailable."""
        try:
            return self.assistant.document(source)
        except RagError:
            return None

    # -- chat ------------------------------------------------------------------------------------

    def respond(
        self,
        message: str,
        turns: list[ChatTurn],
        k: float,
        mode: str,
        as_of: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Iterator[tuple[Any, Any, Any, Any, list[ChatTurn]]]:
        """Stream one answer into the chat, then show its sources and retrieval details."""
        question = (message or "").strip()
        turns = list(turns or [])
        if not question:
            yield "", chat_messages(turns), gr.skip(), gr.skip(), turns
            return
        pending = [*chat_messages(turns), {"role": "user", "content": render.question_markdown(question)}]
        yield (
            "",
            [*pending, {"role": "assistant", "content": "*Searching the documents…*"}],
            gr.skip(),
            gr.skip(),
            turns,
        )
        text, answer, shown_at = "", None, 0.0
        try:
            day, where = date_options(as_of, since, until)
            for event in self.assistant.stream(
                question, history=history_of(turns), k=chunk_count(k), mode=answer_mode(mode), where=where, as_of=day
            ):
                if isinstance(event, TokenEvent):
                    text += event.text
                    if time.monotonic() - shown_at < STREAM_INTERVAL_S:
                        continue
                    shown_at = time.monotonic()
                    yield (
                        gr.skip(),
                        [*pending, {"role": "assistant", "content": render.partial_markdown(text)}],
                        gr.skip(),
                        gr.skip(),
                        turns,
                    )
                elif isinstance(event, FinalEvent):
                    answer = event.answer
        except Exception as exc:  # the UI edge: any failure becomes a chat message, and the app stays up
            if not isinstance(exc, RagError):
                log.exception("answering failed question=%r", question)
            turns.append(ChatTurn(question, error=failure_message(exc)))
            yield gr.skip(), chat_messages(turns), gr.skip(), gr.skip(), turns
            return
        if answer is None:
            turns.append(ChatTurn(question, error="the answer stream ended without a final answer"))
            yield gr.skip(), chat_messages(turns), gr.skip(), gr.skip(), turns
            return
        turns.append(ChatTurn(question, answer=answer))
        sources = render.sources_html([(t.question, t.answer) for t in turns], self.lookup)
        yield gr.skip(), chat_messages(turns), sources, render.inspector_html(question, answer), turns

    def chat_api(
        self, message: str, turns: list[ChatTurn], k: float | None, mode: str | None
    ) -> tuple[dict[str, Any], list[ChatTurn]]:
        """The `/chat` API: answer with this session's history; return the answer and its sources as JSON."""
        question = (message or "").strip()
        if not question:
            raise gr.Error("message is empty")
        turns = list(turns or [])
        try:
            answer = self.assistant.ask(question, history=history_of(turns), k=chunk_count(k), mode=answer_mode(mode))
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        turns.append(ChatTurn(question, answer=answer))
        return {**answer.to_json_dict(), "turn": len(turns)}, turns

    def new_chat(self) -> tuple[list[dict[str, str]], str, str, list[ChatTurn]]:
        """Forget this session's conversation."""
        return [], render.sources_html([], self.lookup), INSPECTOR_EMPTY, []

    # -- documents -------------------------------------------------------------------------------

    def upload(self, files: list[str] | None, progress: gr.Progress | None = None) -> tuple[Any, ...]:
        """Ingest uploaded files with a progress bar; report each file's outcome."""
        progress = progress or gr.Progress()
        paths = [Path(f) for f in files or []]
        if not paths:
            return (gr.skip(), *self.refresh_documents(), None)

        def step(done: int, total: int) -> None:
            progress((done, total), desc="Embedding and indexing chunks", unit="chunks")

        progress(0, desc=f"Reading {len(paths)} file(s)")
        try:
            report = ingest_uploads([(p, p.name) for p in paths], self.assistant, progress=step)
        except RagError as exc:
            return (render.status_html(f"Upload failed: {exc}", kind="error"), *self.refresh_documents(), None)
        rows = [(o.name, o.status, o.detail) for o in report.outcomes]
        return (render.upload_report_html(rows, chunks=report.chunks), *self.refresh_documents(), None)

    def delete(self, source: str | None) -> tuple[Any, ...]:
        """Delete the picked document from the index."""
        if not source:
            message = render.status_html("Pick a document to delete first.", kind="error")
            return (message, *self.refresh_documents(), render.document_html(None))
        try:
            removed = delete_document(source, self.assistant)
        except RagError as exc:
            return (render.status_html(f"Delete failed: {exc}", kind="error"), *self.refresh_documents(), gr.update())
        return (
            render.status_html(f"Deleted {Path(source).name} ({removed} chunks).", kind="done"),
            *self.refresh_documents(),
            render.document_html(None),
        )

    def read(self, source: str | None) -> str:
        """Show one document's whole text in the Documents tab."""
        return render.document_html(self.lookup(source) if source else None)


def build_app(assistant: Assistant) -> gr.Blocks:
    """The Blocks app over one Assistant."""
    settings = assistant.settings
    # Gradio copies every upload into its cache first; keep that inside RAG_HOME as well.
    os.environ["GRADIO_TEMP_DIR"] = str(incoming_dir(settings.home).resolve())
    incoming_dir(settings.home).mkdir(parents=True, exist_ok=True)
    app = ChatApp(assistant)
    # Gradio's copies of uploads are only needed until they are ingested; an hourly sweep drops any left behind.
    with gr.Blocks(title="rag · chat with your documents", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        turns = gr.State([])
        with gr.Row(elem_id="header", equal_height=True):
            gr.HTML('<div class="brand"><span class="logo">rag</span> answers from your documents, with sources</div>')
            badge = gr.HTML(app.badge(settings.mode), elem_id="mode-badge")
            doc_count = gr.HTML("", elem_id="doc-count")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Chat", id="chat"), gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=420):
                    chatbot = gr.Chatbot(
                        elem_id="chatbot",
                        label="Conversation",
                        show_label=False,
                        height=560,
                        buttons=["copy"],
                        feedback_options=None,
                        placeholder="Ask a question about the indexed documents. Every answer cites its sources.",
                        # Messages are escaped text plus our own [n] links (render.inert); these close what is left:
                        # no LaTeX, no custom tags, and Gradio's HTML sanitizer stays on.
                        latex_delimiters=[],
                        allow_tags=False,
                        sanitize_html=True,
                    )
                    with gr.Row(elem_id="ask-row"):
                        message = gr.Textbox(
                            elem_id="message",
                            placeholder="Ask about your documents…",
                            show_label=False,
                            container=False,
                            scale=6,
                            autofocus=True,
                        )
                        send = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="ask")
                        new_chat = gr.Button(
                            "New chat", variant="secondary", scale=1, min_width=110, elem_id="new-chat"
                        )
                    with gr.Accordion("Settings", open=False, elem_id="settings"):
                        k = gr.Slider(1, 20, value=settings.k, step=1, label="k: chunks handed to the answer step")
                        mode = gr.Radio(list(MODES), value=settings.mode, label="Answer mode", elem_id="mode")
                        with gr.Row():
                            as_of = gr.DateTime(
                                include_time=False,
                                type="string",
                                label="As of (empty: today, or the newest document)",
                                elem_id="as-of",
                            )
                            since = gr.DateTime(
                                include_time=False, type="string", label="Documents since", elem_id="since"
                            )
                            until = gr.DateTime(
                                include_time=False, type="string", label="Documents until", elem_id="until"
                            )
                with gr.Column(scale=2, min_width=320, elem_id="sources-col"):
                    gr.Markdown("### Sources", elem_id="sources-title")
                    sources = gr.HTML(render.sources_html([], app.lookup), elem_id="sources")
            with gr.Tab("Documents", id="documents"):
                documents = gr.HTML(elem_id="documents")
                upload = gr.File(
                    label=f"Add documents ({', '.join(ALLOWED_SUFFIXES)}; up to {settings.max_upload_mb:g} MB each)",
                    file_count="multiple",
                    file_types=list(ALLOWED_SUFFIXES),
                    elem_id="upload",
                )
                upload_status = gr.HTML(elem_id="upload-status")
                with gr.Row(equal_height=True):
                    picker = gr.Dropdown(label="Document", choices=[], scale=4, elem_id="doc-picker")
                    delete = gr.Button("Delete from index", variant="stop", scale=1, elem_id="delete")
                reader = gr.HTML(render.document_html(None), elem_id="reader")
            with gr.Tab("Retrieval inspector", id="inspector"):
                inspector = gr.HTML(INSPECTOR_EMPTY, elem_id="inspector")

        # The `/chat` API for gradio_client: same per-session history, plain JSON out.
        with gr.Group(visible=False):
            api_message = gr.Textbox(label="message")
            api_k = gr.Number(value=settings.k, precision=0, label="k")
            api_mode = gr.Dropdown(list(MODES), value=settings.mode, label="mode")
            api_answer = gr.JSON(label="answer")
            api_button = gr.Button()

        chat_outputs = [message, chatbot, sources, inspector, turns]
        chat_inputs = [message, turns, k, mode, as_of, since, until]
        for trigger in (message.submit, send.click):
            trigger(
                app.respond,
                chat_inputs,
                chat_outputs,
                api_visibility="private",
                concurrency_limit=CHAT_CONCURRENCY,
                concurrency_id="chat",
            )
        api_button.click(
            app.chat_api,
            [api_message, turns, api_k, api_mode],
            [api_answer, turns],
            api_name="chat",
            concurrency_limit=CHAT_CONCURRENCY,
            concurrency_id="chat",
        )
        for trigger in (new_chat.click, chatbot.clear):
            trigger(app.new_chat, None, [chatbot, sources, inspector, turns], api_visibility="private")
        mode.change(app.badge, mode, badge, api_visibility="private")
        doc_outputs = [documents, picker, doc_count]
        # ui.uploads.upload_queue runs one write at a time for the chat and the API; one Gradio slot for both events
        # keeps the waiting ones in Gradio's queue, which shows the user their place, instead of in a held thread.
        upload.upload(
            app.upload,
            upload,
            [upload_status, *doc_outputs, upload],
            api_visibility="private",
            concurrency_limit=1,
            concurrency_id="documents",
        )
        delete.click(
            app.delete,
            picker,
            [upload_status, *doc_outputs, reader],
            api_visibility="private",
            concurrency_limit=1,
            concurrency_id="documents",
        )
        picker.input(app.read, picker, reader, api_visibility="private")
        demo.load(app.refresh_documents, None, doc_outputs, api_visibility="private")
    return demo


def page_kwargs(settings: Any) -> dict[str, Any]:
    """What the page needs wherever it is served: local fonts only, no SSR node server, the upload limit, our CSS."""
    theme = gr.themes.Soft(primary_hue="indigo", neutral_hue="slate", font=SYSTEM_FONTS, font_mono=MONO_FONTS)
    return {
        "theme": theme,
        "css": (STATIC / "app.css").read_text(encoding="utf-8"),
        "head": "".join(
            f"<script>{(STATIC / name).read_text(encoding='utf-8')}</script>" for name in ("citations.js", "uploads.js")
        ),
        "max_file_size": upload_limit(settings),
        "ssr_mode": False,
        "footer_links": ["api"],
        "show_error": True,
    }


def launch_kwargs(settings: Any, *, host: str, port: int) -> dict[str, Any]:
    """Arguments for Blocks.launch: the page's, on host:port, never shared."""
    return {"server_name": host, "server_port": port, "share": False, **page_kwargs(settings)}


def warm_in_background(assistant: Assistant) -> threading.Event:
    """A long-lived server loads the torch model and the BM25 snapshot now, off the request path.

    NumPy answers until the model is in. The event is set when the warm-up has ended, however it ended (/readyz
    waits for it).
    """
    warmed = threading.Event()

    def warm() -> None:
        try:
            assistant.warm_up()
        except Exception:  # the app still answers: in NumPy, or with each request's own error
            log.exception("warm-up failed")
        finally:
            warmed.set()

    threading.Thread(target=warm, name="warm-up", daemon=True).start()
    return warmed


def serve(
    assistant: Assistant,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    auth: Callable[[str, str], bool] | None = None,
) -> gr.Blocks:
    """Build and start the app; with block=False return at once (tests, benchmarks) and call .close() later.

    auth: Gradio's login check (user, password), required when the chat listens beyond loopback.
    """
    warm_in_background(assistant)
    demo = build_app(assistant)
    demo.queue(default_concurrency_limit=CHAT_CONCURRENCY)
    demo.launch(
        prevent_thread_lock=not block,
        quiet=not block,
        auth=auth,
        **launch_kwargs(assistant.settings, host=host, port=port),
    )
    return demo

"""Uploads nobody planned for: a thousand files at once, names that collide once sanitised, a file that changes while
it is read, an empty file. Each gets one clear outcome, and another session's chat is answered meanwhile."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from ui.uploads import ingest_uploads, read_upload, uploads_dir

QUESTION = "How many additional police officers did Kenya send to Haiti?"
BOUND_S = 600  # far beyond any healthy run; only a deadlock reaches it


@pytest.fixture
def assistant(seeded_home: Path, embeddings: LocalEmbeddings, tmp_path: Path) -> Assistant:
    home = tmp_path / "rag"
    shutil.copytree(seeded_home, home)
    return Assistant(Settings(home=home), embeddings=embeddings)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_names_that_collide_once_sanitised_are_all_kept(tmp_path: Path, assistant: Assistant) -> None:
    texts = {
        "harbour notes.md": "The harbour pilot boards ships at the outer buoy.",
        "harbour_notes.md": "The harbour crane lifts forty containers an hour.",
        "harbour?notes.md": "The harbour ferry was repainted green in April.",
    }
    sub = tmp_path / "other"  # the same name from another folder, different bytes
    files = [(write(tmp_path / "in", name, text), name) for name, text in texts.items()]
    files.append((write(sub, "harbour notes.md", "The harbour master retires in June."), "harbour notes.md"))
    (uploads_dir(assistant.settings.home) / "harbour_notes-3.md").parent.mkdir(parents=True, exist_ok=True)
    (uploads_dir(assistant.settings.home) / "harbour_notes-3.md").write_text("kept earlier, not indexed")

    report = ingest_uploads(files, assistant)
    assert [(o.name, o.status) for o in report.outcomes] == [
        ("harbour_notes.md", "added"),
        ("harbour_notes-2.md", "added"),
        ("harbour_notes-4.md", "added"),  # -3 is taken by a file already kept
        ("harbour_notes-5.md", "added"),
    ]
    assert "'harbour_notes.md' saved as harbour_notes-2.md" in report.outcomes[1].detail
    kept = {o.name: Path(o.source or "").read_text() for o in report.outcomes}
    assert sorted(kept.values()) == sorted([*texts.values(), "The harbour master retires in June."])
    assert (uploads_dir(assistant.settings.home) / "harbour_notes-3.md").read_text() == "kept earlier, not indexed"
    indexed = {Path(d.source).name for d in assistant.documents()}
    assert set(kept) <= indexed


class ChangingFile:
    """A file handle whose file grows after each read, as when a writer is still busy with it."""

    def __init__(self, path: Path) -> None:
        self.path, self.handle = path, open(path, "rb")  # noqa: SIM115 (closed in __exit__)

    def __enter__(self) -> ChangingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def fileno(self) -> int:
        return self.handle.fileno()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        with open(self.path, "ab") as writer:
            writer.write(b" More words arrived while the upload was read.")
        return data


def test_a_file_that_changes_while_read_is_refused_and_others_go_in(
    tmp_path: Path, assistant: Assistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    growing = write(tmp_path / "in", "growing.md", "The tide gauge was calibrated in May.")
    steady = write(tmp_path / "in", "steady.md", "The lighthouse lamp was replaced in March.")
    real_open = Path.open

    def open_file(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return ChangingFile(self) if self == growing and mode == "rb" else real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_file)
    report = ingest_uploads([(growing, "growing.md"), (steady, "steady.md")], assistant)
    monkeypatch.undo()
    changed, kept = report.outcomes
    assert changed.status == "failed" and "changed while it was being read" in changed.detail
    assert kept.status == "added"
    assert not (uploads_dir(assistant.settings.home) / "growing.md").exists()
    # Once the writer is done, the same file goes in.
    assert read_upload(growing, "growing.md", max_bytes=10_000).startswith(b"The tide gauge")
    assert [o.status for o in ingest_uploads([(growing, "growing.md")], assistant).outcomes] == ["added"]


def test_a_thousand_files_at_once_each_get_an_outcome_while_another_chat_is_answered(
    tmp_path: Path, assistant: Assistant
) -> None:
    from ui.app import ChatApp

    folder = tmp_path / "in"
    files = [
        write(folder, f"note {i:04d}.txt", f"Field note {i}: buoy {i} was inspected on day {i % 365}.")
        for i in range(996)
    ]
    files += [
        write(folder, "empty.md", ""),
        write(folder, "clash a.md", "The pier lamp at the clash was relit."),
        write(folder, "clash_a.md", "The clash bell was rung at dawn."),
        write(folder, "tool.exe", "MZ"),
    ]
    app = ChatApp(assistant)
    mid_ingest, chat_done = threading.Event(), threading.Event()

    def progress(value: Any, **_: Any) -> None:
        # Hold the upload mid-ingest (after its first indexed batch) until the other session's chat is answered.
        if isinstance(value, tuple) and 0 < value[0] < value[1]:
            mid_ingest.set()
            chat_done.wait(BOUND_S)

    result: list[Any] = []
    upload = threading.Thread(target=lambda: result.append(app.upload([str(f) for f in files], progress)))
    upload.start()
    try:
        assert mid_ingest.wait(BOUND_S), "the upload never reached its indexing step"
        reply, _ = app.chat_api(QUESTION, [], None, "extractive")  # a second session, while the upload is held
        assert upload.is_alive(), "the upload finished before the chat was answered"
        assert "270" in reply["answer"] and reply["citations"]
    finally:
        chat_done.set()
        upload.join(BOUND_S)
    assert not upload.is_alive()
    report_html = result[0][0]
    rows = re.findall(r"<tr><td><b>(.*?)</b></td><td><span class=\"pill (\w+)\">", report_html)
    assert len(rows) == 1000
    statuses = dict(rows)
    assert statuses["empty.md"] == "failed" and "the file is empty" in report_html
    assert statuses["tool.exe"] == "failed" and "not accepted" in report_html
    assert statuses["clash_a.md"] == "added" and statuses["clash_a-2.md"] == "added"
    assert sum(s == "added" for s in statuses.values()) == 998
    assert "998 of 1000 file(s) are in the index" in report_html
    names = {Path(d.source).name for d in assistant.documents()}
    assert {"note_0000.txt", "note_0995.txt", "clash_a.md", "clash_a-2.md"} <= names
    answer = assistant.ask("When was buoy 731 inspected?", mode="extractive")
    assert "buoy 731 was inspected on day 1" in answer.text

"""A disk that fills up during `rag ingest`: one line, a non-zero exit, and the earlier documents stay readable.

Two ways to run out of room: a small tmpfs as RAG_HOME (needs root with CAP_SYS_ADMIN; skipped without), and a file
size limit (RLIMIT_FSIZE, which any user can set on a child process) with SIGXFSZ ignored, so a write past it fails
with EFBIG instead of killing the process.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import CORPUS

from ingest.load import find_files
from rag.corpus import make_record_manager
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.store import DocumentTexts, Store

RAG = shutil.which("rag", path=str(Path(sys.executable).parent)) or "rag"
QUESTION = "How many additional police officers did Kenya send to Haiti?"
FILES = 200  # three sentences each: their vectors alone need more than ROOM
ROOM = 256 * 2**10
TMPFS_BYTES = 8 * 2**20
SEED_DOCUMENTS = len(list(find_files([CORPUS])))


def write_bulletins(folder: Path) -> Path:
    for n in range(FILES):
        path = folder / f"{n // 100:02d}" / f"bulletin-{n:04d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"Bulletin {n} was issued on day {n % 28 + 1}. The road board paid {n * 7919 % 10007} shillings. "
            f"Work on section {n} starts next week.\n"
        )
    return folder


def largest_file(folder: Path) -> int:
    return max(f.stat().st_size for f in folder.rglob("*") if f.is_file())


class Room:
    """A RAG_HOME with ROOM bytes left to write in: `preexec` for the ingest process, `free()` gives space back."""

    def __init__(self, home: Path, preexec: Callable[[], None] | None, free: Callable[[], None]) -> None:
        self.home, self.preexec, self.free = home, preexec, free


@pytest.fixture(params=["tmpfs", "rlimit"])
def room(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Room]:
    """A home holding the seed corpus, then almost full."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    home = mount / "rag"
    if request.param == "tmpfs":
        made = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount)], capture_output=True, text=True
        )
        if made.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); the rlimit case still runs")
    try:
        # In a process of its own: an embedded ingest makes its process the home's owner until it exits.
        seeded = subprocess.run(
            [RAG, "ingest", str(CORPUS)], env=os.environ | {"RAG_HOME": str(home)}, capture_output=True, timeout=600
        )
        assert seeded.returncode == 0, seeded.stderr
        if request.param == "tmpfs":
            ballast = mount / "ballast"
            ballast.write_bytes(b"\0" * (shutil.disk_usage(mount).free - ROOM))
            yield Room(home, None, ballast.unlink)
        else:
            limit = largest_file(home) + ROOM

            def preexec() -> None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited through exec: EFBIG, not a dead process
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

            yield Room(home, preexec, lambda: None)
    finally:
        if request.param == "tmpfs":
            subprocess.run(["umount", "-l", str(mount)], check=False)


def rag(room: Room, *args: str, limited: bool = False) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"RAG_HOME": str(room.home)}
    return subprocess.run(
        [RAG, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=room.preexec if limited else None,  # only signal and rlimit calls: safe after fork
    )


def assert_answers_from_earlier_documents(room: Room) -> None:
    asked = rag(room, "ask", QUESTION, "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "270" in answer["answer"] and answer["citations"]
    texts = DocumentTexts(room.home, "corpus")
    for citation in answer["citations"]:
        document = texts.get(citation["source"])
        assert document is not None and document.text[citation["start"] : citation["end"]] == citation["quote"]


def test_disk_full_during_ingest(room: Room, tmp_path: Path) -> None:
    docs = write_bulletins(tmp_path / "docs")
    full = rag(room, "ingest", str(docs), limited=True)
    assert full.returncode == 1
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no space left for the index in"), full.stderr

    # Still full: a question either reads the earlier documents or says why it cannot, in one line.
    while_full = rag(room, "ask", QUESTION, limited=True)
    if while_full.returncode != 0:
        assert while_full.stderr.strip().startswith("error: no space left") and "Traceback" not in while_full.stderr
    else:
        assert "270" in while_full.stdout

    room.free()
    assert_answers_from_earlier_documents(room)
    status = rag(room, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["documents"] >= SEED_DOCUMENTS

    rerun = rag(room, "ingest", str(docs), "--json")
    assert rerun.returncode == 0, rerun.stderr
    settings = Settings(home=room.home)
    store = Store(settings, LocalEmbeddings())
    stored = [c.id for c in store.iter_chunks()]
    assert len(stored) == len(set(stored)) == store.count() == json.loads(rerun.stdout)["chunks"]
    assert len({c.source for c in store.iter_chunks()}) == FILES + SEED_DOCUMENTS, "every bulletin and the seed, once"
    assert set(make_record_manager(settings).list_keys()) == set(stored), "the record manager agrees with the store"
    assert_answers_from_earlier_documents(room)

"""Two real processes on one embedded RAG_HOME: the owner keeps working, the other is refused in one line or reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import CORPUS, LIBRARY_DOC, free_port, wait_until_up

from rag import lock
from rag.lock import EXIT_IN_USE, HomeInUse, claim_home, reading, writing
from rag.settings import Settings

RAG = shutil.which("rag", path=str(Path(sys.executable).parent)) or "rag"
QUESTION = "How many additional police officers did Kenya send to Haiti?"
# A process that takes a lock the way the CLI does, says so, and keeps it until killed.
HOLDER = """
import sys, time
from rag.lock import claim_home, reading, writing
from rag.settings import Settings
settings = Settings(home=sys.argv[1])
if sys.argv[2] == "owner":
    claim_home(settings, "rag chat")
held = writing(settings, "rag ingest") if sys.argv[2] == "write" else reading(settings)
if sys.argv[2] != "owner":
    held.__enter__()
print("held", flush=True)
time.sleep(600)
"""


def rag(*args: str, home: Path, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAG, *args], env=os.environ | {"RAG_HOME": str(home)}, capture_output=True, text=True, timeout=timeout_s
    )


@contextmanager
def holding(home: Path, how: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the home's lock: "owner", "write" or "read"."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home), how], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held", proc.stderr
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_owner_is_refused_at_once_in_one_line_and_a_killed_owner_leaves_no_lock(tmp_path: Path) -> None:
    home = tmp_path / "rag"
    with holding(home, "owner") as owner:
        refused = rag("ingest", str(CORPUS), home=home, timeout_s=60)
        assert refused.returncode == EXIT_IN_USE
        line = refused.stderr.strip()
        assert line.count("\n") == 0 and "Traceback" not in line, refused.stderr
        assert f"is in use by `rag chat` (pid {owner.pid})" in line
        assert "Documents tab" in line and "RAG_CHROMA_URL" in line
        assert not (home / "chroma").exists(), "refused before touching the store"
    # The owner died with kill -9: the kernel dropped its flock, so the home is free again.
    claim_home(Settings(home=home), "test")
    assert lock.owns_home(Settings(home=home))


def test_a_reader_waits_out_a_write_then_gives_up_naming_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "rag"
    monkeypatch.setattr(lock, "READ_WAIT_S", 0.3)
    with holding(home, "write") as writer:
        written_by = rf"being written by `rag ingest` \(pid {writer.pid}\)"
        with pytest.raises(HomeInUse, match=written_by), reading(Settings(home=home)):
            pass
    with reading(Settings(home=home)):  # the write ended: reading goes ahead
        pass


def test_a_write_waits_for_readers_then_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "rag"
    home.mkdir()
    monkeypatch.setattr(lock, "WRITE_WAIT_S", 0.3)
    with (
        holding(home, "read"),
        pytest.raises(HomeInUse, match="being read by another process"),
        writing(Settings(home=home)),
    ):
        pass
    with writing(Settings(home=home)), writing(Settings(home=home)):  # nested writes of one process: one lock
        assert lock.owns_home(Settings(home=home))


def test_server_mode_has_no_owner(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "rag", chroma_url="http://127.0.0.1:9")
    claim_home(settings)
    assert not lock.owns_home(settings) and not (tmp_path / "rag" / "lock").exists()


@pytest.mark.timeout(900)
def test_rag_ingest_beside_a_running_chat_is_refused_and_the_chat_keeps_answering(
    seeded_home: Path, tmp_path: Path
) -> None:
    from gradio_client import Client

    home = tmp_path / "rag"
    shutil.copytree(seeded_home, home)
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "library.md").write_text(LIBRARY_DOC, encoding="utf-8")
    port = free_port()
    log = (tmp_path / "chat.log").open("wb")
    chat = subprocess.Popen(
        [RAG, "chat", "--port", str(port)],
        env=os.environ | {"RAG_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", timeout_s=240, process=chat)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        before = client.predict(message=QUESTION, api_name="/chat")
        assert "270" in before["answer"] and before["citations"]

        refused = rag("ingest", str(folder), home=home, timeout_s=60)
        assert refused.returncode == EXIT_IN_USE, refused.stderr
        assert refused.stderr.strip() == (
            f"error: RAG_HOME {home} is in use by `rag chat` (pid {chat.pid}): upload files in its Documents tab, "
            "stop it first, or run a Chroma server and set RAG_CHROMA_URL"
        )
        # Reading beside the chat is allowed, and leaves it intact.
        asked = rag("ask", QUESTION, "--json", home=home)
        assert asked.returncode == 0, asked.stderr
        assert "270" in json.loads(asked.stdout)["answer"]
        status = rag("status", "--json", home=home)
        assert status.returncode == 0 and json.loads(status.stdout)["documents"] == 1, status.stderr

        after = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(message=QUESTION, api_name="/chat")
        assert after["answer"] == before["answer"] and after["citations"] == before["citations"]
    finally:
        chat.terminate()
        chat.wait(timeout=60)
        log.close()
    # The refused ingest added nothing; once the chat has stopped, the same ingest goes through.
    assert json.loads(rag("status", "--json", home=home).stdout)["documents"] == 1
    done = rag("ingest", str(folder), "--json", home=home)
    assert done.returncode == 0 and json.loads(done.stdout)["added"] == 1, done.stderr


def test_with_a_chroma_server_writes_from_one_home_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # records.sqlite, documents.sqlite and bm25/ stay in the home even when Chroma is a server.
    home = tmp_path / "rag"
    monkeypatch.setattr(lock, "WRITE_WAIT_S", 0.3)
    holder = HOLDER.replace("Settings(home=sys.argv[1])", "Settings(home=sys.argv[1], chroma_url='http://127.0.0.1:9')")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(home), "write"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        settings = Settings(home=home, chroma_url="http://127.0.0.1:9")
        written_by = rf"being written by `rag ingest` \(pid {proc.pid}\)"
        with pytest.raises(HomeInUse, match=written_by), writing(settings):
            pass
        with reading(settings):  # readers take no lock: the server serialises Chroma
            pass
    finally:
        proc.kill()
        proc.wait()
    with writing(Settings(home=home, chroma_url="http://127.0.0.1:9")):
        pass

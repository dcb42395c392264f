"""`rag ingest` and `rag status` as real processes: JSON summaries, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CORPUS, free_port

from rag.embeddings import LocalEmbeddings

RAG = shutil.which("rag", path=str(Path(sys.executable).parent)) or "rag"


def rag(*args: str, home: Path, timeout_s: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `rag` console script with a temp home and extra RAG_* variables."""
    return subprocess.run(
        [RAG, *args],
        env=os.environ | {"RAG_HOME": str(home)} | env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_ingest_json_twice_second_run_changes_nothing_and_loads_no_model(tmp_path: Path) -> None:
    home = tmp_path / "rag"
    first = rag("ingest", str(CORPUS), "--json", home=home)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert set(summary) == {"added", "updated", "unchanged", "deleted", "failed", "chunks"}
    assert summary["added"] == summary["chunks"] > 0
    assert summary["failed"] == []

    # A model path that does not exist: the run only succeeds if no embedding model is loaded at all.
    second = rag("ingest", str(CORPUS), "--json", home=home, RAG_EMBED_MODEL=str(tmp_path / "no-such-model"))
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again == {**summary, "added": 0, "unchanged": summary["added"]}

    status = rag("status", "--json", home=home)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["store_mode"] == "embedded"
    assert info["collection"] == "corpus"
    assert info["documents"] == 1
    assert info["chunks"] == summary["chunks"]
    assert info["embedding_model"] == "all-MiniLM-L6-v2"
    assert info["embedding_precision"] == LocalEmbeddings().bulk_precision
    assert Path(info["home"]) == home.resolve()
    assert Path(info["location"]) == (home / "chroma").resolve()


def test_status_of_an_empty_home_says_zero(tmp_path: Path) -> None:
    result = rag("status", "--json", home=tmp_path / "rag", RAG_COLLECTION="empty-one")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["collection"], info["documents"], info["chunks"]) == ("empty-one", 0, 0)


def test_bad_files_are_listed_one_line_each_and_exit_code_is_1(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.md").write_text("# Good\n\nThe bridge over the Tana river reopened on Monday after repairs.\n")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(b"\x7fELF\x00\x00\x00" * 50)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.5\nnot a real pdf body\n")
    home = tmp_path / "rag"

    text = rag("ingest", str(folder), home=home)
    assert text.returncode == 1
    failed_lines = [line for line in text.stderr.splitlines() if line.startswith("failed: ")]
    assert sorted(Path(line.split(": ")[1]).name for line in failed_lines) == ["binary.txt", "corrupt.pdf", "empty.txt"]
    assert "Traceback" not in text.stderr
    assert "added 1," in text.stdout and "3 files failed" in text.stdout

    as_json = rag("ingest", str(folder), "--json", home=home)
    assert as_json.returncode == 1
    summary = json.loads(as_json.stdout)
    assert sorted(Path(f["path"]).name for f in summary["failed"]) == ["binary.txt", "corrupt.pdf", "empty.txt"]
    assert (summary["added"], summary["unchanged"], summary["chunks"]) == (0, 1, 1)


def test_missing_path_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    result = rag("ingest", str(tmp_path / "nowhere.txt"), home=tmp_path / "rag")
    assert result.returncode == 1
    assert "nowhere.txt" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["ingest", "--no-such-option", "corpus"], ["ingest"], ["status", "--bogus"]])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = rag(*args, home=tmp_path / "rag")
    assert result.returncode == 2
    assert "Usage:" in result.stderr
    assert not (tmp_path / "rag").exists(), "a usage error must not touch the data"


@pytest.mark.parametrize("command", [["ingest", str(CORPUS)], ["status"]])
def test_chroma_server_down_is_one_line_naming_the_url(tmp_path: Path, command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = rag(*command, home=tmp_path / "rag", RAG_CHROMA_URL=url)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: ") and url in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.server
def test_ingest_and_status_against_a_chroma_server(tmp_path: Path, chroma_url: str) -> None:
    env = {"RAG_CHROMA_URL": chroma_url, "RAG_COLLECTION": "cli-server-test"}
    first = rag("ingest", str(CORPUS), "--json", home=tmp_path / "rag", **env)
    assert first.returncode == 0, first.stderr
    added = json.loads(first.stdout)["added"]
    assert added > 0
    # Another machine (another home) sees the same collection through the server.
    status = rag("status", "--json", home=tmp_path / "other-home", **env)
    info = json.loads(status.stdout)
    assert (info["store_mode"], info["location"], info["chunks"], info["documents"]) == ("server", chroma_url, added, 1)

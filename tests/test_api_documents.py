"""Documents through the API: upload, list, read, ask, delete; bad files get 413, 415 or 422 and change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import LIBRARY_DOC, running_server

from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from ui.api import create_api, document_id
from ui.uploads import uploads_dir

MAX_UPLOAD_MB = 0.05  # 52 kB: an oversize file stays small


@pytest.fixture
def empty_server(tmp_path: Path, embeddings: LocalEmbeddings) -> Iterator[tuple[str, Assistant]]:
    assistant = Assistant(Settings(home=tmp_path / "rag", max_upload_mb=MAX_UPLOAD_MB), embeddings=embeddings)
    with running_server(create_api(assistant)) as url:
        yield url, assistant


def upload(url: str, *files: tuple[str, bytes, str]) -> httpx.Response:
    return httpx.post(f"{url}/v1/documents", files=[("file", f) for f in files], timeout=120)


def test_round_trip(empty_server: tuple[str, Assistant]) -> None:
    url, assistant = empty_server
    assert httpx.get(f"{url}/readyz").status_code == 503, "nothing indexed yet"

    added = upload(url, ("../../library notes.md", LIBRARY_DOC.encode(), "text/markdown"))
    assert added.status_code == 200, added.text
    [result] = added.json()["data"]
    assert result["status"] == "added" and result["name"] == "library_notes.md", "the chat's name sanitising"
    kept = uploads_dir(assistant.settings.home).resolve() / "library_notes.md"
    assert kept.read_text(encoding="utf-8") == LIBRARY_DOC
    assert result["id"] == document_id(str(kept))

    again = upload(url, ("copy.md", LIBRARY_DOC.encode(), "text/markdown")).json()["data"]
    assert again[0]["status"] == "duplicate"

    listed = httpx.get(f"{url}/v1/documents").json()["data"]
    assert [(d["id"], d["title"]) for d in listed] == [(result["id"], "Zephyr library opens")]
    assert listed[0]["metadata"]["date"] == "2024-03-03" and listed[0]["chunks"] >= 1
    doc = httpx.get(f"{url}/v1/documents/{result['id']}").json()
    assert doc["source"] == str(kept) and "48,000 books" in doc["text"]
    assert httpx.get(f"{url}/readyz").status_code == 200

    answer = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Who designed the Zephyr Municipal Library?"}]},
        timeout=120,
    ).json()
    assert "Ines Marlow" in answer["choices"][0]["message"]["content"]
    assert answer["citations"][0]["source"] == str(kept)
    assert (
        doc["text"][answer["citations"][0]["start"] : answer["citations"][0]["end"]] == answer["citations"][0]["quote"]
    )

    deleted = httpx.delete(f"{url}/v1/documents/{result['id']}")
    assert deleted.status_code == 200 and deleted.json()["chunks"] >= 1
    assert httpx.get(f"{url}/v1/documents").json()["data"] == []
    assert not kept.exists()
    gone = httpx.get(f"{url}/v1/documents/{result['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "document_not_found"
    assert httpx.delete(f"{url}/v1/documents/{result['id']}").status_code == 404


@pytest.mark.parametrize(
    ("name", "data", "status", "says"),
    [
        ("empty.txt", b"", 422, "empty"),
        ("big.txt", b"word " * int(MAX_UPLOAD_MB * 2**20), 413, "upload limit"),
        ("tool.exe", b"MZ\x90\x00binary", 415, "not accepted"),
        ("noext", b"hello", 415, "not accepted"),
        ("fake.pdf", b"hello, not a pdf", 422, "not a PDF"),
        ("binary.txt", bytes(range(256)) * 8, 422, ""),
    ],
)
def test_bad_files_are_refused_and_nothing_is_kept(
    empty_server: tuple[str, Assistant], name: str, data: bytes, status: int, says: str
) -> None:
    url, assistant = empty_server
    response = upload(url, (name, data, "application/octet-stream"))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"} and says in error["message"]
    assert "\n" not in error["message"]
    assert assistant.documents() == []
    kept = uploads_dir(assistant.settings.home)
    assert [p.name for p in kept.iterdir() if p.is_file()] == [], "no file kept that is not indexed"
    assert not any((kept / ".incoming").iterdir()), "the API's temporary copies are gone"


def test_a_batch_reports_each_file(empty_server: tuple[str, Assistant]) -> None:
    url, _ = empty_server
    response = upload(url, ("good.md", LIBRARY_DOC.encode(), "text/markdown"), ("bad.exe", b"MZ", "x/y"))
    assert response.status_code == 200
    assert [(r["name"], r["status"]) for r in response.json()["data"]] == [("good.md", "added"), ("bad.exe", "failed")]


def test_upload_without_files_is_422(empty_server: tuple[str, Assistant]) -> None:
    url, _ = empty_server
    response = httpx.post(f"{url}/v1/documents", data={"x": "y"}, timeout=30)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"

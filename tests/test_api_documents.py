"""Documents through the API: upload, list, read, ask, delete, in any collection; bad files get 413, 415 or 422 and
change nothing; an oversize upload is refused before it is read whole; the chat's upload queue is the API's."""

from __future__ import annotations

import json
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import LIBRARY_DOC, running_server

from ingest import ingest_paths
from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from ui.api import create_api, document_id
from ui.uploads import upload_queue, uploads_dir

MAX_UPLOAD_MB = 0.05  # 52 kB: an oversize file stays small
BOUND_S = 120  # far beyond a healthy answer; only a hang reaches it


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


def raw_request(url: str, head: str) -> socket.socket:
    """A socket that has sent a request's head (the body is the caller's), for what httpx will not send."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=BOUND_S)
    sock.sendall(head.encode())
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """The status and JSON body of a response that is not chunked."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < content_length(data):
        block = sock.recv(65536)
        if not block:
            break
        data += block
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body[: content_length(data)])


def content_length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    return int(head.split("content-length:", 1)[1].split("\r\n", 1)[0]) if "content-length:" in head else 1 << 30


def test_an_upload_over_the_request_limit_is_refused_from_its_content_length_unread(
    tmp_path: Path, embeddings: LocalEmbeddings
) -> None:
    settings = Settings(home=tmp_path / "rag", max_upload_mb=MAX_UPLOAD_MB, max_upload_request_mb=1)
    with running_server(create_api(Assistant(settings, embeddings=embeddings))) as url:
        # 10 GB announced, not one byte of body sent: only a refusal from the header can answer.
        sock = raw_request(
            url,
            "POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {10 * 2**30}\r\n\r\n",
        )
        with sock:
            status, body = read_response(sock)
    assert status == 413 and body["error"]["code"] == "request_too_large", body
    assert set(body["error"]) == {"message", "type", "code"} and "RAG_MAX_UPLOAD_REQUEST_MB" in body["error"]["message"]


def test_reading_an_oversize_file_stops_once_it_passes_the_limit(empty_server: tuple[str, Assistant]) -> None:
    url, assistant = empty_server
    total = 256 * 2**20  # far beyond the loopback socket buffers: the refusal must come before the body ends
    sock = raw_request(
        url,
        "POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
    )
    part_head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="huge.txt"\r\n\r\n'
    block = b"word " * 13107  # 64 kB
    sent = 0
    with sock:
        sock.sendall(b"%x\r\n%s\r\n" % (len(part_head), part_head))
        sock.setblocking(False)
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], BOUND_S)
            if readable:
                break
            if writable:
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
                except BlockingIOError:  # a partial send: the buffers are full, the server has stopped reading
                    continue
                sent += len(block)
        sock.setblocking(True)
        status, body = read_response(sock)
    assert sent < total, "the server read the whole body before answering"
    assert status == 413 and body["error"]["code"] == "too_large", body
    assert "huge.txt" in body["error"]["message"] and "upload limit" in body["error"]["message"]
    assert assistant.documents() == []
    assert not any((uploads_dir(assistant.settings.home) / ".incoming").iterdir()), "the staged part is gone"


def test_documents_of_another_collection(empty_server: tuple[str, Assistant], tmp_path: Path) -> None:
    url, assistant = empty_server
    other = Assistant(assistant.settings.model_copy(update={"collection": "notes"}), embeddings=assistant.embeddings)
    seed = tmp_path / "seed" / "harbour.md"
    seed.parent.mkdir()
    seed.write_text("The harbour pilot boards ships at the outer buoy.\n")
    ingest_paths([seed], settings=other.settings, store=other.store)  # the collection exists, as `model` needs
    note = LIBRARY_DOC.replace("48,000 books", "12 maps")

    mine = upload(url, ("library.md", LIBRARY_DOC.encode(), "text/markdown")).json()["data"][0]
    theirs = httpx.post(
        f"{url}/v1/documents",
        params={"model": "notes"},
        files=[("file", ("library.md", note.encode(), "text/markdown"))],
        timeout=120,
    ).json()["data"][0]
    assert theirs["status"] == "added" and theirs["name"] == "library-2.md", "the default collection's file is kept"
    assert "not in this collection" in theirs["detail"]
    kept = uploads_dir(assistant.settings.home).resolve()
    assert (kept / "library.md").read_text(encoding="utf-8") == LIBRARY_DOC

    listed = httpx.get(f"{url}/v1/documents", params={"model": "notes"}).json()["data"]
    assert sorted(d["id"] for d in listed) == sorted([theirs["id"], document_id(str(seed.resolve()))])
    assert [d["id"] for d in httpx.get(f"{url}/v1/documents").json()["data"]] == [mine["id"]]
    doc = httpx.get(f"{url}/v1/documents/{theirs['id']}", params={"model": "notes"}).json()
    assert "12 maps" in doc["text"]
    assert httpx.get(f"{url}/v1/documents/{theirs['id']}").status_code == 404, "not in the default collection"

    assert httpx.delete(f"{url}/v1/documents/{theirs['id']}", params={"model": "notes"}).status_code == 200
    assert not (kept / "library-2.md").exists() and (kept / "library.md").exists()
    assert [d["id"] for d in httpx.get(f"{url}/v1/documents").json()["data"]] == [mine["id"]]
    missing = httpx.get(f"{url}/v1/documents", params={"model": "nope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_api_uploads_wait_in_the_queue_chat_uploads_use(empty_server: tuple[str, Assistant]) -> None:
    url, assistant = empty_server
    results: list[httpx.Response] = []
    with upload_queue(assistant.settings.home):  # as a chat upload in progress holds it
        sender = threading.Thread(
            target=lambda: results.append(upload(url, ("library.md", LIBRARY_DOC.encode(), "text/markdown")))
        )
        sender.start()
        sender.join(timeout=2)
        assert sender.is_alive() and not results, "the API upload went ahead of the chat's"
    sender.join(timeout=BOUND_S)
    assert results[0].status_code == 200 and results[0].json()["data"][0]["status"] == "added"

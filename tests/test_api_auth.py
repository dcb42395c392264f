"""API keys: 401, 403 and scopes on every route, the chat's login, CORS, the start refusal, keys never logged."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import REPO, running_server
from openai import AuthenticationError, OpenAI, PermissionDeniedError
from pydantic import ValidationError

from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from ui.auth import ApiKeys, InsecureBind, check_bind, is_loopback

READ_KEY = "r3ad-key-5c0pe-0nly-7f1e2d"
WRITE_KEY = "wr1te-key-a11-sc0pes-9b8c7"
FILE_KEY = "f1le-key-fr0m-disk-4d3c2b"
QUESTION = "How many police officers did Kenya deploy to Haiti?"
CHAT = {"messages": [{"role": "user", "content": QUESTION}]}
# (method, path, body, scope needed): every route that takes a key.
ROUTES = [
    ("POST", "/v1/chat/completions", CHAT, "read"),
    ("GET", "/v1/models", None, "read"),
    ("POST", "/v1/search", {"query": "Kenya"}, "read"),
    ("GET", "/v1/documents", None, "read"),
    ("GET", "/v1/documents/0123", None, "read"),
    ("GET", "/metrics", None, "read"),
    ("DELETE", "/v1/documents/0123", None, "write"),
]


@pytest.fixture(scope="module")
def keyed(
    seeded_home: Path, embeddings: LocalEmbeddings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[str]]]:
    """The whole server (API and chat) with one read key from RAG_API_KEYS and a write key from a file."""
    from ui.server import create_server

    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text(f"# the operator's keys\n{FILE_KEY}:write\n", encoding="utf-8")
    settings = Settings(home=seeded_home, api_keys=f"{READ_KEY}:read,{WRITE_KEY}:write", api_keys_file=key_file)  # type: ignore[arg-type]
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(handler.format(record))  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    try:
        with running_server(create_server(Assistant(settings, embeddings=embeddings))) as url:
            yield url, records
    finally:
        logging.getLogger().removeHandler(handler)


def call(url: str, method: str, path: str, body: object, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=120)


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_every_route_checks_key_and_scope(
    keyed: tuple[str, list[str]], method: str, path: str, body: object, needed: str
) -> None:
    url, _ = keyed
    for key in (None, "wrong-key", READ_KEY[:-1]):
        response = call(url, method, path, body, key)
        assert response.status_code == 401, (key, response.text)
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"] == "Bearer"
    read = call(url, method, path, body, READ_KEY)
    if needed == "write":
        assert read.status_code == 403 and read.json()["error"]["type"] == "permission_error"
    else:
        assert read.status_code not in (401, 403), read.text
    for key in (WRITE_KEY, FILE_KEY):
        assert call(url, method, path, body, key).status_code not in (401, 403), "write covers read"


def test_openai_client_sees_401_and_403(keyed: tuple[str, list[str]]) -> None:
    url, _ = keyed
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0).models.list()
    reply = OpenAI(base_url=f"{url}/v1", api_key=READ_KEY, max_retries=0).chat.completions.create(
        model="rag",
        messages=CHAT["messages"],  # type: ignore[arg-type]
    )
    assert (reply.model_extra or {})["citations"]
    with pytest.raises(PermissionDeniedError):
        OpenAI(base_url=f"{url}/v1", api_key=READ_KEY, max_retries=0).delete("/documents/0123", cast_to=httpx.Response)


def test_probes_and_schema_need_no_key(keyed: tuple[str, list[str]]) -> None:
    url, _ = keyed
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.get(f"{url}/openapi.json").status_code == 200


def test_the_chat_is_behind_a_login_with_a_write_key(keyed: tuple[str, list[str]]) -> None:
    from gradio_client import Client

    url, _ = keyed
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a different type per version
        Client(f"{url}/", verbose=False).predict(message=QUESTION, api_name="/chat")
    with pytest.raises(Exception):  # noqa: B017
        Client(f"{url}/", auth=("anyone", READ_KEY), verbose=False)  # read keys may not upload or delete
    reply = Client(f"{url}/", auth=("anyone", WRITE_KEY), verbose=False).predict(message=QUESTION, api_name="/chat")
    assert "270" in reply["answer"]


def test_no_key_is_ever_logged(keyed: tuple[str, list[str]], capfd: pytest.CaptureFixture[str]) -> None:
    url, records = keyed
    for key in (READ_KEY, WRITE_KEY, "guessed-" + WRITE_KEY):
        call(url, "POST", "/v1/chat/completions", CHAT, key)
        call(url, "DELETE", "/v1/documents/0123", None, key)
    captured = capfd.readouterr()
    logged = "\n".join(records) + captured.out + captured.err
    for key in (READ_KEY, WRITE_KEY, FILE_KEY):
        assert key not in logged
        assert key not in repr(Settings(api_keys=f"{key}:read"))  # type: ignore[arg-type]
        assert key not in repr(ApiKeys({key: "read"}))


def test_malformed_keys_are_refused_without_echoing_them(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(api_keys=f"{WRITE_KEY}:admin")  # type: ignore[arg-type]
    assert "pair 1 is not key:read or key:write" in str(raised.value) and WRITE_KEY not in str(raised.value)
    bad = tmp_path / "keys"
    bad.write_text(f"{READ_KEY}:read\n{WRITE_KEY}\n")
    with pytest.raises(Exception, match="pair 2") as raised_file:
        ApiKeys.of(Settings(api_keys_file=bad))
    assert WRITE_KEY not in str(raised_file.value)


def test_only_loopback_may_go_without_keys() -> None:
    open_keys = ApiKeys()
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
        check_bind(host, open_keys)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        assert not is_loopback(host)
        with pytest.raises(InsecureBind):
            check_bind(host, open_keys)
        check_bind(host, ApiKeys({"k": "read"}))


@pytest.mark.parametrize("command", ["serve", "chat"])
def test_rag_refuses_a_network_address_without_keys_in_one_line(tmp_path: Path, command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_HOME": str(tmp_path / "rag")}
    done = subprocess.run(
        [sys.executable, "-m", "rag", command, "--host", "0.0.0.0", "--port", "1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: refusing to listen on 0.0.0.0 without API keys: set RAG_API_KEYS or RAG_API_KEYS_FILE "
        "(on 127.0.0.1 keys are optional)"
    ]
    assert not (tmp_path / "rag").exists(), "refused before anything was opened"


def test_rag_serve_refuses_workers_on_the_embedded_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")} | {"RAG_HOME": str(tmp_path / "rag")}
    done = subprocess.run(
        [sys.executable, "-m", "rag", "serve", "--workers", "2"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --workers above 1 needs a Chroma server (RAG_CHROMA_URL): embedded Chroma is single-process"
    ]


def test_cors_only_for_configured_origins(seeded_home: Path, embeddings: LocalEmbeddings) -> None:
    from ui.api import create_api

    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with running_server(create_api(Assistant(Settings(home=seeded_home), embeddings=embeddings))) as url:
        closed = httpx.options(f"{url}/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in closed.headers
    settings = Settings(home=seeded_home, cors_origins="https://app.example")
    with running_server(create_api(Assistant(settings, embeddings=embeddings))) as url:
        opened = httpx.options(f"{url}/v1/chat/completions", headers=preflight)
        assert opened.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(f"{url}/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


@contextmanager
def rag_serve(args: list[str], env: dict[str, str], log: Path) -> Iterator[str]:
    """A real `rag serve ARGS` process on a free port, its output in `log`; yields its URL once /readyz answers."""
    from evals.bench.load import free_port, wait_for

    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "rag", "serve", *args, "--port", str(port), "--corpus", "corpus"],
            env=clean | env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(f"{url}/readyz", timeout_s=300, process=server)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=60)


def test_rag_serve_fills_an_empty_index_serves_both_faces_and_logs_no_key(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    env = {"RAG_HOME": str(tmp_path / "rag"), "RAG_API_KEYS": f"{READ_KEY}:read,{WRITE_KEY}:write"}
    with rag_serve(["--host", "0.0.0.0"], env, log) as url:
        auth = {"Authorization": f"Bearer {READ_KEY}"}
        reply = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=auth, timeout=120).json()
        assert "270" in reply["choices"][0]["message"]["content"] and reply["citations"]
        assert httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=30).status_code == 401
        assert httpx.get(f"{url}/", timeout=30).status_code in (200, 401), "the chat's login page"
        httpx.post(f"{url}/v1/search", json={"query": "x"}, headers={"Authorization": f"Bearer {WRITE_KEY}x"})
        port = url.rsplit(":", 1)[1]
    logged = log.read_text(encoding="utf-8", errors="replace")
    assert "The index is empty: ingesting corpus/ first." in logged
    assert f"API on http://0.0.0.0:{port}/v1" in logged
    assert READ_KEY not in logged and WRITE_KEY not in logged


@pytest.mark.server
def test_rag_serve_with_workers_on_a_chroma_server(tmp_path: Path, chroma_url: str) -> None:
    log = tmp_path / "serve.log"
    env = {"RAG_HOME": str(tmp_path / "rag"), "RAG_CHROMA_URL": chroma_url, "RAG_COLLECTION": "workers-test"}
    with rag_serve(["--workers", "2"], env, log) as url:
        # A new connection each: the kernel spreads them over the workers (not asserted: it may pick one).
        replies = [httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=120).json() for _ in range(4)]
    assert all("270" in r["choices"][0]["message"]["content"] and r["citations"] for r in replies), log.read_text()

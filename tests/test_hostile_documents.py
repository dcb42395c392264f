"""Hostile documents in the real browser: Markdown, HTML, script and remote URLs in a document, a title, a question or
a model's answer reach the reader as text. The page requests nothing but the app itself, and no script runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from stub_llm import base_url, stub_llm
from test_ui_app import ANSWER_TIMEOUT_MS, ask, last_answer, open_tab, running_app

from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings

# Every payload that, rendered, would fetch (127.0.0.9 is loopback, so a fetch cannot leave the machine) or run code.
TITLE = 'Lighthouse log <img src="http://127.0.0.9:9/title.png"> ![t](http://127.0.0.9:9/title-md.png)'
PAYLOADS = {
    "How many storms did the Quillon lighthouse keeper log?": "![pixel](http://127.0.0.9:9/pixel.png)",
    "When was the lamp of the lighthouse replaced?": (
        """<img src="http://127.0.0.9:9/img.png" onerror="window.__pwned='img'">"""
    ),
    "When may visitors climb the lighthouse tower?": (
        "<img src=x onerror=\"window.__pwned='x'\"> <script>window.__pwned='script'</script>"
    ),
    "Where does the ferry to Quillon island leave from?": "[timetable](javascript:window.__pwned='link')",
    "How old is the keeper's cat Biscuit?": "<http://127.0.0.9:9/auto> and http://127.0.0.9:9/bare",
}
SENTENCES = (
    "The Quillon lighthouse keeper logged 412 storms in 2023 {} according to the harbour office.",
    "The lamp was replaced in March {} by a crew of nine technicians.",
    "Visitors may climb the tower on Sundays {} between noon and four.",
    "The ferry to Quillon island leaves from pier 6 {} every two hours.",
    "The keeper's cat Biscuit is 14 years old, see {} for photos.",
)
LIGHTHOUSE_DOC = f"---\ntitle: {TITLE}\n---\n# Quillon lighthouse\n\n" + "\n".join(
    sentence.format(payload) for sentence, payload in zip(SENTENCES, PAYLOADS.values(), strict=True)
)
HOSTILE_QUESTION = "How many storms did the Quillon lighthouse keeper log? ![q](http://127.0.0.9:9/question.png) `x`"
# What a model steered by the document says: one verified sentence, then the document's tricks.
LLM_REPLY = (
    "The Quillon lighthouse keeper logged 412 storms in 2023 [1]. "
    "See ![chart](http://127.0.0.9:9/llm.png) and <img src=x onerror=\"window.__pwned='llm'\"> "
    "or [more](javascript:window.__pwned='llm-link') [1]."
)
# Tags that, inside a chat message or the sources, would mean markup got through.
ACTIVE = "img, script, iframe, object, embed, svg, math, video, audio, source, link, style"
# What the app renders from data (Gradio's own spinners and icons, outside these, are svg too).
OURS = ".message-content, .sources, table.documents, .reader, table.uploads, .status"


@pytest.fixture(scope="module")
def hostile_home(tmp_path_factory: pytest.TempPathFactory, embeddings: LocalEmbeddings) -> Path:
    from ingest import ingest_paths

    docs = tmp_path_factory.mktemp("hostile-docs")
    (docs / "lighthouse.md").write_text(LIGHTHOUSE_DOC)
    home = tmp_path_factory.mktemp("hostile") / "rag"
    assistant = Assistant(Settings(home=home), embeddings=embeddings)
    assert not ingest_paths([docs], settings=assistant.settings, store=assistant.store).failed
    return home


@pytest.fixture(scope="module")
def app_url(hostile_home: Path, embeddings: LocalEmbeddings) -> Iterator[str]:
    """The app with an LLM configured (a stub obeying the document), so a session can ask in either mode."""
    with stub_llm("good", reply=LLM_REPLY) as server:
        settings = Settings(home=hostile_home, llm_base_url=base_url(server), llm_model="stub", llm_max_retries=0)
        with running_app(settings, embeddings) as url:
            yield url


@contextmanager
def strict_page(browser: Any, url: str) -> Iterator[Any]:
    """A page that may request only the app's own origin; on exit, also checks no payload was fetched or run."""
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    try:
        page.goto(url, wait_until="load")
        page.locator("#message textarea").wait_for(timeout=30_000)
        # Record every active element ever inserted into a message, streaming partials included.
        page.evaluate(
            """([active, ours]) => {
                window.__inserted = [];
                new MutationObserver((records) => {
                    for (const r of records) for (const node of r.addedNodes) {
                        if (!(node instanceof Element)) continue;
                        for (const el of [node, ...node.querySelectorAll(active)])
                            if (el.matches(active) && el.closest(ours))
                                window.__inserted.push(el.outerHTML.slice(0, 200));
                    }
                }).observe(document.body, {subtree: true, childList: true});
            }""",
            [ACTIVE, OURS],
        )
        yield page
        outside = [u for u in requested if not u.startswith((url, "data:", "blob:"))]
        assert requested and not outside, f"the page requested {outside}"
        assert not [u for u in requested if urlsplit(u).path in ("/x", "/file=x")], "a payload fetched the app's /x"
        assert page.evaluate("() => window.__pwned") is None, "a payload ran script"
        assert page.evaluate("() => window.__inserted") == [], "markup got into the page"
    finally:
        context.close()


def choose_mode(page: Any, mode: str) -> None:
    page.locator("#settings").get_by_text("Settings").click()
    page.locator("#mode").get_by_text(mode, exact=True).click()


def assert_only_our_links(message: Any) -> None:
    """A chat message's links are our [n] links to the Sources panel, nothing else."""
    hrefs = message.locator(".message-content a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs and all(h.startswith("#src-") for h in hrefs), hrefs
    assert message.locator(f".message-content :is({ACTIVE})").count() == 0


@pytest.mark.browser
def test_quoted_markup_is_shown_as_text_in_the_chat_and_the_sources(browser: Any, app_url: str) -> None:
    with strict_page(browser, app_url) as page:
        choose_mode(page, "extractive")
        for question, payload in PAYLOADS.items():
            answer = ask(page, question)
            assert payload in answer, (question, answer)  # literally, not rendered
            assert_only_our_links(last_answer(page))
            latest = page.locator("#sources .latest")
            # Literally in the quoted context of a citation (the one quoting it need not be the first).
            assert any(payload in text for text in latest.locator(".context").all_text_contents()), question
            assert TITLE in latest.locator("summary").first.inner_text()
            assert TITLE in answer  # the "Sources:" line names the title as text
        assert page.locator(f".sources :is({ACTIVE})").count() == 0

        answer = ask(page, HOSTILE_QUESTION)
        assert "412 storms" in answer
        asked = page.locator("#chatbot [data-testid=user]").last
        assert asked.inner_text().strip() == HOSTILE_QUESTION
        assert asked.locator(f":is({ACTIVE}, a, code)").count() == 0

        open_tab(page, "Documents")
        page.locator("#documents").get_by_text(TITLE, exact=False).wait_for(timeout=30_000)
        page.locator("#doc-picker input").click()
        page.get_by_role("option", name=f"{TITLE} (lighthouse.md)").click()
        page.locator("#reader").get_by_text("crew of nine technicians").wait_for()
        reader = page.locator("#reader").inner_text()
        assert TITLE in reader and PAYLOADS["When may visitors climb the lighthouse tower?"] in reader
        assert page.locator(f"table.documents :is({ACTIVE}), .reader :is({ACTIVE})").count() == 0


@pytest.mark.browser
def test_a_model_answer_with_markup_is_shown_as_text_while_streaming_and_after(browser: Any, app_url: str) -> None:
    with strict_page(browser, app_url) as page:
        answer = ask(page, "How many storms did the Quillon lighthouse keeper log?")
        # The model's words, literally: the verified sentence linked, the unsupported one flagged in the notice.
        assert "See ![chart](http://127.0.0.9:9/llm.png) and <img src=x" in answer, answer
        assert "[more](javascript:window.__pwned='llm-link')" in answer
        assert "Note:" in answer and "not backed by the sources" in answer
        assert_only_our_links(last_answer(page))


@pytest.mark.browser
def test_a_hostile_file_name_is_reported_as_text(browser: Any, app_url: str, tmp_path: Path) -> None:
    hostile = tmp_path / "<img src=x onerror=window.__pwned=1> notes.md"
    hostile.write_text("The tide gauge at Quillon pier was calibrated on 3 May 2024 by the harbour office.\n")
    with strict_page(browser, app_url) as page:
        open_tab(page, "Documents")
        page.locator("#upload input[type=file]").set_input_files(str(hostile))
        status = page.locator("#upload-status")
        status.get_by_text("img_src_x_onerror_window.__pwned_1__notes.md").wait_for(timeout=ANSWER_TIMEOUT_MS)
        assert "added" in status.inner_text()
        assert page.locator(f"#upload-status :is({ACTIVE})").count() == 0


@pytest.mark.browser
def test_a_hostile_file_name_over_the_size_limit_is_refused_as_text(
    browser: Any, hostile_home: Path, embeddings: LocalEmbeddings, tmp_path: Path
) -> None:
    big = tmp_path / "<img src=x onerror=window.__pwned=1> big.md"
    big.write_text("word " * 1000)  # 5 kB against a 2 kB limit: Gradio refuses it in the browser, naming the file
    settings = Settings(home=hostile_home, max_upload_mb=0.002)
    with running_app(settings, embeddings) as url, strict_page(browser, url) as page:
        open_tab(page, "Documents")
        page.locator("#upload input[type=file]").set_input_files(str(big))
        page.get_by_text("exceed the maximum allowed size").wait_for(timeout=30_000)
        toast = page.locator("[data-testid=toast-text]").first
        assert '"_img src=x onerror=window.__pwned=1_ big.md"' in toast.inner_text()  # renamed before Gradio saw it
        # The same file dropped onto the upload area.
        page.evaluate(
            """() => {
                const transfer = new DataTransfer();
                transfer.items.add(new File(["word ".repeat(1000)], "<img src=x onerror=window.__pwned=2> dropped.md"));
                const zone = document.querySelector("#upload input[type=file]").parentElement;
                zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
            }"""
        )
        page.get_by_text('"_img src=x onerror=window.__pwned=2_ dropped.md"').wait_for(timeout=30_000)
        assert page.locator(f"[data-testid=toast-text] :is({ACTIVE})").count() == 0

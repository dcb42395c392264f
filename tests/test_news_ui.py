"""The chat's date controls in a real browser: as of hides later documents, a malformed date is a chat message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_news import FIRE_START, NEWS
from test_ui_app import ask, open_page, running_app

from ingest import ingest_paths
from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings


@pytest.fixture(scope="module")
def news_url(tmp_path_factory: pytest.TempPathFactory, embeddings: LocalEmbeddings) -> Iterator[str]:
    settings = Settings(home=tmp_path_factory.mktemp("news-ui") / "rag")
    ingest_paths([NEWS], settings=settings, store=Assistant(settings, embeddings=embeddings).store)
    with running_app(settings, embeddings) as url:
        yield url


def set_date(page: Any, elem_id: str, value: str) -> None:
    """Type a date into one of the settings' date fields, as a user would."""
    field = page.locator(f"#{elem_id} input").first
    field.fill(value)
    field.press("Enter")


@pytest.mark.browser
def test_the_as_of_control_hides_later_reports_and_citations_show_dates(browser: Any, news_url: str) -> None:
    with open_page(browser, news_url) as page:
        page.locator("#settings").get_by_text("Settings").click()
        assert "west warehouse" in ask(page, FIRE_START)  # the correction of 14 March
        assert "2025-03-14" in page.locator("#sources").inner_text()
        set_date(page, "as-of", "2025-03-11")
        answer = ask(page, FIRE_START)
        assert "east warehouse" in answer and "west warehouse" not in answer
        assert "(2025-03-10)" in answer  # the source line names each citation's date


@pytest.mark.browser
def test_a_malformed_date_is_a_chat_message_and_the_session_goes_on(browser: Any, news_url: str) -> None:
    with open_page(browser, news_url) as page:
        page.locator("#settings").get_by_text("Settings").click()
        set_date(page, "since", "2025-02-30")
        answer = ask(page, FIRE_START)
        assert "since: '2025-02-30' is not a date; use YYYY-MM-DD" in answer
        set_date(page, "since", "")
        assert "west warehouse" in ask(page, FIRE_START)

"""The chat's dates in a real browser: as of hides later documents, a malformed date is a chat message, conflicts and
timelines show with their dates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_news import FIRE_START, INJURED, NEWS
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


@pytest.mark.browser
def test_a_conflict_and_a_timeline_show_in_the_chat_with_their_dates(browser: Any, news_url: str) -> None:
    with open_page(browser, news_url) as page:
        answer = ask(page, INJURED)
        assert "The sources disagree on" in answer
        assert "12 [" in answer and "(10 March 2025)" in answer and "(12 March 2025, the newer)" in answer
        timeline = ask(page, "How has the grain terminal fire developed?")
        assert timeline.index("10 March 2025") < timeline.index("12 March 2025") < timeline.index("14 March 2025")

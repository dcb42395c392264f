"""rag.dates: date forms, datelines, every relative-time phrase against a fixed as_of, and date scopes."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from rag.dates import (
    DateError,
    DateScope,
    TimeWindow,
    created_date,
    dated_metadata,
    dateline_date,
    named_times,
    parse_date,
    require_date,
    resolve_as_of,
    time_window,
)

# A Saturday: "this week" began on Monday the 13th, "on Friday" is the 17th.
AS_OF = date(2025, 1, 18)


@pytest.mark.parametrize(
    "raw",
    [
        "2025-01-18",
        "2025-01-18T09:30:00+00:00",
        "2025/1/18",
        "18 January 2025",
        "18th Jan 2025",
        "January 18, 2025",
        "Jan. 18, 2025",
        "D:20250118093000Z",
    ],
)
def test_every_metadata_form_reads_as_the_same_day(raw: str) -> None:
    assert parse_date(raw) == date(2025, 1, 18)


@pytest.mark.parametrize("raw", ["", "Friday", "2025-02-30", "18/01/2025", "soon", "2025"])
def test_what_is_not_a_whole_date_is_none(raw: str) -> None:
    assert parse_date(raw) is None


def test_dateline_year_from_the_dateline_or_the_text() -> None:
    assert dateline_date("LONDON (Reuters) March 3, 2024 — Prices rose.") == (date(2024, 3, 3), "dateline")
    found = dateline_date("NAIROBI, Kenya Jan 18 – Kenya sent officers, as promised in 2024. In 2025 more follow.")
    assert found == (date(2025, 1, 18), "dateline, year from the text")  # a tie goes to the later year


def test_no_dateline_or_no_year_means_no_date() -> None:
    assert dateline_date("NAIROBI, Kenya Jan 18 – Kenya sent officers.") is None  # no year anywhere: not guessed
    assert dateline_date("The police said on Jan 18 – in 2025 – that ...") is None  # not a dateline: no place
    assert dateline_date("Some text first. NAIROBI, Jan 18, 2025 – late dateline") is None


def test_dated_metadata_normalises_records_text_dates_and_keeps_unreadable_ones() -> None:
    assert dated_metadata({"date": "January 18, 2025", "kind": "news"}, "x") == {"date": "2025-01-18", "kind": "news"}
    from_text = dated_metadata({}, "NAIROBI, Jan 18, 2025 – Officers left.")
    assert from_text == {"date": "2025-01-18", "date_source": "dateline"}
    assert dated_metadata({"date": "last spring"}, "No dateline.") == {"date_raw": "last spring"}
    assert dated_metadata({}, "No dateline here.") == {}


def test_creation_dates_from_file_metadata() -> None:
    assert created_date(datetime(2024, 5, 6, 7, 8)) == "2024-05-06"
    assert created_date("D:20240506") == "2024-05-06"
    assert created_date(None) is None and created_date("garbage") is None


@pytest.mark.parametrize("raw", ["2025-13-01", "18/01/2025", "yesterday", "2025-1-5", ""])
def test_malformed_user_dates_are_one_line_errors(raw: str) -> None:
    with pytest.raises(DateError, match=r"^since: '.*' is not a date; use YYYY-MM-DD$"):
        require_date(raw, name="since")


@pytest.mark.parametrize(
    ("question", "start", "end"),
    [
        ("What happened this week?", date(2025, 1, 13), AS_OF),
        ("What happened last week?", date(2025, 1, 6), date(2025, 1, 13)),  # Mon-Sun, plus a day of reporting
        ("What did the council decide recently?", date(2025, 1, 5), AS_OF),
        ("Who resigned yesterday?", date(2025, 1, 17), AS_OF),
        ("What was announced on Friday?", date(2025, 1, 17), AS_OF),
        ("What was announced on Monday?", date(2025, 1, 13), date(2025, 1, 14)),
        ("How many officers left in June?", date(2024, 6, 1), date(2024, 7, 1)),  # June is last year's in January
        ("What happened in January?", date(2025, 1, 1), AS_OF),
        ("Who won the election last year?", date(2024, 1, 1), date(2025, 1, 1)),
        ("What has changed since March?", date(2024, 3, 1), AS_OF),
        ("What is the latest on the mission?", date(2024, 12, 20), AS_OF),
        ("What happened in 2023?", date(2023, 1, 1), date(2024, 1, 1)),
        ("What happened in June 2022?", date(2022, 6, 1), date(2022, 7, 1)),
        ("What happened today?", AS_OF, AS_OF),
    ],
)
def test_each_relative_phrase_resolves_against_as_of(question: str, start: date, end: date) -> None:
    window = time_window(question, AS_OF)
    assert window is not None and (window.start, window.end) == (start, end)
    assert window.phrase in question.lower()


def test_the_latest_is_marked_and_questions_without_relative_time_have_no_window() -> None:
    latest = time_window("What is the latest on the mission?", AS_OF)
    assert latest is not None and latest.is_latest
    assert time_window("Who leads the Kenyan mission in Haiti?", AS_OF) is None
    assert time_window("How many officers may go?", AS_OF) is None  # "may" the verb is not the month


def test_window_membership_and_description() -> None:
    window = TimeWindow(date(2025, 1, 13), AS_OF, "this week")
    assert window.contains(date(2025, 1, 13)) and window.contains(AS_OF)
    assert not window.contains(date(2025, 1, 12)) and not window.contains(None)
    assert window.describe() == '"this week": 2025-01-13 to 2025-01-18'


def test_windows_overlap_when_they_share_a_day_and_open_ends_reach_everything() -> None:
    week = TimeWindow(date(2025, 1, 13), AS_OF)
    assert week.overlaps(TimeWindow(AS_OF, date(2025, 2, 1))) and week.overlaps(TimeWindow(None, date(2025, 1, 13)))
    assert not week.overlaps(TimeWindow(date(2024, 6, 1), date(2024, 7, 1)))
    assert not week.overlaps(TimeWindow(date(2025, 1, 19), None))


def test_a_sentences_named_times_resolve_against_its_documents_date_and_vague_ones_are_left_out() -> None:
    sentence = "This latest deployment follows 400 officers sent in June; more left on Friday, as recently agreed."
    named = [(w.phrase, w.start, w.end) for w in named_times(sentence, AS_OF)]
    assert named == [("in june", date(2024, 6, 1), date(2024, 7, 1)), ("on friday", date(2025, 1, 17), AS_OF)]
    assert named_times("The latest figures were released recently.", AS_OF) == []


def test_scope_hides_later_documents_keeps_undated_ones_and_since_until_bound_both_sides() -> None:
    scope = DateScope(as_of=AS_OF)
    assert scope.is_visible(AS_OF) and not scope.is_visible(date(2025, 1, 19)) and scope.is_visible(None)
    bounded = DateScope(as_of=AS_OF, since=date(2025, 1, 1), until=date(2025, 1, 10))
    assert bounded.is_visible(date(2025, 1, 5))
    assert not bounded.is_visible(date(2024, 12, 31)) and not bounded.is_visible(date(2025, 1, 11))
    assert not bounded.is_visible(None)  # an explicit date range cannot vouch for an undated document
    assert not scope.hides_any(AS_OF) and scope.hides_any(date(2025, 2, 1)) and bounded.hides_any(None)


def test_default_as_of_is_today_or_the_newest_document_if_older() -> None:
    today = date(2026, 12, 2)
    assert resolve_as_of(None, date(2025, 1, 18), today=today) == (date(2025, 1, 18), "newest document")
    assert resolve_as_of(None, date(2027, 1, 1), today=today) == (today, "today")
    assert resolve_as_of(None, None, today=today) == (today, "today")
    assert resolve_as_of(AS_OF, date(2027, 1, 1), today=today) == (AS_OF, "given")


def test_a_citation_carries_only_an_iso_date() -> None:
    """A chunk stored before dates were normalised may hold its file's raw text; the citation never passes it on."""
    from rag.types import Chunk, Citation

    def cite(date: str) -> str | None:
        chunk = Chunk(id="c", source="s.md", title="t", start=0, end=5, text="Hello", metadata={"date": date})
        return Citation.of_span(1, chunk, 0, 5).date

    assert cite("2025-01-18") == "2025-01-18"
    assert cite('<img src="http://127.0.0.9:9/x.png">') is None
    assert cite("January 18, 2025") is None

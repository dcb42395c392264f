"""Dates: every date form we read (metadata, datelines, user input) and relative time in questions, in one place.

Chunk metadata holds a document's date as ISO `YYYY-MM-DD` under `date`, or no `date` at all: a date is never
guessed. One found in the text, not in the file's metadata, says so under `date_source`.
"""

from __future__ import annotations

import calendar
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from rag.types import RagError

MONTHS = {name.lower(): n for n in range(1, 13) for name in (calendar.month_name[n], calendar.month_abbr[n])} | {
    "sept": 9
}
WEEKDAYS = {calendar.day_name[n].lower(): n for n in range(7)}
MONTH_RE = "|".join(sorted(MONTHS, key=len, reverse=True))
WEEKDAY_RE = "|".join(WEEKDAYS)

ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:$|[T ])")
SLASHED_DATE = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})$")
PDF_DATE = re.compile(r"D:(\d{4})(\d{2})(\d{2})")
DAY_MONTH_YEAR = re.compile(rf"(\d{{1,2}})(?:st|nd|rd|th)?\s+({MONTH_RE})\.?,?\s+(\d{{4}})$", re.IGNORECASE)
MONTH_DAY_YEAR = re.compile(rf"({MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})$", re.IGNORECASE)
# "NAIROBI, Kenya Jan 18 –", "LONDON (Reuters) March 3, 2024 —": a capitalised place, then month and day, then a dash.
DATELINE = re.compile(
    rf"\A\s*[A-Z][A-Z.'\- ]{{1,40}}(?:,\s*[A-Z][A-Za-z.'\- ]{{0,30}})?\s*(?:\([^()\n]{{1,30}}\))?[,\s]+"
    rf"(?P<month>(?i:{MONTH_RE}))\.?\s+(?P<day>\d{{1,2}})(?:,?\s+(?P<year>\d{{4}}))?\s*[\u2013\u2014-]"
)
YEAR = re.compile(r"\b(19[5-9]\d|20\d\d)\b")
# How far into a document its dateline may start, and how much text gives the dateline its year.
DATELINE_CHARS = 200
YEAR_CONTEXT_CHARS = 5000


class DateError(RagError):
    """A date given by the user is not a date."""


def make_date(year: int, month: int, day: int) -> date | None:
    """The date, or None when no such day exists (31 June)."""
    try:
        return date(year, month, day)
    except ValueError:
        return None


def parse_date(value: str) -> date | None:
    """A date from metadata in any form we meet (ISO, 2025/01/18, 18 January 2025, Jan 18, 2025, PDF D:...)."""
    text = value.strip()
    if m := ISO_DATE.match(text) or SLASHED_DATE.match(text) or PDF_DATE.match(text):
        return make_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if m := DAY_MONTH_YEAR.match(text):
        return make_date(int(m.group(3)), MONTHS[m.group(2).lower()], int(m.group(1)))
    if m := MONTH_DAY_YEAR.match(text):
        return make_date(int(m.group(3)), MONTHS[m.group(1).lower()], int(m.group(2)))
    return None


def mentioned_day(text: str, year: int) -> date | None:
    """The day a phrase names ('12 March', 'March 12', '12 March 2025'), or None for less than a day.

    A day without a year takes `year`; 'March', '2025' and 'Friday' are no day.
    """
    return parse_date(text) or parse_date(f"{text} {year}")


def parse_iso(value: str | None) -> date | None:
    """A stored ISO date (chunk metadata), or None for anything else."""
    if not value or not (m := ISO_DATE.match(value)):
        return None
    return make_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def require_date(value: str | date, *, name: str) -> date:
    """A user-given YYYY-MM-DD date, or a DateError that names the option."""
    if isinstance(value, date):
        return value
    found = parse_iso(value.strip()) if re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", value) else None
    if found is None:
        raise DateError(f"{name}: '{value}' is not a date; use YYYY-MM-DD")
    return found


def iso(day: date) -> str:
    """2025-01-18."""
    return day.isoformat()


def spoken(day: date) -> str:
    """18 January 2025."""
    return f"{day.day} {calendar.month_name[day.month]} {day.year}"


def chunk_date(metadata: Mapping[str, str]) -> date | None:
    """The document date a chunk carries, or None when it has none."""
    return parse_iso(metadata.get("date"))


def dateline_date(text: str) -> tuple[date, str] | None:
    """The date of a dateline at the top of the text, and how its year was found, or None.

    A dateline without a year takes the year the text mentions most (the latest on a tie); with no year in the
    text there is no date.
    """
    m = DATELINE.match(text[:DATELINE_CHARS])
    if m is None:
        return None
    month, day = MONTHS[m.group("month").lower()], int(m.group("day"))
    if m.group("year"):
        found = make_date(int(m.group("year")), month, day)
        return (found, "dateline") if found else None
    years = Counter(int(y) for y in YEAR.findall(text[:YEAR_CONTEXT_CHARS]))
    if not years:
        return None
    year = max(years, key=lambda y: (years[y], y))
    found = make_date(year, month, day)
    return (found, "dateline, year from the text") if found else None


def dated_metadata(metadata: Mapping[str, str], text: str) -> dict[str, str]:
    """The metadata with `date` as ISO (from the metadata, else from a dateline), or without `date` when unknown.

    A metadata date that cannot be read is kept as `date_raw`, so nothing the file said is lost.
    """
    out = dict(metadata)
    raw = out.pop("date", "").strip()
    if raw:
        found = parse_date(raw)
        if found is not None:
            out["date"] = iso(found)
            return out
        out["date_raw"] = raw
    if (from_text := dateline_date(text)) is not None:
        out["date"], out["date_source"] = iso(from_text[0]), from_text[1]
    return out


def created_date(raw: object) -> str | None:
    """A file's creation date from its metadata as ISO, or None.

    pypdf gives a PDF's as a datetime or the raw D:YYYYMMDD string, python-docx a Word file's as a datetime.
    """
    if isinstance(raw, datetime):
        return iso(raw.date())
    found = parse_date(str(raw)) if raw else None
    return iso(found) if found else None


# Relative time in questions


@dataclass(frozen=True)
class TimeWindow:
    """The document dates a question's relative time points at (inclusive; None: open on that side)."""

    start: date | None
    end: date | None
    phrase: str = ""
    is_latest: bool = False

    def contains(self, day: date | None) -> bool:
        """True when a document of this date falls in the window (an undated one never does)."""
        if day is None:
            return False
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)

    def overlaps(self, other: TimeWindow) -> bool:
        """True when the two windows share a day."""
        starts_before_other_ends = self.start is None or other.end is None or self.start <= other.end
        return starts_before_other_ends and (other.start is None or self.end is None or other.start <= self.end)

    def describe(self) -> str:
        """'"this week": 2025-01-13 to 2025-01-18', for the inspector and the debug."""
        start = iso(self.start) if self.start else "the beginning"
        end = iso(self.end) if self.end else "now"
        return f'"{self.phrase}": {start} to {end}'


# How far back "recently" and "the latest" reach.
RECENT_DAYS = 14
LATEST_DAYS = 30
# News reports an event on its day or the day after: a day's window takes the next day's documents too.
REPORT_LAG_DAYS = 1

# RELATIVE's kinds that name no particular time when a document uses them.
VAGUE_KINDS = frozenset({"latest", "recent"})
RELATIVE = re.compile(
    rf"\b(?P<latest>the latest|latest|most recent(?:ly)?|newest|currently|right now)\b"
    rf"|\b(?P<today>today)\b|\b(?P<yesterday>yesterday)\b"
    rf"|\b(?P<week>this|last|past) week\b|\b(?P<month_rel>this|last|past) month\b|\b(?P<year_rel>this|last|past) year\b"
    rf"|\b(?P<recent>recent(?:ly)?|lately)\b"
    rf"|\b(?:on|last|this) (?P<weekday>{WEEKDAY_RE})\b"
    rf"|\bsince (?P<since_month>{MONTH_RE})\b\.?(?:\s+(?P<since_year>\d{{4}}))?"
    rf"|\bin (?P<month>{MONTH_RE})\b\.?(?:\s+(?P<month_year>\d{{4}}))?"
    rf"|\bin (?P<year>(?:19|20)\d\d)\b",
    re.IGNORECASE,
)


def month_end(year: int, month: int) -> date:
    """The last day of a month."""
    return date(year, month, calendar.monthrange(year, month)[1])


def latest_month(month: int, as_of: date) -> int:
    """The year of the most recent such month up to as_of: June asked in March 2025 is June 2024."""
    return as_of.year if month <= as_of.month else as_of.year - 1


def time_window(question: str, as_of: date) -> TimeWindow | None:
    """The date window the question's first relative-time phrase points at, resolved against as_of, or None."""
    m = RELATIVE.search(question)
    return None if m is None else phrase_window(m, as_of)


def named_times(sentence: str, day: date) -> list[TimeWindow]:
    """The times a document's sentence dates its events to ("in June", "on Friday"), resolved against its date.

    "Latest" and "recently" are left out: in a report they say nothing about when.
    """
    return [phrase_window(m, day) for m in RELATIVE.finditer(sentence) if m.lastgroup not in VAGUE_KINDS]


def phrase_window(m: re.Match[str], as_of: date) -> TimeWindow:
    """The window of one RELATIVE match, resolved against as_of."""
    phrase = m.group(0).lower()
    kind = m.lastgroup
    lag = timedelta(days=REPORT_LAG_DAYS)

    def day_window(day: date) -> TimeWindow:
        return TimeWindow(day, min(day + lag, as_of), phrase)

    if kind == "latest":
        return TimeWindow(as_of - timedelta(days=LATEST_DAYS - 1), as_of, phrase, is_latest=True)
    if kind == "today":
        return TimeWindow(as_of, as_of, phrase)
    if kind == "yesterday":
        return day_window(as_of - timedelta(days=1))
    if kind == "recent":
        return TimeWindow(as_of - timedelta(days=RECENT_DAYS - 1), as_of, phrase)
    if kind == "week":
        monday = as_of - timedelta(days=as_of.weekday())
        if m.group("week").lower() == "this":
            return TimeWindow(monday, as_of, phrase)
        if m.group("week").lower() == "past":
            return TimeWindow(as_of - timedelta(days=6), as_of, phrase)
        return TimeWindow(monday - timedelta(days=7), monday - timedelta(days=1) + lag, phrase)
    if kind == "month_rel":
        first = as_of.replace(day=1)
        if m.group("month_rel").lower() == "this":
            return TimeWindow(first, as_of, phrase)
        if m.group("month_rel").lower() == "past":
            return TimeWindow(as_of - timedelta(days=29), as_of, phrase)
        previous = first - timedelta(days=1)
        return TimeWindow(previous.replace(day=1), previous + lag, phrase)
    if kind == "year_rel":
        if m.group("year_rel").lower() == "this":
            return TimeWindow(date(as_of.year, 1, 1), as_of, phrase)
        if m.group("year_rel").lower() == "past":
            return TimeWindow(as_of - timedelta(days=364), as_of, phrase)
        return TimeWindow(date(as_of.year - 1, 1, 1), date(as_of.year - 1, 12, 31) + lag, phrase)
    if kind == "weekday":
        back = (as_of.weekday() - WEEKDAYS[m.group("weekday").lower()]) % 7
        return day_window(as_of - timedelta(days=back))
    if kind in ("since_month", "since_year"):
        month = MONTHS[m.group("since_month").lower()]
        year = int(m.group("since_year")) if m.group("since_year") else latest_month(month, as_of)
        return TimeWindow(date(year, month, 1), as_of, phrase)
    if kind in ("month", "month_year"):
        month = MONTHS[m.group("month").lower()]
        year = int(m.group("month_year")) if m.group("month_year") else latest_month(month, as_of)
        return TimeWindow(date(year, month, 1), min(month_end(year, month) + lag, as_of), phrase)
    year = int(m.group("year"))
    return TimeWindow(date(year, 1, 1), min(date(year, 12, 31) + lag, as_of), phrase)


@dataclass(frozen=True)
class DateScope:
    """What one question may see: documents dated up to as_of (undated ones too), within since/until if given."""

    as_of: date
    as_of_source: str = "given"
    since: date | None = None
    until: date | None = None
    window: TimeWindow | None = None

    def is_visible(self, day: date | None) -> bool:
        """True when a document of this date may be used (undated: only without since/until)."""
        if day is None:
            return self.since is None and self.until is None
        is_after_since = self.since is None or day >= self.since
        return day <= self.as_of and is_after_since and (self.until is None or day <= self.until)

    def hides_any(self, newest: date | None) -> bool:
        """True when the scope can hide something in a collection whose newest document is `newest`."""
        return self.since is not None or self.until is not None or (newest is not None and newest > self.as_of)

    def describe(self) -> dict[str, str | None]:
        """The scope for the answer's debug and the inspector."""
        return {
            "as_of": iso(self.as_of),
            "as_of_source": self.as_of_source,
            "since": iso(self.since) if self.since else None,
            "until": iso(self.until) if self.until else None,
            "time_window": self.window.describe() if self.window else None,
        }


def resolve_as_of(as_of: date | None, newest: date | None, *, today: date | None = None) -> tuple[date, str]:
    """The as_of date of a question and where it came from: given, else today, else the newest document if older."""
    if as_of is not None:
        return as_of, "given"
    today = today or date.today()
    if newest is not None and newest < today:
        return newest, "newest document"
    return today, "today"

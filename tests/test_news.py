"""News-aware answers over a small dated corpus, with real Chroma and the real MiniLM model.

tests/fixtures/news holds a story told by three dated reports (the third corrects the first; the second is dated
only by its dateline), two documents that disagree on a cost, two on the day of a vote, two on who leads a mission
(and agree, in two forms, on the day it leaves), and an undated note.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from test_cli_ingest import rag

from evals.dataset import DatasetError, QAItem, load_jsonl
from ingest import ingest_paths
from ingest.load import load_file
from rag.assistant import Assistant
from rag.dates import DateError
from rag.embeddings import LocalEmbeddings
from rag.news import find_conflicts, sentence_facts, timeline_subject
from rag.settings import Settings
from rag.types import Answer, Citation, ConflictValue
from ui import render

NEWS = Path(__file__).parent / "fixtures" / "news"
DATES = {
    "harbour-fire-first-report.md": "2025-03-10",
    "harbour-fire-update.md": "2025-03-12",
    "harbour-fire-correction.md": "2025-03-14",
    "bridge-cost-council.md": "2025-02-01",
    "bridge-cost-audit.md": "2025-02-20",
    "newsroom-note.md": None,
    "levy-vote-announced.md": "2025-03-03",
    "levy-vote-moved.md": "2025-03-07",
    "survey-mission-announced.md": "2025-03-01",
    "survey-mission-new-leader.md": "2025-03-08",
}
FIRE_START = "Where did the grain terminal fire start?"
INJURED = "How many people were injured in the grain terminal fire?"
BRIDGE = "How much will the Lindqvist Bridge cost?"
VOTE = "When will the council vote on the harbour levy be held?"
LEADER = "Who leads the Aurel glacier survey mission?"
DEPARTURE = "When will the survey mission leave Port Aurelia?"


def name(source: str) -> str:
    return Path(source).name


@pytest.fixture(scope="module")
def news_home(tmp_path_factory: pytest.TempPathFactory, embeddings: LocalEmbeddings) -> Path:
    home = tmp_path_factory.mktemp("news") / "rag"
    assistant = Assistant(Settings(home=home), embeddings=embeddings)
    report = ingest_paths([NEWS], settings=assistant.settings, store=assistant.store)
    assert not report.failed and report.added == report.chunks == len(DATES)
    return home


@pytest.fixture(scope="module")
def news(news_home: Path, embeddings: LocalEmbeddings) -> Assistant:
    return Assistant(Settings(home=news_home), embeddings=embeddings)


def test_every_chunk_carries_its_documents_iso_date_or_none(news: Assistant) -> None:
    chunks = list(news.store.iter_chunks())
    assert {name(c.source): c.metadata.get("date") for c in chunks} == DATES
    by_name = {name(c.source): c for c in chunks}
    # Dated only by "PORT AURELIA, Mar 12 –" and the year its text mentions: the chunk says so.
    assert by_name["harbour-fire-update.md"].metadata["date_source"] == "dateline, year from the text"
    assert "date_source" not in by_name["harbour-fire-first-report.md"].metadata  # front matter wins


def test_citations_carry_their_documents_dates_in_the_json_too(news: Assistant) -> None:
    answer = news.ask(BRIDGE)
    assert answer.citations
    for citation in answer.citations:
        assert citation.date == DATES[name(citation.source)]
    out = answer.to_json_dict()
    assert [c["date"] for c in out["citations"]] == [c.date for c in answer.citations]
    assert out["as_of"] == "2025-03-14"


def test_default_as_of_is_the_newest_document_and_the_debug_says_so(news: Assistant) -> None:
    answer = news.ask(FIRE_START)
    assert answer.as_of == "2025-03-14" and answer.debug["as_of_source"] == "newest document"
    given = news.ask(FIRE_START, as_of=date(2025, 3, 11))
    assert given.as_of == "2025-03-11" and given.debug["as_of_source"] == "given"


def test_as_of_hides_later_documents_from_retrieval_and_the_answer(news: Assistant) -> None:
    latest = news.ask(FIRE_START)
    assert "west warehouse" in latest.text  # the correction of 14 March
    earlier = news.ask(FIRE_START, as_of=date(2025, 3, 11))
    assert "east warehouse" in earlier.text and "west warehouse" not in earlier.text
    seen = {name(c.chunk.source) for c in earlier.candidates} | {name(c.source) for c in earlier.citations}
    assert not seen & {"harbour-fire-update.md", "harbour-fire-correction.md"}
    for method in ("bm25", "vector", "hybrid"):
        found = news.retrieve("grain terminal fire warehouse", k=10, method=method, as_of=date(2025, 3, 11))  # type: ignore[arg-type]
        assert found and all(
            DATES[name(c.chunk.source)] is None or DATES[name(c.chunk.source)] <= "2025-03-11" for c in found
        ), method


def test_undated_documents_stay_visible_under_as_of(news: Assistant) -> None:
    found = news.retrieve("Who leads the coverage of the harbour fire?", as_of=date(2024, 1, 1))
    assert [name(c.chunk.source) for c in found] == ["newsroom-note.md"]  # every dated report is later


def test_since_and_until_bound_the_dates_and_leave_undated_documents_out(news: Assistant) -> None:
    found = news.retrieve("fire bridge terminal coverage", k=10, where={"since": "2025-03-11"})
    assert {name(c.chunk.source) for c in found} == {"harbour-fire-update.md", "harbour-fire-correction.md"}
    window = news.retrieve("fire bridge terminal coverage", k=10, where={"since": "2025-02-01", "until": "2025-02-28"})
    assert {name(c.chunk.source) for c in window} == {"bridge-cost-council.md", "bridge-cost-audit.md"}


def test_malformed_dates_are_one_line_errors_in_the_python_api(news: Assistant) -> None:
    with pytest.raises(DateError, match=r"^since: '2025-02-30' is not a date; use YYYY-MM-DD$"):
        news.ask(FIRE_START, where={"since": "2025-02-30"})
    with pytest.raises(DateError, match="until"):
        news.retrieve(FIRE_START, where={"until": "March"})


def test_cli_ask_as_of_and_malformed_dates(news_home: Path, tmp_path: Path) -> None:
    done = rag("ask", FIRE_START, "--as-of", "2025-03-11", "--json", home=news_home)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["as_of"] == "2025-03-11" and "east warehouse" in out["answer"]
    assert all(c["date"] == "2025-03-10" for c in out["citations"])
    text = rag("ask", FIRE_START, home=news_home)
    assert "[1] Correction: the grain terminal fire started in the west warehouse, 2025-03-14 (" in text.stdout
    for option, value in (("--as-of", "2025-13-01"), ("--since", "yesterday"), ("--until", "18/01/2025")):
        bad = rag("ask", FIRE_START, option, value, home=tmp_path / "never-made")
        assert bad.returncode == 2 and bad.stdout == ""
        assert bad.stderr == f"error: {option}: '{value}' is not a date; use YYYY-MM-DD\n"
    assert not (tmp_path / "never-made").exists()  # refused before any work


def test_status_shows_the_date_range(news: Assistant, news_home: Path) -> None:
    assert news.status()["dates"] == {"oldest": "2025-02-01", "newest": "2025-03-14", "dated_documents": 9}
    shown = rag("status", home=news_home)
    assert shown.returncode == 0, shown.stderr
    assert "dates:       2025-02-01 to 2025-03-14 (9 of 10 documents dated)" in shown.stdout


def test_a_conflict_shows_both_values_with_dates_and_marks_the_newer(news: Assistant) -> None:
    answer = news.ask(BRIDGE)
    assert len(answer.conflicts) == 1
    values = {v.value: v for v in answer.conflicts[0].values}
    assert set(values) == {"48", "55"}
    assert (values["48"].date, values["55"].date) == ("2025-02-01", "2025-02-20")
    assert values["55"].is_newest and not values["48"].is_newest
    cited = {c.n: c for c in answer.citations}
    assert name(cited[values["48"].n].source) == "bridge-cost-council.md"
    assert name(cited[values["55"].n].source) == "bridge-cost-audit.md"
    assert "55 million euros" in cited[values["55"].n].quote
    assert (
        f"48 [{values['48'].n}] (1 February 2025)" in answer.text
        and f"55 [{values['55'].n}] (20 February 2025, the newer)" in answer.text
    )
    assert answer.to_json_dict()["conflicts"][0]["slot"] == answer.conflicts[0].slot


def values_of(answer: Answer) -> dict[str, ConflictValue]:
    assert len(answer.conflicts) == 1, answer.text
    return {v.value: v for v in answer.conflicts[0].values}


def test_a_date_conflict_shows_both_days_with_dates_and_citations_and_marks_the_newer(news: Assistant) -> None:
    answer = news.ask(VOTE)
    values = values_of(answer)
    assert set(values) == {"12 March", "19 March"}  # as each source writes it
    assert (values["12 March"].date, values["19 March"].date) == ("2025-03-03", "2025-03-07")
    assert values["19 March"].is_newest and not values["12 March"].is_newest
    cited = {c.n: c for c in answer.citations}
    assert name(cited[values["12 March"].n].source) == "levy-vote-announced.md"
    assert name(cited[values["19 March"].n].source) == "levy-vote-moved.md"
    assert all(v.value in cited[v.n].quote for v in values.values())
    assert (
        f"12 March [{values['12 March'].n}] (3 March 2025)" in answer.text
        and f"19 March [{values['19 March'].n}] (7 March 2025, the newer)" in answer.text
    )
    # The proposal's "28 February" is another slot (published, not held): no rival.
    assert "28 February" not in answer.text.split("The sources disagree")[-1]
    assert answer.to_json_dict()["conflicts"][0]["values"][0]["value"] in values
    # As of 5 March the later report is hidden: one day, no conflict.
    assert news.ask(VOTE, as_of=date(2025, 3, 5)).conflicts == ()


def test_a_name_conflict_shows_both_names_with_dates_and_citations_and_marks_the_newer(news: Assistant) -> None:
    answer = news.ask(LEADER)
    values = values_of(answer)
    assert set(values) == {"Anna Berg", "Tomas Lind"}
    assert (values["Anna Berg"].date, values["Tomas Lind"].date) == ("2025-03-01", "2025-03-08")
    assert values["Tomas Lind"].is_newest and not values["Anna Berg"].is_newest
    cited = {c.n: c for c in answer.citations}
    assert name(cited[values["Tomas Lind"].n].source) == "survey-mission-new-leader.md"
    assert f"Tomas Lind [{values['Tomas Lind'].n}] (8 March 2025, the newer)" in answer.text
    assert f"Anna Berg [{values['Anna Berg'].n}] (1 March 2025)" in answer.text
    # "of the Polar Institute" follows both names: the same institute is no conflict.
    assert "Polar Institute [" not in answer.text


def test_the_same_day_in_two_forms_is_no_conflict(news: Assistant) -> None:
    answer = news.ask(DEPARTURE)
    quotes = {name(c.source): c.quote for c in answer.citations}
    # Both reports are cited, one says "20 March", the other "March 20, 2025": the same day.
    assert "on 20 March" in quotes["survey-mission-announced.md"]
    assert "on March 20, 2025" in quotes["survey-mission-new-leader.md"]
    assert answer.conflicts == () and "disagree" not in answer.text


def sentence_citation(news: Assistant, n: int, source: str, opening: str) -> Citation:
    """A citation of the fixture's sentence (one a line) that starts with `opening`."""
    chunk = next(c for c in news.store.iter_chunks() if name(c.source) == source and opening in c.text)
    start = chunk.text.index(opening)
    end = chunk.text.find("\n", start)
    return Citation.of_span(n, chunk, start, len(chunk.text) if end < 0 else end)


def test_an_unrelated_date_in_another_document_is_no_conflict(news: Assistant) -> None:
    held = sentence_citation(news, 1, "levy-vote-announced.md", "The council vote on the harbour levy will be held")
    published = sentence_citation(news, 2, "levy-vote-moved.md", "The council published its harbour levy proposal")
    reopens = sentence_citation(news, 3, "harbour-fire-correction.md", "The port authority said the grain terminal")
    # Same topic (the council's harbour levy), another slot: held on 12 March, published on 28 February.
    assert find_conflicts([held, published]) == []
    assert find_conflicts([held, reopens]) == []  # another story altogether
    moved = sentence_citation(news, 4, "levy-vote-moved.md", "The council vote on the harbour levy will be held")
    assert [[v.value for v in c.values] for c in find_conflicts([held, published, reopens, moved])] == [
        ["12 March", "19 March"]
    ]


def test_who_reported_and_when_are_not_values_of_the_story() -> None:
    for sentence in (
        "The minister said on 12 March that the harbour talks would resume.",
        "The minister told the BBC that the harbour talks would resume.",
        "The harbour talks will resume, according to Reuters.",
        "PORT AURELIA, Mar 12 – The harbour talks will resume.",
    ):
        assert [f for f in sentence_facts(sentence, 2025) if f.kind != "count"] == [], sentence
    [held] = sentence_facts("The minister said the harbour talks will resume on 12 March.", 2025)
    assert (held.kind, held.key, held.value) == ("date", {"2025-03-12"}, "12 March")


def test_a_rival_count_in_an_uncited_report_is_cited_not_dropped(news: Assistant) -> None:
    answer = news.ask(INJURED)
    assert answer.conflicts, answer.text
    values = {v.value: v for v in answer.conflicts[0].values}
    assert set(values) == {"12", "19"} and values["19"].is_newest
    assert {values["12"].date, values["19"].date} == {"2025-03-10", "2025-03-12"}
    short = answer.short_answer
    assert short is not None and short.date == next(c.date for c in answer.citations if c.n == short.n)
    # An earlier as_of hides the update: one report, one count, no conflict.
    assert news.ask(INJURED, as_of=date(2025, 3, 11)).conflicts == ()


def test_time_sensitive_questions_and_mixed_dates_say_as_of_when(news: Assistant) -> None:
    this_week = news.ask("What happened at the grain terminal this week?")
    assert "As of 14 March 2025: " in this_week.text
    assert this_week.debug["time_window"] == '"this week": 2025-03-10 to 2025-03-14'
    mixed = news.ask(BRIDGE)  # sources of 1 and 20 February: the newest cited date is named
    assert "As of 20 February 2025: " in mixed.text
    plain = news.ask("Who leads the coverage of the harbour fire?")
    assert "As of" not in plain.text and all(c.date is None for c in plain.citations)


def test_the_time_window_boosts_documents_of_that_day(news: Assistant) -> None:
    plain = news.retrieve("What did the fire service say about the grain terminal fire?", as_of=date(2025, 3, 14))
    wednesday = news.retrieve(
        "What did the fire service say about the grain terminal fire on Wednesday?", as_of=date(2025, 3, 14)
    )
    assert name(wednesday[0].chunk.source) == "harbour-fire-update.md"  # dated Wednesday 12 March
    in_window = [c for c in wednesday if c.window_rank is not None]
    assert {name(c.chunk.source) for c in in_window} == {"harbour-fire-update.md"}
    update = next(c for c in plain if name(c.chunk.source) == "harbour-fire-update.md")
    boosted = next(c for c in wednesday if name(c.chunk.source) == "harbour-fire-update.md")
    assert boosted.rank <= update.rank and plain[0].window_rank is None
    # Not only a filter: documents outside the window are still there, ranked lower.
    assert {name(c.chunk.source) for c in wednesday} - {"harbour-fire-update.md"}


def with_recency(news: Assistant, **settings: float) -> Assistant:
    """The fixture's assistant with the recency prior set (same home, same model)."""
    changed = news.settings.model_copy(update=settings)
    return Assistant(changed, embeddings=news.embeddings)


def test_the_recency_prior_boosts_the_days_up_to_as_of_for_a_question_without_a_window(news: Assistant) -> None:
    question, as_of = "What did the fire service say about the grain terminal fire?", date(2025, 3, 14)
    off = {
        c.chunk.id: c
        for c in with_recency(news, recency_boost=0.0, recency_weight=0.0).retrieve(question, k=10, as_of=as_of)
    }
    prior = with_recency(news, recency_days=3, recency_boost=0.5, recency_weight=1.0)
    found = prior.retrieve(question, k=10, as_of=as_of)
    recent = {"harbour-fire-update.md", "harbour-fire-correction.md"}  # 12 and 14 March; the first report is 10 March
    assert {name(c.chunk.source) for c in found if c.window_rank is not None} == recent
    for candidate in found:
        gain = 0.5 if name(candidate.chunk.source) in recent else 0.0
        assert candidate.rerank_score == pytest.approx((off[candidate.chunk.id].rerank_score or 0.0) + gain)
    # A question with its own window keeps it: the prior does not add to it.
    wednesday = "What did the fire service say about the grain terminal fire on Wednesday?"
    plain = [(c.chunk.id, c.rerank_score) for c in news.retrieve(wednesday, as_of=as_of)]
    assert [(c.chunk.id, c.rerank_score) for c in prior.retrieve(wednesday, as_of=as_of)] == plain


def test_the_recency_prior_is_a_no_op_when_nothing_visible_is_older(news: Assistant) -> None:
    # As of 1 February only the council's report (that day) and the undated note are visible: nothing to separate.
    prior = with_recency(news, recency_days=30, recency_boost=1.0, recency_weight=1.0)
    question = "How much will the Lindqvist Bridge cost?"
    plain = [(c.chunk.id, c.rerank_score, c.window_rank) for c in news.retrieve(question, as_of=date(2025, 2, 1))]
    found = prior.retrieve(question, as_of=date(2025, 2, 1))
    assert [(c.chunk.id, c.rerank_score, c.window_rank) for c in found] == plain
    assert all(c.window_rank is None for c in found)


def test_a_timeline_question_gets_dated_cited_lines_in_date_order(news: Assistant) -> None:
    answer = news.ask("How has the grain terminal fire developed?")
    lines = answer.text.splitlines()
    assert answer.debug.get("timeline") is True and len(lines) == len(answer.citations) >= 3
    assert [line.split(":")[0] for line in lines] == ["- 10 March 2025", "- 12 March 2025", "- 14 March 2025"]
    assert [c.date for c in answer.citations] == sorted(c.date or "" for c in answer.citations)
    assert all(f"[{c.n}]" in line and c.quote in line for c, line in zip(answer.citations, lines, strict=True))
    assert not any("Lindqvist" in line for line in lines)  # off-topic documents stay out
    assert answer.short_answer is None  # the citations were renumbered; a timeline is no single phrase


def test_the_chat_shows_citation_dates_and_the_time_window(news: Assistant) -> None:
    answer = news.ask("What happened at the grain terminal this week?")
    markdown = render.answer_markdown(answer, turn=1)
    assert "(2025-03-14)" in markdown
    cited = answer.citations[0]
    assert render.citation_meta(cited, news.document(cited.source)).endswith(" · 2025-03-14")
    inspector = render.inspector_html(answer.condensed_query, answer)
    assert "2025-03-14 (newest document)" in inspector and "2025-03-10 to 2025-03-14" in inspector


def test_reingest_gives_chunks_ingested_before_dates_existed_their_dates(
    tmp_path: Path, embeddings: LocalEmbeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.load

    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(NEWS / "harbour-fire-update.md", folder)
    shutil.copy(NEWS / "newsroom-note.md", folder)
    assistant = Assistant(Settings(home=tmp_path / "rag"), embeddings=embeddings)
    with monkeypatch.context() as before_dates:  # the reader as it was: no date from the dateline
        before_dates.setattr(ingest.load, "dated_metadata", lambda metadata, text: dict(metadata))
        ingest_paths([folder], settings=assistant.settings, store=assistant.store)
    assert all("date" not in c.metadata for c in assistant.store.iter_chunks())
    report = ingest_paths([folder], settings=assistant.settings, store=assistant.store)
    # A chunk's id hashes its metadata: the dated chunk is new, the undated note is unchanged and skipped.
    assert (report.added, report.deleted, report.unchanged) == (1, 1, 1)
    dates = {name(c.source): c.metadata.get("date") for c in assistant.store.iter_chunks()}
    assert dates == {"harbour-fire-update.md": "2025-03-12", "newsroom-note.md": None}


def test_html_pdf_and_docx_metadata_dates_are_iso(tmp_path: Path) -> None:
    import zipfile
    from datetime import datetime

    import docx
    from pypdf import PdfWriter
    from reportlab.pdfgen import canvas

    html = tmp_path / "page.html"
    html.write_text(
        "<html><head><title>Flood</title><meta property='article:published_time' content='2024-05-01T08:00:00Z'>"
        "</head><body><article><p>Heavy rains caused the river to burst its banks on Tuesday, officials said."
        "</p><p>Relief supplies will be flown in.</p></article></body></html>"
    )
    assert load_file(html, max_bytes=2**20, timeout_s=60, memory_mb=1024).metadata["date"] == "2024-05-01"
    pdf = canvas.Canvas(str(tmp_path / "drawn.pdf"))
    pdf.drawString(72, 800, "The dam reached capacity.")
    pdf.save()
    writer = PdfWriter(clone_from=str(tmp_path / "drawn.pdf"))
    writer.add_metadata({"/CreationDate": "D:20240506070809+00'00'"})
    writer.write(tmp_path / "report.pdf")
    loaded = load_file(tmp_path / "report.pdf", max_bytes=2**20, timeout_s=60, memory_mb=1024)
    assert loaded.metadata.get("date") == "2024-05-06"

    def word_file(name: str, created: datetime | None) -> Path:
        document = docx.Document()
        document.add_paragraph("The ferry service resumed after two weeks.")
        if created is not None:
            document.core_properties.created = created
        document.save(str(tmp_path / name))
        return tmp_path / name

    dated = load_file(
        word_file("dated.docx", datetime(2024, 5, 7, 9, 30)), max_bytes=2**20, timeout_s=60, memory_mb=1024
    )
    assert dated.metadata == {"date": "2024-05-07"}
    # A file that kept python-docx's template creation time (2013-12-23) has no date of its own.
    blank = load_file(word_file("template.docx", None), max_bytes=2**20, timeout_s=60, memory_mb=1024)
    assert "date" not in blank.metadata
    # A creation date that is no date loses the date, not the file.
    broken = tmp_path / "broken.docx"
    with zipfile.ZipFile(tmp_path / "dated.docx") as source, zipfile.ZipFile(broken, "w") as target:
        for member in source.infolist():
            data = source.read(member)
            if member.filename == "docProps/core.xml":
                data = data.replace(b"2024-05-07T09:30:00Z", b"not a date")
            target.writestr(member, data)
    loaded = load_file(broken, max_bytes=2**20, timeout_s=60, memory_mb=1024)
    assert "ferry service" in loaded.text and "date" not in loaded.metadata


def test_eval_lines_take_an_optional_as_of(tmp_path: Path) -> None:
    line = {"id": "a", "question": "q?", "answers": ["x"], "answerable": True, "evidence": ["x"]}
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(line | {"as_of": "2025-03-11"}) + "\n" + json.dumps(line | {"id": "b"}) + "\n")
    assert [item.as_of_date for item in load_jsonl(good)] == [date(2025, 3, 11), None]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(line) + "\n" + json.dumps(line | {"id": "b", "as_of": "2025-02-30"}) + "\n")
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: .*as_of: '2025-02-30' is not a date"):
        load_jsonl(bad)


def test_the_news_fit_replays_the_searchs_fusion_and_boosts(news: Assistant) -> None:
    from evals.fit.news import Point, first_gold, gather

    item = QAItem(
        id="20250314_0",
        question=FIRE_START,
        answers=("west warehouse",),
        answerable=True,
        evidence=("The fire started",),
        as_of="2025-03-14",
    )
    pool = gather(news.search, item, item.as_of_date, news.settings.candidates)
    for point in (Point(1.0, 0.3, 7, 0.0, 0.0), Point(1.0, 0.3, 3, 1.0, 0.5), Point(0.0, 0.0, 3, 1.0, 2.0)):
        update = {"window_weight": point.window_weight, "window_boost": point.window_boost}
        update |= {"recency_days": point.recency_days, "recency_weight": point.recency_weight}
        found = with_recency(news, **update, recency_boost=point.recency_boost).retrieve(
            item.question, k=10, as_of=item.as_of_date
        )
        rank = next(r for r, c in enumerate(found, start=1) if "west warehouse" in c.chunk.text)
        assert first_gold(pool, point, news.settings) == rank, point


def test_the_url_dated_copy_takes_an_earlier_day_from_the_url_and_nothing_else(tmp_path: Path) -> None:
    from evals.fit.news import url_dated_copy

    source, target = tmp_path / "src", tmp_path / "dst"
    source.mkdir()
    files = {
        "old.md": ("2022-06-17", "https://example.com/2013/02/04/story/", "2013-02-04"),
        "later_url.md": ("2022-06-17", "https://example.com/2022/07/01/story/", "2022-06-17"),
        "month_only.md": ("2022-06-17", "https://example.com/2013/02/story/", "2022-06-17"),
    }
    for name, (given, url, _) in files.items():
        (source / name).write_text(f"---\ntitle: T\ndate: {given}\nurl: {url}\n---\nBody --- text.\n")
    (source / "no_url.md").write_text("---\ndate: 2022-06-17\n---\nBody.\n")
    assert url_dated_copy(source, target) == {"redated": 1, "kept": 3}
    for name, (_, url, expected) in files.items():
        written = load_file(target / name, max_bytes=2**20, timeout_s=30, memory_mb=512)
        assert written.metadata["date"] == expected and written.metadata["url"] == url
        assert written.text == "Body --- text.\n"
    assert (target / "no_url.md").read_text() == (source / "no_url.md").read_text()


def test_eval_without_as_of_counts_only_documents_that_existed_on_the_questions_date(news: Assistant) -> None:
    from evals.report import text_table
    from evals.runner import evaluate

    # On 11 March only the first report exists: 12 injured. The 19 of the 12 March update is hindsight then.
    def line(count: str) -> QAItem:
        evidence = (f"{count} people",)
        return QAItem(
            id=count, question=INJURED, answers=(count,), answerable=True, evidence=evidence, as_of="2025-03-11"
        )

    lines = [line("19"), line("12")]
    runs = {asked: evaluate(news, lines, retrievers=["hybrid"], config={}, ask_as_of=asked) for asked in (True, False)}
    with_as_of, without = (runs[asked].timeliness() for asked in (True, False))
    assert with_as_of is not None and without is not None
    assert with_as_of["as_of_asked"] and not without["as_of_asked"]
    # Asked without as_of the update is retrieved and answers "19", but that counts only at any date.
    assert without["answer_recall@5_any_date"] == 1.0 and without["answer_recall@5"] == 0.5
    assert without["answer_accuracy_any_date"] == without["answer_accuracy"] + 0.5
    # Asked with it the update is never seen: both counts agree.
    assert with_as_of["answer_recall@5"] == with_as_of["answer_recall@5_any_date"] == 0.5
    assert runs[False].per_question[0]["as_of"] == "2025-03-14"  # the system's default date, the newest document
    assert "timeliness: 2 questions carry an as_of, asked without (--ignore-as-of) it" in text_table(runs[False])
    assert runs[False].to_json()["timeliness"] == without


def test_cli_eval_ignore_as_of_asks_at_the_default_date(news_home: Path, tmp_path: Path) -> None:
    line = {"id": "i", "question": INJURED, "answers": ["19"], "answerable": True, "evidence": ["19"]}
    dataset = tmp_path / "dated.jsonl"
    dataset.write_text(json.dumps(line | {"as_of": "2025-03-11"}) + "\n")
    done = rag("eval", str(dataset), "--ignore-as-of", "--json", home=news_home)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["config"]["as_of_asked"] is False and out["per_question"][0]["as_of"] == "2025-03-14"
    assert out["timeliness"]["answer_recall@5"] == 0.0 and out["timeliness"]["answer_recall@5_any_date"] == 1.0


def test_the_http_api_carries_dates_as_of_conflicts_and_date_filters(news: Assistant) -> None:
    import httpx
    from conftest import running_server

    from ui.server import create_server

    with running_server(create_server(news)) as url:
        chat = {"model": "rag", "messages": [{"role": "user", "content": INJURED}]}
        body = httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=120).json()
        assert body["as_of"] == "2025-03-14"
        [conflict] = body["conflicts"]
        values = {v["value"]: v for v in conflict["values"]}
        assert {v["date"] for v in values.values()} == {"2025-03-10", "2025-03-12"} and values["19"]["is_newest"]
        assert all(c["date"] for c in body["citations"])
        earlier = httpx.post(f"{url}/v1/chat/completions", json=chat | {"as_of": "2025-03-11"}, timeout=120).json()
        assert earlier["as_of"] == "2025-03-11" and earlier["conflicts"] == []

        search = {"query": "grain terminal fire", "k": 10}
        hits = httpx.post(f"{url}/v1/search", json=search | {"as_of": "2025-03-11"}, timeout=60).json()
        assert hits["scope"]["as_of"] == "2025-03-11" and hits["scope"]["as_of_source"] == "given"
        assert hits["data"] and all(h["date"] is None or h["date"] <= "2025-03-11" for h in hits["data"])
        ranged = {"since": "2025-03-11", "until": "2025-03-13"}
        hits = httpx.post(f"{url}/v1/search", json=search | {"where": ranged}, timeout=60).json()
        assert {name(h["source"]) for h in hits["data"]} == {"harbour-fire-update.md"}
        week = httpx.post(f"{url}/v1/search", json={"query": "What happened at the terminal this week?"}, timeout=60)
        assert week.json()["scope"]["time_window"] is not None
        assert any(h["window_rank"] for h in week.json()["data"])
        bad = httpx.post(f"{url}/v1/search", json=search | {"where": {"since": "2025-02-30"}}, timeout=60)
        assert bad.status_code == 400
        assert bad.json()["error"]["message"] == "since: '2025-02-30' is not a date; use YYYY-MM-DD"


@pytest.mark.parametrize(
    ("question", "subject"),
    [
        ("How has the Haiti mission developed?", "the Haiti mission"),
        ("What happened with the Haiti mission since June?", "the Haiti mission since June"),
        ("Give me a timeline of the harbour fire", "the harbour fire"),
        ("What are the developments in the Kenya deployment over time?", "the Kenya deployment"),
        ("How many officers did Kenya send?", "How many officers did Kenya send?"),  # no timeline: as asked
        # "the development of" names a thing, not a history: no timeline (SQuAD asks this way).
        (
            "What was the ultimate development of the vertical engine?",
            "What was the ultimate development of the vertical engine?",
        ),
    ],
)
def test_a_timeline_questions_subject_drops_its_framing(question: str, subject: str) -> None:
    assert timeline_subject(question) == subject


def test_a_timeline_question_over_one_document_answers_instead_of_abstaining(seeded_assistant: Assistant) -> None:
    # "developed" and "timeline" are no facts to find: before, they counted as key terms the corpus lacks.
    for question in ("How has the Haiti mission developed?", "Timeline of the Haiti mission"):
        answer = seeded_assistant.ask(question)
        assert not answer.abstained, answer.abstain_reason
        assert "270" in answer.text and answer.citations
    assert seeded_assistant.ask("How has the Premier League title race developed?").abstained
    # A follow-up's subject is a pronoun; the history says what "it" is.
    history = [("Who leads the Multinational Security Support Mission?", "Kenya leads it.")]
    follow_up = seeded_assistant.ask("How has it developed?", history=history)
    assert not follow_up.abstained and "Multinational Security Support Mission" in follow_up.condensed_query


def test_a_short_answer_comes_from_the_sentence_of_the_time_asked_about(seeded_assistant: Assistant) -> None:
    # The article tells of 270 officers now (dated 18 January 2025) and 400 "in June": the words of "how many
    # officers" match both, the time phrase decides.
    for question in ("How many officers were deployed this week?", "How many officers left on Friday?"):
        answer = seeded_assistant.ask(question)
        assert answer.short_answer is not None and answer.short_answer.text.startswith("270"), question
        assert any("in June" in c.quote for c in answer.citations), "the other sentence is still cited"
    june = seeded_assistant.ask("How many officers did Kenya send in June?")
    assert june.short_answer is not None and june.short_answer.text == "400"


def test_only_a_dated_sentence_that_names_no_time_in_the_window_is_set_aside() -> None:
    from rag.dates import TimeWindow
    from rag.news import dated_elsewhere

    def quoted(n: int, quote: str, day: str | None) -> Citation:
        return Citation(n=n, source="a.md", title="A", chunk_id="c", quote=quote, start=0, end=len(quote), date=day)

    citations = [
        quoted(1, "Kenya sent 400 officers in June.", "2025-01-18"),
        quoted(2, "Kenya has deployed 270 officers.", "2025-01-18"),  # no time named
        quoted(3, "After 400 in June, 270 more left on Friday.", "2025-01-18"),  # one time in the window
        quoted(4, "Kenya sent 400 officers in June.", None),  # undated: June of which year?
    ]
    this_week = TimeWindow(date(2025, 1, 13), date(2025, 1, 18), "this week")
    assert dated_elsewhere(citations, this_week) == {1}
    assert dated_elsewhere(citations, None) == frozenset()

"""Short answers: the kind a question asks for, the phrase picked from the cited quotes, and how each face shows it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from rag.assistant import Assistant
from rag.cli import format_answer
from rag.short_answer import asks_for_short_answer, candidate_phrases, find_short_answer, score_candidates
from rag.text import sentence_spans
from rag.types import Answer, Chunk, Citation, Document, ShortAnswer
from ui.render import citation_html, turn_sources_html

REPO = Path(__file__).resolve().parents[1]

# Written for these tests; the second paragraph quotes the NQ-open gold passage of "who got the first nobel prize
# in physics" (Wikipedia, "List of Nobel laureates in Physics", CC BY-SA 3.0).
PREFIX = "Intro line that the chunk does not hold.\n"
TEXT = (
    "The harbour authority of Port Aurelia said on 3 March 2024 that 1,250 containers had been lost in the storm. "
    "The new terminal was designed by the architect Ines Marlow and cost $48 million. "
    "Work on the breakwater began in June 2019 and is led by the engineer Tomas Verhoeven.\n"
    "The first Nobel Prize in Physics was awarded in 1901 to Wilhelm Conrad Röntgen, of Germany, "
    "who received 150,782 SEK."
)
DOCUMENT = PREFIX + TEXT
CHUNK = Chunk(id="c1", source="harbour.md", title="Harbour", start=len(PREFIX), end=len(DOCUMENT), text=TEXT)


def cite_all(chunk: Chunk = CHUNK) -> list[Citation]:
    """Every sentence of the chunk, cited as the answer step would."""
    return [Citation.of_span(n, chunk, a, b) for n, (a, b) in enumerate(sentence_spans(chunk.text), start=1)]


def short(question: str, citations: list[Citation] | None = None) -> ShortAnswer | None:
    found, score = find_short_answer(question, cite_all() if citations is None else citations, {"c1": CHUNK})
    assert 0.0 <= score <= 1.0
    assert (found is None) == (score == 0.0)
    return found


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many officers did Kenya send?", "number"),
        ("how much did the terminal cost", "number"),
        ("When did work on the breakwater begin?", "time"),
        ("what year was the first nobel prize in physics awarded", "time"),
        ("Who designed the terminal?", "person"),
        ("who got the first nobel prize in physics", "person"),
        ("Where is the harbour?", "place"),
        ("In which city is the terminal?", "place"),
        ("Which architect designed it?", "person"),  # a person noun asks for a person
        ("Which company designed it?", "entity"),
        ("what is the name of the storm", "entity"),
        # NQ's statements and "what is the <quantity>": no wh-word up front.
        ("the first nobel prize in physics went to", "person"),
        ("the new terminal was designed by", "person"),
        ("architect of the new terminal", "person"),
        ("what is the population of port aurelia", "number"),
        ("number of containers lost in the storm", "number"),
        ("what is the harbour authority called", None),
        ("Why were the containers lost?", None),
        ("What does the harbour authority do?", None),
        ("Summarise the article", None),
    ],
)
def test_asks_for_short_answer(question: str, kind: str | None):
    assert asks_for_short_answer(question) == kind


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How many containers were lost in the storm?", "1,250"),
        ("How much did the new terminal cost?", "$48 million"),
        ("Who designed the new terminal?", "Ines Marlow"),
        ("When did work on the breakwater begin?", "June 2019"),
        ("Who leads the work on the breakwater?", "Tomas Verhoeven"),
        ("who got the first nobel prize in physics", "Wilhelm Conrad Röntgen"),
        ("what year was the first nobel prize in physics awarded", "1901"),
    ],
)
def test_the_phrase_that_answers_with_exact_document_offsets(question: str, expected: str):
    found = short(question)
    assert found is not None and found.text == expected
    assert DOCUMENT[found.start : found.end] == found.text  # offsets into the document, not the chunk
    cited = next(c for c in cite_all() if c.n == found.n)
    assert cited.start <= found.start < found.end <= cited.end
    assert (found.source, found.chunk_id) == ("harbour.md", "c1")


def test_never_answers_with_the_questions_own_words():
    chunk = Chunk(
        id="c1",
        source="k.md",
        title="K",
        start=0,
        end=0,
        text="The Kenyan police are led by Inspector General Japhet Koome.",
    )
    chunk = chunk.model_copy(update={"end": len(chunk.text)})
    citation = Citation.of_span(1, chunk, 0, len(chunk.text))
    found, _ = find_short_answer("Who leads the Kenyan police?", [citation], {"c1": chunk})
    assert found is not None and "Kenyan" not in found.text
    assert found.text.endswith("Japhet Koome")
    # Every phrase of the sentence is in the question: nothing is left to answer with.
    found, score = find_short_answer("Who leads the Kenyan police?", [Citation.of_span(1, chunk, 0, 28)], {"c1": chunk})
    assert found is None and score == 0.0


def test_the_likeliest_quote_is_read_first():
    citations = cite_all()[1:3]  # the architect's sentence and the engineer's
    question = "Who was the person in charge?"
    default = short(question, citations)
    assert default is not None
    [other] = [c for c in citations if c.n != default.n]
    found, _ = find_short_answer(question, citations, {"c1": CHUNK}, likeliest=(other.source, other.start))
    assert found is not None and found.n == other.n and found.text in other.quote
    assert found.text in ("Ines Marlow", "Tomas Verhoeven") and found.text != default.text
    # Pointing at a quote that is not cited changes nothing.
    unrelated, _ = find_short_answer(question, citations, {"c1": CHUNK}, likeliest=("elsewhere.md", 0))
    assert unrelated == default


def test_none_when_nothing_fits():
    words_only = Chunk(
        id="c1", source="w.md", title="W", start=0, end=38, text="the storm was worse than anyone feared"
    )
    citation = Citation.of_span(1, words_only, 0, 38)
    assert find_short_answer("How many containers were lost?", [citation], {"c1": words_only}) == (None, 0.0)
    assert find_short_answer("Who designed it?", [citation], {"c1": words_only}) == (None, 0.0)
    assert short("Why were the containers lost?") is None  # not a short-answer question
    assert short("How many containers were lost?", []) is None


def test_a_citation_that_does_not_match_its_chunk_is_not_read():
    forged = Citation.of_span(1, CHUNK, 0, 20).model_copy(update={"quote": "1,250 containers!!!!"})
    assert short("How many containers were lost?", [forged]) is None


def test_candidates_keep_names_numbers_and_dates_whole():
    text = "Meanwhile, U.S. President-elect Donald Trump pledged over $300 million on May 18, 2018 in Port-au-Prince."
    found = {(p.rule, text[p.start : p.end]) for p in candidate_phrases(text, 0, len(text))}
    assert ("name", "U.S. President-elect Donald Trump") in found
    assert ("number", "$300 million") in found
    assert ("time", "May 18, 2018") in found
    assert ("name", "Port-au-Prince") in found
    assert not any(phrase == "Meanwhile" for _, phrase in found)


def answer_with_short() -> tuple[Answer, ShortAnswer]:
    citation = cite_all()[0]
    found = short("How many containers were lost in the storm?", [citation])
    assert found is not None
    return Answer(text=f"{citation.quote} [1]", citations=(citation,), short_answer=found), found


def test_cli_format_shows_the_short_answer_in_bold():
    answer, found = answer_with_short()
    text = format_answer(answer)
    assert f"\x1b[1m{found.text}\x1b[0m" in text  # bold on a terminal
    plain = click.unstyle(text)  # what typer.echo writes to a pipe
    assert "Short answer: 1,250 [1]" in plain.splitlines()
    assert plain.startswith(answer.text)  # the streamed text stays a prefix of the formatted answer
    assert "Short answer" not in format_answer(answer.model_copy(update={"short_answer": None}))


def test_sources_panel_bolds_the_short_answer_inside_the_quote_escaped():
    text = "The award went to <Smith & Sons> in 1999. Nothing else."
    doc = Document(source="a.md", title="A", text=text)
    chunk = Chunk(id="c1", source="a.md", title="A", start=0, end=len(text), text=text)
    citation = Citation.of_span(1, chunk, 0, 41)
    found = ShortAnswer(text="<Smith & Sons>", n=1, source="a.md", chunk_id="c1", start=18, end=32)
    html = citation_html(citation, 1, doc, is_open=True, short=found)
    assert (
        '<mark>The award went to <strong class="short-answer">&lt;Smith &amp; Sons&gt;</strong> in 1999.</mark>' in html
    )
    assert "<Smith" not in html
    # Without the document on this machine, the quote alone, still bolded at the right place.
    alone = citation_html(citation, 1, None, is_open=True, short=found)
    assert '<strong class="short-answer">&lt;Smith &amp; Sons&gt;</strong>' in alone
    # A short answer whose text is not at its offsets is shown unbolded rather than misplaced.
    wrong = found.model_copy(update={"start": 19, "end": 33})
    assert "<strong" not in citation_html(citation, 1, doc, is_open=True, short=wrong)
    # The panel bolds only inside the citation the short answer belongs to.
    answer = Answer(text="x [1]", citations=(citation,), short_answer=found)
    assert turn_sources_html("Who got the award?", answer, 1, lambda _: doc).count("<strong") == 2  # quote, reader
    other = answer.model_copy(update={"short_answer": found.model_copy(update={"n": 2})})
    assert "<strong" not in turn_sources_html("Who got the award?", other, 1, lambda _: doc)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How many additional police officers did Kenya send to Haiti?", "270"),
        ("How many officers did Kenya send in June?", "400"),
        ("How much has the U.S. pledged to fund the deployment?", "$300 million"),
        ("Who is the U.S. president-elect?", "Donald Trump"),
        ("Which airport did the officers leave from?", "Jomo Kenyatta International Airport"),
    ],
)
def test_ask_gives_a_verified_short_answer(seeded_assistant: Assistant, question: str, expected: str):
    answer = seeded_assistant.ask(question)
    found = answer.short_answer
    assert found is not None and found.text == expected, answer.text
    assert seeded_assistant.document_text(found.source)[found.start : found.end] == found.text  # type: ignore[index]
    assert found.n in {c.n for c in answer.citations}
    assert 0.0 < answer.debug["short_answer_score"] <= 1.0


def test_ask_without_a_short_answer_question_or_evidence(seeded_assistant: Assistant):
    assert seeded_assistant.ask("Why did Kenya deploy officers to Haiti?").short_answer is None
    refused = seeded_assistant.ask("What is the recipe for ugali?")
    assert refused.abstained and refused.short_answer is None


def test_cli_ask_prints_and_serialises_the_short_answer(seeded_home: Path):
    env = {"RAG_HOME": str(seeded_home), "PATH": str(Path(sys.executable).parent), "HF_HUB_OFFLINE": "1"}
    question = "How many additional police officers did Kenya send to Haiti?"
    for args in (["--json"], []):
        done = subprocess.run(
            [sys.executable, "-m", "rag", "ask", question, *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        if args:
            out = json.loads(done.stdout)["short_answer"]
            assert out["text"] == "270" and out["end"] - out["start"] == 3 and out["n"] == 1
        else:
            assert "Short answer: 270 [1]" in done.stdout.splitlines() and "\x1b[" not in done.stdout


# Written for these tests.
SONG = (
    "The harbour song was written by Ada Lark and Ben Moss and sung by Cleo Vance. "
    "The harbour flooded in 1953, in 1978 and again in 2011. "
    "The flood report was published on May 18, 2012 by Dr. Martin Cooper."
)
SONG_CHUNK = Chunk(id="c2", source="song.md", title="Harbour song", start=0, end=len(SONG), text=SONG)


def scored(question: str, only: int | None = None) -> dict[str, dict[str, float]]:
    """Each candidate phrase of SONG's sentences (or of its sentence number `only`), with its features."""
    spans = list(enumerate(sentence_spans(SONG), start=1))
    sentences = [(n, SONG_CHUNK, a, b) for n, (a, b) in spans if only in (None, n)]
    kind = asks_for_short_answer(question)
    assert kind is not None
    return {SONG[s.phrase.start : s.phrase.end]: s.features for s in score_candidates(question, kind, sentences)}


def test_a_list_of_names_is_also_each_name_and_a_title_keeps_its_dot():
    names = {SONG[p.start : p.end] for p in candidate_phrases(SONG, 0, len(SONG)) if p.rule == "name"}
    assert names == {"Ada Lark and Ben Moss", "Ada Lark", "Ben Moss", "Cleo Vance", "Dr. Martin Cooper"}


def test_a_capitalised_stop_word_stays_in_its_phrase():
    found, _ = find_short_answer(
        "When was the flood report published?",
        [Citation.of_span(n, SONG_CHUNK, a, b) for n, (a, b) in enumerate(sentence_spans(SONG), start=1)],
        {"c2": SONG_CHUNK},
    )
    assert found is not None and found.text == "May 18, 2012"  # "May" is a stop word of questions
    text = "The film starred Will Smith."
    chunk = Chunk(id="c3", source="f.md", title="F", start=0, end=len(text), text=text)
    found, _ = find_short_answer("who starred in the film", [Citation.of_span(1, chunk, 0, len(text))], {"c3": chunk})
    assert found is not None and found.text == "Will Smith"  # was "Smith"


def test_the_questions_verb_just_before_a_name_is_a_cue():
    features = scored("Who sang the harbour song?")
    assert features["Cleo Vance"]["cue_before"] == 1.0  # "sung by": sang and sung share the cue "sing"
    assert features["Ada Lark"]["cue_before"] == 0.0  # "written by"
    assert scored("Who wrote the harbour song?")["Ada Lark"]["cue_before"] == 1.0
    assert features["Ada Lark and Ben Moss"]["holds_and"] == 1.0
    assert features["Ben Moss"]["in_list"] == 1.0 and features["Cleo Vance"]["in_list"] == 0.0


def test_last_and_first_mark_the_latest_and_earliest_year():
    def marked(question: str, only: int | None = 2) -> set[str]:
        return {phrase for phrase, f in scored(question, only).items() if f["extreme_year"]}

    assert marked("When did the harbour last flood?") == {"2011"}
    assert marked("When did the harbour first flood?") == {"1953"}
    assert marked("When did the harbour flood?") == set()
    # Over every cited sentence: the latest year of all, here the report's.
    assert marked("When did the harbour last flood?", None) == {"2012", "May 18, 2012"}


def test_a_decade_is_a_time_phrase_but_names_no_year():
    text = "The fort was built in the 880s. It was rebuilt in 1120 and again in 1450."
    chunk = Chunk(id="c4", source="fort.md", title="Fort", start=0, end=len(text), text=text)
    spans = [(n, chunk, a, b) for n, (a, b) in enumerate(sentence_spans(text), start=1)]
    phrases = {
        text[s.phrase.start : s.phrase.end]: s.features
        for s in score_candidates("when was the fort last rebuilt", "time", spans)
    }
    assert "880s" in phrases  # was a crash: int("880s")
    assert phrases["1450"]["extreme_year"] == 1.0 and phrases["880s"]["extreme_year"] == 0.0

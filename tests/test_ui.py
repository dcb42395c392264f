"""The chat's parts without a browser: upload checks and ingest against a real store, and the HTML it renders."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import LIBRARY_DOC

from rag.assistant import Assistant
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.types import Answer, Candidate, Chunk, Citation, Document, DocumentInfo
from ui import render
from ui.uploads import UploadRefused, delete_document, ingest_uploads, read_upload, sanitize_filename, uploads_dir

HARBOUR_DOC = """Harbour dredging
The port authority began dredging the northern harbour channel in May to let larger ferries dock.
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd.md", "passwd.md"),
        ("C:\\Users\\me\\Report (final).PDF", "Report_final.pdf"),
        ("Ünïcödé notes.txt", "Unicode_notes.txt"),
        (".hidden.txt", "hidden.txt"),
        ("...", "upload"),
        ("a" * 300 + ".html", "a" * 115 + ".html"),
    ],
)
def test_sanitize_filename_keeps_a_plain_base_name(name: str, expected: str) -> None:
    assert sanitize_filename(name) == expected


def refusal(path: Path, name: str, *, max_bytes: int = 1000) -> str:
    with pytest.raises(UploadRefused) as refused:
        read_upload(path, name, max_bytes=max_bytes)
    return str(refused.value)


def test_read_upload_names_the_reason(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello there")
    assert read_upload(text, "notes.txt", max_bytes=1000) == b"hello there"
    assert "not accepted" in refusal(text, "notes.exe")
    assert "upload limit" in refusal(text, "notes.txt", max_bytes=5)
    empty = tmp_path / "empty.md"
    empty.write_bytes(b"")
    assert refusal(empty, "empty.md") == "the file is empty"
    assert "no %PDF header" in refusal(text, "fake.pdf")


@pytest.fixture
def assistant(settings: Settings, embeddings: LocalEmbeddings) -> Assistant:
    return Assistant(settings, embeddings=embeddings)


def incoming(tmp_path: Path, name: str, data: bytes) -> tuple[Path, str]:
    """A file as Gradio hands it over: somewhere in its cache, under the user's original name."""
    folder = tmp_path / "gradio-cache" / str(len(list(tmp_path.glob("gradio-cache/*"))))
    folder.mkdir(parents=True)
    path = folder / name
    path.write_bytes(data)
    return path, name


def test_uploads_are_indexed_deduplicated_and_failures_explained(tmp_path: Path, assistant: Assistant) -> None:
    home = assistant.settings.home
    report = ingest_uploads(
        [
            incoming(tmp_path, "Zephyr library.md", LIBRARY_DOC.encode()),
            incoming(tmp_path, "same bytes.md", LIBRARY_DOC.encode()),
            incoming(tmp_path, "tool.exe", b"MZ\x90\x00"),
            incoming(tmp_path, "broken.pdf", b"%PDF-1.4\nnot really a pdf"),
            incoming(tmp_path, "binary.txt", bytes(range(256)) * 8),
            incoming(tmp_path, "harbour.txt", HARBOUR_DOC.encode()),
        ],
        assistant,
    )
    by_name = {o.name: o for o in report.outcomes}
    assert by_name["Zephyr_library.md"].status == "added"
    assert by_name["same_bytes.md"].status == "duplicate"
    assert "not accepted" in by_name["tool.exe"].detail
    for name in ("broken.pdf", "binary.txt"):
        assert by_name[name].status == "failed" and by_name[name].detail, by_name[name]
    # Only the good file is kept, inside home; failed ones leave nothing behind.
    kept = sorted(p.name for p in uploads_dir(home).iterdir() if p.is_file())
    assert kept == ["Zephyr_library.md", "harbour.txt"]
    sources = [d.source for d in assistant.documents()]
    library = str((uploads_dir(home) / "Zephyr_library.md").resolve())
    assert sorted(sources) == sorted([library, str((uploads_dir(home) / "harbour.txt").resolve())])

    again = ingest_uploads([incoming(tmp_path, "Zephyr library.md", LIBRARY_DOC.encode())], assistant)
    assert [o.status for o in again.outcomes] == ["duplicate"]
    changed = LIBRARY_DOC.replace("48,000", "52,000").encode()
    updated = ingest_uploads([incoming(tmp_path, "Zephyr library.md", changed)], assistant)
    assert [o.status for o in updated.outcomes] == ["updated"]
    assert len(assistant.documents()) == 2

    answer = assistant.ask("How many books did the Zephyr Municipal Library open with?")
    assert "52,000" in answer.text and answer.citations

    assert delete_document(library, assistant) > 0
    assert [Path(d.source).name for d in assistant.documents()] == ["harbour.txt"]
    assert not (uploads_dir(home) / "Zephyr_library.md").exists()
    assert "52,000" not in assistant.ask("How many books did the Zephyr Municipal Library open with?").text


def make_answer(**changes: object) -> Answer:
    text = "Kenya sent 270 officers [1]. More came later [2]. See also [7]."
    doc_text = "Intro. Kenya sent 270 <officers> to Haiti. The end."
    start = doc_text.index("Kenya")
    end = doc_text.index(" The end")
    chunk = Chunk(id="c1", source="/d/k.md", title="Kenya", start=0, end=len(doc_text), text=doc_text)
    citations = (
        Citation(n=1, source="/d/k.md", title="Kenya", chunk_id="c1", quote=doc_text[start:end], start=start, end=end),
        Citation(n=2, source="/d/k.md", title="Kenya", chunk_id="c1", quote="Intro.", start=0, end=6, page=2),
    )
    fields: dict[str, object] = {
        "text": text,
        "citations": citations,
        "condensed_query": "kenya officers haiti",
        "candidates": (
            Candidate(
                chunk=chunk,
                rank=1,
                fused_rank=1,
                fused_score=0.0328,
                bm25_rank=1,
                bm25_score=3.2,
                vector_rank=2,
                rerank_score=2.45,
            ),
            Candidate(
                chunk=chunk.model_copy(update={"id": "c2", "text": "Other text"}),
                rank=2,
                fused_rank=2,
                fused_score=0.016,
                vector_rank=1,
                vector_score=0.61,
            ),
        ),
    }
    fields.update(changes)
    return Answer(**fields)  # type: ignore[arg-type]


DOC = Document(
    source="/d/k.md",
    title="Kenya",
    text="Intro. Kenya sent 270 <officers> to Haiti. The end.",
    metadata={"date": "2025-01-18"},
)


def test_answer_markdown_links_only_cited_markers() -> None:
    markdown = render.answer_markdown(make_answer(), turn=3)
    assert "[[1]](#src-3-1)" in markdown and "[[2]](#src-3-2)" in markdown
    assert "See also \\[7\\]\\." in markdown and "#src-3-7" not in markdown  # an uncited marker is only text


def test_answer_markdown_shows_notice_and_abstain_reason() -> None:
    answer = make_answer(
        text="I can't answer that.",
        citations=(),
        status="abstained",
        abstain_reason="best evidence 0.12 < threshold 0.42",
        notice="The LLM was unreachable; this answer was extracted.",
    )
    markdown = render.answer_markdown(answer, turn=1)
    assert markdown.startswith("> **Note:** The LLM was unreachable")
    assert "*Why no answer: best evidence 0\\.12 &lt; threshold 0\\.42*" in markdown


def test_sources_show_the_quote_marked_in_place_and_escaped() -> None:
    html = render.sources_html([("q1", make_answer()), ("failed", None), ("q3", make_answer())], lambda s: DOC)
    assert html.index('id="src-3-1"') < html.index('id="src-1-1"')  # latest first
    assert 'id="src-2-' not in html  # a failed turn has no sources
    assert "<mark>Kenya sent 270 &lt;officers&gt; to Haiti.</mark>" in html
    assert "Kenya · 2025-01-18" in html and "Kenya · p. 2 · 2025-01-18" in html
    assert "Read the whole document" in html


def test_sources_fall_back_to_the_quote_when_the_text_is_missing_or_differs() -> None:
    html = render.sources_html([("q", make_answer())], lambda s: None)
    assert "Read the whole document" not in html and "<mark>Kenya sent 270 &lt;officers&gt; to Haiti.</mark>" in html
    changed = DOC.model_copy(update={"text": "Completely different text now, nothing at the offsets."})
    assert "Read the whole document" not in render.sources_html([("q", make_answer())], lambda s: changed)


def test_abstention_panel_says_why() -> None:
    answer = make_answer(text="No.", citations=(), status="abstained", abstain_reason="best 0.1 < 0.4")
    assert "best 0.1 &lt; 0.4" in render.sources_html([("q", answer)], lambda s: None)


def test_inspector_lists_ranks_scores_and_cited() -> None:
    html = render.inspector_html("what?", make_answer())
    assert "kenya officers haiti" in html
    rows = html.split("<tr")[2:]
    assert 'class="cited"' in rows[0] and "3.20" in rows[0] and "0.0328" in rows[0] and "<td>2.450</td>" in rows[0]
    assert 'class=""' in rows[1] and "0.610" in rows[1] and "–" in rows[1]
    assert "Evidence:" not in html  # no extractive confidence in this answer's debug


def test_inspector_shows_confidence_against_the_threshold() -> None:
    debug = {"confidence": 0.31, "threshold": 0.39, "semantic": 0.52, "coverage": 0.4, "type_ok": 0.0}
    html = render.inspector_html("what?", make_answer(status="abstained", debug=debug))
    assert "confidence 0.31 against threshold 0.39 (RAG_ABSTAIN_THRESHOLD): abstained" in html
    assert "best sentence cosine 0.52, key terms covered 40%, answer type missing" in html


def test_documents_table_and_badge() -> None:
    info = DocumentInfo(source="/d/k.md", title="Kenya <b>", chunks=3, ingested_at="2025-01-19T10:00:00+00:00")
    html = render.documents_html([info])
    assert "Kenya &lt;b&gt;" in html and "1 documents, 3 chunks" in html
    assert "Extractive (no LLM)" in render.mode_badge("extractive", None)
    assert "LLM: smollm2" in render.mode_badge("llm", "smollm2")


HOSTILE_TEXT = [
    "![pixel](http://127.0.0.9:9/pixel.png)",
    '<img src="http://127.0.0.9:9/img.png" onerror="window.__pwned=1"> <script>window.__pwned=2</script>',
    "[link](javascript:alert(1)) <http://127.0.0.9:9/auto> http://127.0.0.9:9/bare www.example.com a@b.co",
    "# heading",
    "> quote",
    "- item",
    "1. item",
    "**bold** _em_ `code` ~~strike~~ | a | b |",
    "$$\\href{javascript:alert(1)}{x}$$ &lt;b&gt; &amp; \\*",
    "[ref]: http://127.0.0.9:9/ref.png",
]


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_inert_text_renders_as_exactly_itself(text: str) -> None:
    from html import unescape

    from markdown_it import MarkdownIt

    # CommonMark with raw HTML on (the browser test checks Gradio's own renderer): one paragraph of the words as
    # written, and no markup at all.
    html = MarkdownIt("commonmark").enable("strikethrough").enable("table").render(render.inert(text))
    inner = html.removeprefix("<p>").removesuffix("</p>\n")
    assert "<" not in inner and unescape(inner) == text.strip(), html


def test_every_untrusted_part_of_a_chat_message_is_inert() -> None:
    bad = "![x](http://127.0.0.9:9/x.png)"
    answer = make_answer(
        text=f"{bad} [1] [2]",
        notice=bad,
        status="abstained",
        abstain_reason=bad,
        citations=tuple(c.model_copy(update={"title": bad}) for c in make_answer().citations),
    )
    inert = render.inert(bad)
    markdown = render.answer_markdown(answer, turn=1)
    assert bad not in markdown and markdown.count(inert) == 5  # text, notice, reason, two titles
    assert "[[1]](#src-1-1)" in markdown and "[[2]](#src-1-2)" in markdown  # our links still work
    for shown in (render.error_markdown(bad), render.question_markdown(bad), render.partial_markdown(bad)):
        assert bad not in shown and inert in shown

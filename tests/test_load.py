"""ingest.load: one reader per format, real files written to tmp_path (PDFs by reportlab, DOCX by python-docx)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.clean import clean_document
from ingest.load import find_files, load_file
from rag.types import LoadError

MB = 2**20
ARTICLE_HTML = """<html><head><title>Flood waters rise in Kisumu</title></head><body>
<nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a></nav>
<article><h1>Flood waters rise in Kisumu</h1>
<p>Heavy rains caused the Nyando river to burst its banks on Tuesday, displacing hundreds of families.</p>
<p>County officials said relief supplies would be flown in by helicopter because the main road was cut off.</p>
<p>Forecasters expect the rains to continue until the end of the month, raising fears of damage to crops.</p>
</article>
<footer>Privacy policy | Cookie settings | Terms of use</footer></body></html>"""


def load(path: Path, max_mb: float = 50):
    return load_file(path, max_bytes=int(max_mb * MB), timeout_s=60, memory_mb=1024)


def write_pdf(path: Path, pages: list[list[str]], title: str | None = None) -> Path:
    """A real PDF with one text line per entry, one page per list."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    if title:
        pdf.setTitle(title)
    for lines in pages:
        y = 800
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 16
        pdf.showPage()
    pdf.save()
    return path


def test_text_front_matter_gives_title_and_metadata_and_is_not_in_the_text(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text(
        '---\ntitle: "Budget passed"\ndate: 2025-02-01\nDateline: Nairobi\n---\nThe assembly passed the budget.\n'
    )
    doc = load(path)
    assert doc.title == "Budget passed"
    assert doc.metadata == {"date": "2025-02-01", "dateline": "Nairobi"}
    assert doc.text == "The assembly passed the budget.\n"
    assert doc.source == str(path)
    assert doc.pages == ()


def test_markdown_title_from_first_heading_and_txt_title_from_file_name(tmp_path: Path) -> None:
    md = tmp_path / "report.md"
    md.write_text("Intro line.\n\n# Water levels in 2024 #\n\nLake Victoria rose.\n")
    assert load(md).title == "Water levels in 2024"
    txt = tmp_path / "kenya-police_haiti.txt"
    txt.write_text("# not a title in plain text\nBody.\n")
    assert load(txt).title == "Kenya police haiti"


def test_utf8_bom_and_crlf_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "bom.md"
    path.write_bytes("\ufeff---\r\ntitle: Café\r\n---\r\nNaïve text.\r\n".encode())
    doc = load(path)
    assert doc.title == "Café"
    assert doc.text == "Naïve text.\n"


def test_html_keeps_the_article_and_drops_navigation(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(ARTICLE_HTML)
    doc = load(path)
    assert doc.title == "Flood waters rise in Kisumu"
    assert "Nyando river to burst its banks" in doc.text
    assert "relief supplies would be flown in by helicopter" in doc.text
    for chrome in ("Sport", "Privacy policy", "Cookie settings", "<p>"):
        assert chrome not in doc.text


def test_html_without_readable_text_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.htm"
    path.write_text("<html><body><script>var x = 1;</script></body></html>")
    with pytest.raises(LoadError, match="no readable text"):
        load(path)


def test_pdf_text_per_page_with_exact_page_spans(tmp_path: Path) -> None:
    path = write_pdf(
        tmp_path / "report.pdf",
        [
            ["Annual water report.", "Rainfall was above average in the west."],
            ["Page two covers the dams.", "Masinga dam reached capacity in May."],
            ["Page three lists the authors."],
        ],
        title="Water Report 2024",
    )
    doc = clean_document(load(path))
    assert doc.title == "Water Report 2024"
    assert [span.page for span in doc.pages] == [1, 2, 3]
    expected = {1: "Rainfall was above average", 2: "Masinga dam reached capacity", 3: "lists the authors"}
    for span in doc.pages:
        assert expected[span.page] in doc.text[span.start : span.end]
        assert doc.page_at(span.start) == span.page
    masinga = doc.text.index("Masinga")
    assert doc.page_at(masinga) == 2
    # Spans tile the text in order, separated only by the blank line clean_document puts between pages.
    assert doc.pages[0].start == 0 and doc.pages[-1].end == len(doc.text)
    for before, after in zip(doc.pages, doc.pages[1:], strict=False):
        assert doc.text[before.end : after.start] == "\n\n"


def test_pdf_without_title_is_named_after_the_file(tmp_path: Path) -> None:
    doc = load(write_pdf(tmp_path / "field_notes.pdf", [["Some words on a page."]]))
    assert doc.title == "Field notes"


def test_docx_paragraphs_and_title(tmp_path: Path) -> None:
    import docx

    word = docx.Document()
    word.core_properties.title = "Minutes of the board"
    word.add_paragraph("The board met on Monday.")
    word.add_paragraph("It approved the new clinic in Garissa.")
    path = tmp_path / "minutes.docx"
    word.save(str(path))
    doc = load(path)
    assert doc.title == "Minutes of the board"
    assert "The board met on Monday." in doc.text
    assert "approved the new clinic in Garissa" in doc.text


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", "empty file"),
        ("blob.txt", b"\x00\x01\x02binary\x00" * 10, "binary file"),
        ("latin1.txt", "café au lait".encode("latin-1"), "not UTF-8"),
        ("broken.pdf", b"%PDF-1.4\n this is not really a pdf \n%%EOF", "corrupt PDF"),
        ("truncated.pdf", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R", "corrupt PDF"),
        ("broken.docx", b"PK\x03\x04 not a zip archive at all", "corrupt DOCX"),
        ("image.png", b"\x89PNG\r\n\x1a\n", "unsupported file type '.png'"),
    ],
)
def test_bad_files_raise_one_line_load_errors(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LoadError, match=reason) as caught:
        load(path)
    assert "\n" not in str(caught.value)


def test_too_large_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("word " * 60_000)  # 300,000 bytes
    with pytest.raises(LoadError, match=r"too large \(0\.3 MB > 0\.2 MB limit, RAG_MAX_FILE_MB\)"):
        load(path, max_mb=0.2)
    assert load(path, max_mb=1).text.startswith("word word")


def test_missing_or_unreadable_path_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no such file or directory"):
        load(tmp_path / "gone.txt")
    with pytest.raises(LoadError, match="no such file or directory"):
        load(tmp_path / "gone-without-suffix")
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    (folder / "x").write_text("x")
    with pytest.raises(LoadError, match="unreadable"):
        load(folder)


def test_find_files_is_recursive_sorted_once_each_and_skips_hidden(tmp_path: Path) -> None:
    for rel in ("b.txt", "a/z.md", "a/c.pdf", ".git/config", "a/.cache/x.txt", ".hidden.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    single = tmp_path / "b.txt"
    found = list(find_files([tmp_path, single]))
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/c.pdf", "a/z.md", "b.txt"]


@pytest.mark.timeout(120)
def test_markdown_heading_with_a_huge_run_of_spaces_gets_its_title_in_linear_time(tmp_path: Path) -> None:
    # The old heading regex backtracked cubically: 2,000 spaces took 27 s, so 200,000 would never finish.
    path = tmp_path / "spaces.md"
    path.write_text("# Flood" + " " * 200_000 + "warning ##\nThe river rose.\n")
    assert load(path).title == "Flood" + " " * 200_000 + "warning"
    for heading, title in [("# C#", "C#"), ("# Budget passed ##", "Budget passed"), ("# ##", "Empty heading")]:
        (tmp_path / "empty-heading.md").write_text(f"{heading}\nBody.\n")
        assert load(tmp_path / "empty-heading.md").title == title

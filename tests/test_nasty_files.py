"""Hostile and odd files, each generated here: each is a one-line LoadError or refusal, never a hang or a crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from fuzzing import FONT, hello_pdf, page, raw_pdf, stream

from ingest.load import PARSER, find_files, load_file
from rag.types import Document, IngestFailure, LoadError

MB = 2**20
# Generous: each nasty below is refused by a limit or a check long before a minute passes.
LIMITS = {"max_bytes": 50 * MB, "timeout_s": 60.0, "memory_mb": 1024}
RAG = shutil.which("rag", path=str(Path(sys.executable).parent)) or "rag"


def load(path: Path, **limits: float) -> Document:
    return load_file(path, **(LIMITS | limits))  # type: ignore[arg-type]


def looped_pdf() -> bytes:
    """The page tree's root lists itself among its kids."""
    content = stream(b"BT /F1 12 Tf 72 720 Td (Round and round) Tj ET")
    catalog, pages = b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>"
    return raw_pdf([catalog, pages, page(2, 4, 5), content, FONT])


def page_bomb_pdf(levels: int, fanout: int, ops: int) -> bytes:
    """fanout**levels pages from a few KB: every node's kids are the same next node; every page one big stream."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(levels):
        kid = 3 + level
        count = fanout ** (levels - level)
        objects.append(b"<< /Type /Pages /Kids [" + b"%d 0 R " % kid * fanout + b"] /Count %d >>" % count)
    leaf = len(objects) + 1
    objects.append(page(leaf - 1, leaf + 1, leaf + 2))
    objects.append(stream(b"BT /F1 12 Tf 72 720 Td " + b"(boom) Tj " * ops + b"ET", deflate=True))
    objects.append(FONT)
    return raw_pdf(objects)


def test_pdf_whose_page_tree_loops_is_a_corrupt_pdf(tmp_path: Path) -> None:
    path = tmp_path / "loop.pdf"
    path.write_bytes(looped_pdf())
    with pytest.raises(LoadError, match=r"corrupt PDF \(.*cyclic"):
        load(path)


def test_pdf_bomb_with_more_pages_than_pypdf_walks_is_a_corrupt_pdf(tmp_path: Path) -> None:
    path = tmp_path / "million-pages.pdf"
    path.write_bytes(page_bomb_pdf(levels=6, fanout=10, ops=1))  # 10**6 pages declared, under 2 KB on disk
    assert path.stat().st_size < 4096
    with pytest.raises(LoadError, match=r"corrupt PDF \(.*limit"):
        load(path)


def test_pdf_bomb_that_parses_for_hours_is_stopped_by_the_time_limit_and_the_next_file_parses(tmp_path: Path) -> None:
    # 99,000 pages (under pypdf's page limit), each a 100,000-operator stream: hours of text extraction.
    path = tmp_path / "slow.pdf"
    path.write_bytes(page_bomb_pdf(levels=3, fanout=46, ops=100_000))
    started = time.monotonic()
    with pytest.raises(LoadError, match=r"^parsing took longer than 2 s \(RAG_PARSE_TIMEOUT_S\)$"):
        load(path, timeout_s=2)
    assert time.monotonic() - started < 60  # the worker was killed, not waited for
    good = tmp_path / "good.pdf"
    good.write_bytes(hello_pdf())
    assert "Hello from a small PDF." in load(good).text


def test_pdf_nested_100000_deep_is_an_empty_document_not_a_crash(tmp_path: Path) -> None:
    depth = 100_000
    content = stream(b"BT /F1 12 Tf 72 720 Td (Deep inside) Tj ET")
    deep = b"/Deep " + b"[" * depth + b"]" * depth
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"]
    path = tmp_path / "deep.pdf"
    path.write_bytes(raw_pdf([*objects, page(2, 4, 5, deep), content, FONT]))
    # pypdf gives up on the page (no recursion into the C stack, no crash): an empty text, which ingest reports as
    # "no text after cleaning".
    assert load(path).text == ""


def test_pdf_that_inflates_past_the_memory_limit_is_refused_and_the_worker_recovers(tmp_path: Path) -> None:
    # A 70 MB content stream deflated to well under 1 MB: more than the 64 MB this parse may add.
    content = stream(b"BT /F1 12 Tf 72 720 Td " + b"(memory) Tj " * 6_000_000 + b"ET", deflate=True)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"]
    path = tmp_path / "inflate.pdf"
    path.write_bytes(raw_pdf([*objects, page(2, 4, 5), content, FONT]))
    assert path.stat().st_size < MB
    with pytest.raises(LoadError, match=r"^needs more than 64 MB of memory to parse \(RAG_PARSE_MEMORY_MB\)$"):
        load(path, memory_mb=64)
    good = tmp_path / "good.pdf"
    good.write_bytes(hello_pdf(b"After the bomb."))
    assert "After the bomb." in load(good, memory_mb=64).text


def test_parser_that_dies_mid_file_is_one_line_and_the_next_file_parses(tmp_path: Path) -> None:
    slow = tmp_path / "slow.pdf"
    slow.write_bytes(page_bomb_pdf(levels=3, fanout=46, ops=100_000))
    good = tmp_path / "good.pdf"
    good.write_bytes(hello_pdf())
    assert load(good).text  # the worker is up

    def kill_the_parser() -> None:  # failure injection: the worker dies as on a segfault in a C parser
        time.sleep(0.5)
        assert PARSER._process is not None
        PARSER._process.kill()

    killer = threading.Thread(target=kill_the_parser)
    killer.start()
    with pytest.raises(LoadError, match=r"^the parser crashed on this file \(exit code -9\)$"):
        load(slow)  # hours of work: it is still parsing when the kill lands
    killer.join()
    assert "Hello" in load(good).text  # a dead worker is replaced for the next file


def test_html_nested_100000_deep_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.html"
    path.write_text("<html><body>" + "<div>" * 100_000 + "<p>Deep in the divs.</p>" + "</div>" * 100_000)
    # libxml2 stops building the tree at its depth limit, so the text is out of reach: one line, no crash.
    with pytest.raises(LoadError, match=r"^no readable text in the HTML$"):
        load(path)


def docx_bomb(path: Path, inflated_mb: int) -> Path:
    """A real Word file (python-docx) plus one member of inflated_mb zeros, which deflate about 1000:1."""
    import docx

    word = docx.Document()
    word.add_paragraph("A perfectly ordinary paragraph.")
    word.save(str(path))
    with (
        zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("word/media/zeros.bin", "w") as member,
    ):
        for _ in range(inflated_mb):
            member.write(bytes(MB))
    return path


def test_docx_zip_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    path = docx_bomb(tmp_path / "bomb.docx", inflated_mb=400)
    assert path.stat().st_size < 2 * MB
    with pytest.raises(LoadError, match=r"^zip bomb \(0\.\d MB inflates to 40\d MB\)$"):
        load(path)


def test_sparse_2gb_file_is_refused_by_size_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "sparse.txt"
    with path.open("wb") as file:
        file.truncate(2 * 2**30)
    with pytest.raises(LoadError, match=r"too large \(2048\.0 MB > 50 MB limit, RAG_MAX_FILE_MB\)"):
        load(path)


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(LoadError, match=r"^unreadable \(is a FIFO\)$"):
        load(fifo)  # no writer ever opens it: opening for a blocking read would wait forever
    assert list(find_files([tmp_path])) == [fifo]  # found in a folder, so ingest reports it rather than skip it


def test_symlink_loop_is_refused_in_a_folder_and_when_named(tmp_path: Path) -> None:
    (tmp_path / "a.txt").symlink_to(tmp_path / "b.txt")
    (tmp_path / "b.txt").symlink_to(tmp_path / "a.txt")
    refused: list[IngestFailure] = []
    assert list(find_files([tmp_path], refused=refused)) == []
    assert [(Path(f.path).name, f.error) for f in refused] == [
        ("a.txt", "broken symbolic link or symbolic link loop"),
        ("b.txt", "broken symbolic link or symbolic link loop"),
    ]
    with pytest.raises(LoadError, match=r"^unreadable \(Too many levels of symbolic links\)$"):
        load(tmp_path / "a.txt")


def test_symlink_out_of_the_folder_is_refused_and_one_inside_is_followed_once(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("Outside the folder.")
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "real.txt").write_text("Inside the folder.")
    (folder / "leak.txt").symlink_to(secret)
    (folder / "leakdir").symlink_to(secret.parent, target_is_directory=True)
    (folder / "alias.txt").symlink_to(folder / "sub" / "real.txt")
    refused: list[IngestFailure] = []
    found = list(find_files([folder], refused=refused))
    assert [p.relative_to(folder).as_posix() for p in found] == ["alias.txt"]  # real.txt is the same file
    assert {Path(f.path).name: f.error for f in refused} == {
        "leak.txt": "symbolic link to outside the folder (not followed)",
        "leakdir": "symbolic link to outside the folder (not followed)",
    }
    assert list(find_files([folder / "leak.txt"])) == [folder / "leak.txt"]  # named directly: the user chose it


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("No one may read this.")
    path.chmod(0o000)
    if os.geteuid() != 0:
        with pytest.raises(LoadError, match=r"^unreadable \(Permission denied\)$"):
            load(path)
        return
    # root reads through chmod 000 (CAP_DAC_OVERRIDE), so the reader runs without that capability, as a user would.
    code = (
        "import sys; from pathlib import Path; from ingest.load import load_file; from rag.types import LoadError\n"
        "try: load_file(Path(sys.argv[1]), max_bytes=2**20, timeout_s=10, memory_mb=256)\n"
        "except LoadError as exc: print(exc)"
    )
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, and no setpriv to drop the capability that reads through chmod 000")
    drop = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    result = subprocess.run(
        [*drop, sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.stderr.startswith("setpriv:"):
        pytest.skip(f"running as root, and setpriv may not drop capabilities here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "unreadable (Permission denied)\n"


def test_file_name_with_invalid_utf8_is_refused_in_one_printable_line(tmp_path: Path) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt")  # Latin-1 é: not UTF-8
    with open(raw, "wb") as file:
        file.write(b"Text in a badly named file.")
    (path,) = find_files([tmp_path])
    with pytest.raises(LoadError, match=r"^file name is not valid UTF-8; rename the file$"):
        load(path)
    failure = IngestFailure(path=str(path), error="x")
    assert failure.path.endswith("caf\\udce9.txt")
    failure.path.encode("utf-8")  # printable, storable


def test_file_name_with_a_newline_loads_and_its_failure_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines.txt"
    path.write_text("A name with a newline is still a name.")
    assert load(path).text == "A name with a newline is still a name."
    failure = IngestFailure(path=str(tmp_path / "bad\nname.pdf"), error="corrupt PDF (line one\nline two)")
    assert failure.path.endswith("bad\\nname.pdf")
    assert failure.error == "corrupt PDF (line one\\nline two)"


def test_dotdot_in_a_named_path_is_resolved_to_the_real_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    real = tmp_path / "notes.txt"
    real.write_text("Notes.")
    (found,) = find_files([tmp_path / "sub" / ".." / "notes.txt", real])  # the same file once
    assert found.resolve() == real


def test_rag_ingest_of_a_folder_of_nasties_reports_each_in_one_line_exits_1_and_ingests_the_rest(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("The river rose on Tuesday. Officials sent relief by helicopter.")
    (folder / "good.md").write_text("---\ntitle: Good\n---\n# Good\nThe budget passed on Friday.\n")
    (folder / "two\nlines.txt").write_text("A newline in a file name does not stop it being ingested.")
    (folder / "loop.pdf").write_bytes(looped_pdf())
    (folder / "slow.pdf").write_bytes(page_bomb_pdf(levels=3, fanout=46, ops=100_000))
    docx_bomb(folder / "bomb.docx", inflated_mb=200)
    (folder / "deep.html").write_text("<html><body>" + "<div>" * 100_000 + "</div>" * 100_000)
    with (folder / "sparse.txt").open("wb") as file:
        file.truncate(2 * 2**30)
    os.mkfifo(folder / "pipe.txt")
    (folder / "loop-a.txt").symlink_to(folder / "loop-b.txt")
    (folder / "loop-b.txt").symlink_to(folder / "loop-a.txt")
    (tmp_path / "secret.txt").write_text("Not for the index.")
    (folder / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "wb") as file:
        file.write(b"Badly named.")
    env = os.environ | {"RAG_HOME": str(tmp_path / "home"), "RAG_PARSE_TIMEOUT_S": "3"}
    run = subprocess.run([RAG, "ingest", str(folder), "--json"], env=env, capture_output=True, timeout=600, check=False)
    assert run.returncode == 1, run.stderr
    assert run.stderr == b""  # no traceback, no warning: everything is in the summary
    summary = json.loads(run.stdout)
    # The CLI prints each failure as `failed: {path}: {error}`; both are escaped to one line.
    assert all("\n" not in f["path"] + f["error"] for f in summary["failed"])
    failed = {f["path"].removeprefix(f"{folder}/"): f["error"] for f in summary["failed"]}
    expected = {
        "bomb.docx": "zip bomb (",
        "caf\\udce9.txt": "file name is not valid UTF-8",
        "deep.html": "no readable text in the HTML",
        "leak.txt": "symbolic link to outside the folder (not followed)",
        "loop-a.txt": "broken symbolic link or symbolic link loop",
        "loop-b.txt": "broken symbolic link or symbolic link loop",
        "loop.pdf": "corrupt PDF (",
        "pipe.txt": "unreadable (is a FIFO)",
        "slow.pdf": "parsing took longer than 3 s",
        "sparse.txt": "too large (2048.0 MB",
    }
    assert sorted(failed) == sorted(expected), failed
    for name, reason in expected.items():
        assert failed[name].startswith(reason), (name, failed[name])
    assert summary["added"] == summary["chunks"] == 3  # good.txt, good.md and the one with a newline in its name

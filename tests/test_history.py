"""`rag ask --history`: inline JSON first, then a file; anything else is one line and exit 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rag.cli import BadHistory, app, read_history

LONG_ANSWER = (
    "Kenya has deployed 270 additional police officers to Haiti, joining the Multinational Security Support "
    "Mission. The officers arrived on Saturday. They join an initial contingent of 400 officers sent in June, "
    "and more are expected in the coming months as the mission grows."
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
TURNS = st.lists(st.tuples(st.text(max_size=400), st.text(max_size=400)).map(list), max_size=4)


def test_a_long_inline_turn_is_json_not_a_file_name() -> None:
    assert len(LONG_ANSWER) > 255 and "/" not in LONG_ANSWER
    assert read_history(json.dumps([["Who leads the mission?", LONG_ANSWER]])) == [
        ("Who leads the mission?", LONG_ANSWER)
    ]


def test_a_file_path_is_read(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text(json.dumps([["q", "a"], ["q2", LONG_ANSWER]]), encoding="utf-8")
    assert read_history(str(path)) == [("q", "a"), ("q2", LONG_ANSWER)]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('[["q", "a"]', "invalid JSON: Expecting"),
        ("history.json", "no readable file: No such file or directory"),
        ("x" * 300, "no readable file: File name too long"),
        ("[" * 100_000, "invalid JSON"),
        ("nul\x00byte", "no readable file"),
        ('{"q": "a"}', "pairs of strings"),
        ('[["q"]]', "pairs of strings"),
        ('[["q", 2]]', "pairs of strings"),
        ('"just a string"', "pairs of strings"),
        ("3", "pairs of strings"),
    ],
)
def test_bad_history_is_one_line(value: str, says: str) -> None:
    with pytest.raises(BadHistory) as caught:
        read_history(value)
    message = str(caught.value)
    assert says in message and "\n" not in message and len(message) < 300, message


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('[["q", "a"],', encoding="utf-8")
    (tmp_path / "latin1.json").write_bytes(b'[["caf\xe9", "a"]]')
    for value, says in [
        (tmp_path, "Is a directory"),
        (tmp_path / "broken.json", "is not JSON"),
        (tmp_path / "latin1.json", "no readable file"),
    ]:
        with pytest.raises(BadHistory, match=says):
            read_history(str(value))


def test_the_cli_exits_2_with_one_line_before_touching_the_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["ask", "How many officers?", "--history", "y" * 400], env={"RAG_HOME": str(tmp_path / "rag")}
    )
    assert result.exit_code == 2
    assert result.stderr == "error: --history no readable file: File name too long\n"
    assert not (tmp_path / "rag").exists()


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, TURNS))
def test_random_json_is_parsed_or_refused_in_one_line(value: object) -> None:
    try:
        turns = read_history(json.dumps(value))
    except BadHistory as exc:
        assert "\n" not in str(exc)
        assert not (
            isinstance(value, list)
            and all(isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in value)
        )
    else:
        assert isinstance(value, list) and turns == [tuple(t) for t in value]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=500))
def test_random_text_is_parsed_or_refused_in_one_line(value: str) -> None:
    try:
        read_history(value)
    except BadHistory as exc:
        assert "\n" not in str(exc)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(JSON.filter(lambda v: not isinstance(v, list) or any(not isinstance(t, list) for t in v)))
def test_the_cli_refuses_random_bad_history_in_one_line(tmp_path: Path, value: object) -> None:
    result = CliRunner().invoke(
        app, ["ask", "q", "--history", json.dumps(value)], env={"RAG_HOME": str(tmp_path / "rag")}
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --history ") and result.stderr.count("\n") == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)

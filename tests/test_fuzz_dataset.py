"""Fuzzing the eval dataset reader: random JSON lines and random bytes give items or one DatasetError line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fuzzing import examples
from hypothesis import given
from hypothesis import strategies as st

from evals.dataset import DatasetError, QAItem, load_jsonl

pytestmark = pytest.mark.fuzz

GOOD = {"id": "a", "question": "How many?", "answers": ["270"], "answerable": True, "evidence": ["270"]}
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
# Objects close to a valid item (each field possibly replaced by anything), so validation is reached, not just parsing.
NEAR_ITEMS = st.fixed_dictionaries(
    {},
    optional={
        "id": TEXT | JSON,
        "question": TEXT | JSON,
        "answers": st.lists(TEXT, max_size=3) | JSON,
        "answerable": st.booleans() | JSON,
        "evidence": st.lists(TEXT, max_size=3) | JSON,
        "history": st.lists(st.tuples(TEXT, TEXT), max_size=2) | JSON,
        "extra": JSON,
    },
)


def check(path: Path, data: bytes) -> list[QAItem] | None:
    path.write_bytes(data)
    try:
        items = load_jsonl(path)
    except DatasetError as exc:
        message = str(exc)
        assert message.startswith(str(path)) or message.startswith("cannot read dataset"), message
        assert "\n" not in message and "\r" not in message, message
        return None
    assert items and all(isinstance(item, QAItem) for item in items)
    return items


@examples(60)
@given(st.lists(st.one_of(JSON, NEAR_ITEMS, st.just(GOOD)), max_size=5), st.sampled_from(["\n", "\r\n"]))
def test_random_json_lines_give_items_or_one_dataset_error_line(tmp_path: Path, rows: list, end: str) -> None:
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    check(tmp_path / "qa.jsonl", end.join(lines).encode("utf-8"))


@examples(100)
@given(st.binary(max_size=300) | TEXT.map(str.encode))
def test_random_bytes_give_one_dataset_error_line(tmp_path: Path, data: bytes) -> None:
    assert check(tmp_path / "qa.jsonl", data) is None


def test_a_question_holding_a_line_separator_is_one_line_of_jsonl(tmp_path: Path) -> None:
    # JSON may hold U+2028 unescaped; JSONL lines end only at \n, so it is not a line break.
    item = GOOD | {"question": "How\u2028many\x1cfiles\x85now?"}
    (loaded,) = check(tmp_path / "qa.jsonl", json.dumps(item, ensure_ascii=False).encode("utf-8")) or []
    assert loaded.question == item["question"]

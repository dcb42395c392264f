"""Datasets: the shipped seed set, malformed lines found by number before any work, and the SQuAD adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evals.dataset import DatasetError, load_jsonl, load_squad2
from ingest.clean import clean_text
from ingest.load import split_front_matter
from rag.cli import app

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "evals" / "data" / "seed_qa.jsonl"
GOOD = {"id": "a", "question": "How many?", "answers": ["270"], "answerable": True, "evidence": ["270"], "history": []}


def test_seed_set_has_the_promised_shape_and_verbatim_evidence() -> None:
    items = load_jsonl(SEED)
    article = clean_text(split_front_matter((REPO / "corpus" / "kenya-police-haiti.md").read_text())[1])
    assert len(items) >= 32
    assert sum(not q.answerable for q in items) >= 7
    assert sum(bool(q.history) for q in items) >= 5
    assert sum(len(q.evidence) >= 2 for q in items) >= 3  # questions that need two sentences
    for q in items:
        assert all(e in article for e in q.evidence), q.id
        assert all(a in article for a in q.answers), q.id
    by_question = {q.question: q for q in items}
    assert by_question["How many additional police officers did Kenya send to Haiti?"].answers == ("270",)
    follow_up = by_question["How many officers did it send in June?"]
    assert follow_up.history[0][0] == "Who leads the Multinational Security Support Mission?"
    assert follow_up.answers == ("400",)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "b", "question": "Q?"', "not valid JSON"),
        (json.dumps(GOOD | {"id": "b", "answerable": "yes"}), "field 'answerable'"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "answers"} | {"id": "b"}), "field 'answers'"),
        (json.dumps(GOOD | {"id": "b", "answers": "270"}), "field 'answers'"),
        (json.dumps(GOOD | {"id": "b", "answerable": False}), "unanswerable question must have empty"),
        (json.dumps(GOOD | {"id": "b", "history": [["only a question"]]}), "field 'history"),
        (json.dumps(GOOD | {"id": "b", "extra": 1}), "field 'extra'"),
        (json.dumps(GOOD), "duplicate id 'a' (first on line 1)"),
        ("[1, 2]", "Input should be an object"),
    ],
)
def test_malformed_line_is_reported_with_its_number(tmp_path: Path, bad_line: str, message: str) -> None:
    path = write_lines(tmp_path / "qa.jsonl", [json.dumps(GOOD), "", bad_line, json.dumps(GOOD | {"id": "c"})])
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    assert str(caught.value).startswith(f"{path}:3: ")
    assert message in str(caught.value)


def test_empty_and_missing_datasets_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no questions"):
        load_jsonl(write_lines(tmp_path / "empty.jsonl", ["", "  "]))
    with pytest.raises(DatasetError, match="cannot read dataset"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_cli_stops_on_a_malformed_line_before_any_work(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "qa.jsonl", [json.dumps(GOOD), json.dumps(GOOD | {"id": "b", "question": ""})])
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["eval", str(path)], env={"RAG_HOME": str(home)})
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:2: field 'question'")
    assert not home.exists()  # nothing was opened, indexed or written


def squad_file(path: Path) -> Path:
    data = {
        "version": "v2.0",
        "data": [
            {
                "title": "Kenya_Police",
                "paragraphs": [
                    {
                        "context": "Kenya sent 400 officers in June. It later sent 270 more.",
                        "qas": [
                            {
                                "id": "s1",
                                "question": "How many in June?",
                                "is_impossible": False,
                                "answers": [{"text": "400", "answer_start": 11}, {"text": "400", "answer_start": 11}],
                            },
                            {
                                "id": "s2",
                                "question": "How many died?",
                                "is_impossible": True,
                                "answers": [],
                                "plausible_answers": [{"text": "270", "answer_start": 48}],
                            },
                        ],
                    }
                ],
            },
            {
                "title": "Ugali",
                "paragraphs": [
                    {
                        "context": "Ugali is a maize flour porridge eaten across East Africa.",
                        "qas": [
                            {
                                "id": "s3",
                                "question": "What is ugali made of?",
                                "is_impossible": False,
                                "answers": [{"text": "maize flour", "answer_start": 11}],
                            }
                        ],
                    }
                ],
            },
        ],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_squad2_adapter_reads_paragraphs_and_a_seeded_sample(tmp_path: Path) -> None:
    path = squad_file(tmp_path / "squad.json")
    paragraphs, items = load_squad2(path, sample=None, seed=0)
    assert [(p.title, p.file_name) for p in paragraphs] == [("Kenya Police", "000-000.txt"), ("Ugali", "001-000.txt")]
    by_id = {q.id: q for q in items}
    assert by_id["s1"].answers == ("400",) and by_id["s1"].evidence == (paragraphs[0].text,)
    assert not by_id["s2"].answerable and by_id["s2"].answers == () and by_id["s2"].evidence == ()
    first = load_squad2(path, sample=2, seed=7)[1]
    assert len(first) == 2 and first == load_squad2(path, sample=2, seed=7)[1]


def test_squad2_adapter_rejects_other_json(tmp_path: Path) -> None:
    path = tmp_path / "not-squad.json"
    path.write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"not in SQuAD 2\.0 format"):
        load_squad2(path, sample=None, seed=0)

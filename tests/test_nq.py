"""The NQ-open adapter on a small oracle file written here: dedupe, withholding, the answer-elsewhere check,
the seeded dev/test split, and its collection indexed once."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evals.dataset import DatasetError
from evals.metrics import contains_answer
from evals.nq import load_nq_open, nq_collection
from evals.runner import load_dataset
from evals.squad import ensure_indexed, paragraph_folder
from rag.assistant import Assistant
from rag.cli import app
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings
from rag.types import RagError

# (question, answers, title, passage): each answer is in its own passage only, except "Nairobi", which two
# passages hold, so withholding one of them leaves its question answerable from the other.
ROWS = [
    ("who got the first nobel prize in physics", ["Wilhelm Conrad Röntgen"], "Nobel Prize in Physics",
     "The first Nobel Prize in Physics was awarded in 1901 to Wilhelm Conrad Röntgen of Germany."),
    ("what is ugali made of", ["maize flour"], "Ugali",
     "Ugali is a stiff porridge of maize flour and water, eaten across East Africa."),
    ("where is the headquarters of the un environment programme", ["Nairobi"], "UN Environment Programme",
     "The United Nations Environment Programme has its headquarters in Nairobi, Kenya."),
    ("what is the capital of kenya", ["Nairobi"], "Kenya",
     "Kenya's capital and largest city is Nairobi, on the Athi plains."),
    ("how tall is mount kilimanjaro", ["5,895 metres", "5895 m"], "Mount Kilimanjaro",
     "Mount Kilimanjaro rises 5,895 metres above sea level in Tanzania."),
    ("who wrote things fall apart", ["Chinua Achebe"], "Things Fall Apart",
     "Things Fall Apart is the debut novel by the Nigerian author Chinua Achebe, published in 1958."),
    ("when was things fall apart published", ["1958"], "Things Fall Apart",
     "Things Fall Apart is the debut novel by the Nigerian author Chinua Achebe, published in 1958."),
    ("what is the longest river in africa", ["the Nile"], "Nile",
     "The Nile, flowing north into the Mediterranean, is the longest river in Africa."),
    ("which lake is the source of the white nile", ["Lake Victoria"], "White Nile",
     "The White Nile leaves Lake Victoria at Jinja in Uganda."),
    ("what currency is used in ghana", ["cedi"], "Ghanaian cedi",
     "The cedi is the currency of Ghana, divided into 100 pesewas."),
    ("who painted the mona lisa", ["Leonardo da Vinci"], "Mona Lisa",
     "The Mona Lisa is a half-length portrait painted by Leonardo da Vinci in the early sixteenth century."),
    ("what is the chemical symbol for gold", ["Au"], "Gold",
     "Gold is a chemical element with the symbol Au and atomic number 79."),
]  # fmt: skip
PASSAGES = len({text for *_, text in ROWS})  # 11: two questions share the Achebe passage
QUESTIONS = len(ROWS) + 1  # the extra ugali question below


def oracle_file(path: Path, rows: list[tuple[str, list[str], str, str]] = ROWS) -> Path:
    """An NQ-open oracle file: one question a line, its gold passage first in ctxs."""
    lines = []
    for question, answers, title, text in rows:
        gold = {"title": title, "text": text, "hasanswer": True, "isgold": True}
        lines.append(json.dumps({"question": question, "answers": answers, "ctxs": [gold], "nq_annotated_gold": {}}))
    # The same question again (first one wins), and another question whose passage differs only in its spaces.
    lines.append(lines[0])
    ugali = json.loads(lines[1])
    ugali["question"], ugali["answers"] = "what grain is ugali cooked from", ["maize"]
    ugali["ctxs"][0]["text"] = ugali["ctxs"][0]["text"].replace("stiff porridge", "stiff  porridge")
    lines.append(json.dumps(ugali))
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def seed_where(path: Path, withheld: set[str], kept: set[str]) -> int:
    """The first seed whose withheld share (0.2 of the passages) holds `withheld` and spares `kept` (by title)."""
    for seed in range(200):
        titles = {p.title for p in load_nq_open(path, withhold=0.2, seed=seed).passages}
        if not withheld & titles and kept <= titles:
            return seed
    raise AssertionError("no such seed in 0..199")


def test_questions_and_passages_are_deduplicated(tmp_path: Path) -> None:
    nq = load_nq_open(oracle_file(tmp_path / "nq.jsonl.gz"), withhold=0.0)
    assert len(nq.items) == len({q.question for q in nq.items}) == QUESTIONS
    assert len(nq.passages) == nq.details["passages"] == PASSAGES
    assert all(q.answerable for q in nq.items)
    # Every answerable question carries its gold passage as evidence, and that passage is indexed.
    texts = {p.text for p in nq.passages}
    assert all(len(q.evidence) == 1 and q.evidence[0] in texts for q in nq.items)
    achebe = [q for q in nq.items if "things fall apart" in q.question]
    assert len(achebe) == 2 and achebe[0].evidence == achebe[1].evidence


def test_withheld_passages_make_their_questions_unanswerable(tmp_path: Path) -> None:
    path = oracle_file(tmp_path / "nq.jsonl.gz")
    nq = load_nq_open(path, withhold=0.2, seed=3)
    titles = {p.title for p in nq.passages}
    assert len(nq.passages) == PASSAGES - 2 == nq.details["passages_indexed"]  # round(0.2 * 11) withheld
    assert nq.details["passages_withheld"] == 2
    by_question = {q.question: q for q in nq.items}
    for question, answers, title, _ in ROWS:
        if question not in by_question:
            continue  # dropped: its answer is still in an indexed passage
        item = by_question[question]
        assert item.answerable == (title in titles)
        if not item.answerable:
            assert item.answers == () and item.evidence == ()
            assert not any(contains_answer(p.text, answers) for p in nq.passages)
    assert nq.details["unanswerable"] == sum(not q.answerable for q in nq.items) >= 1
    assert nq.details["questions"] == len(nq.items)


def test_a_question_whose_answer_is_still_indexed_is_dropped_not_unanswerable(tmp_path: Path) -> None:
    path = oracle_file(tmp_path / "nq.jsonl.gz")
    un_question = ROWS[2][0]
    seed = seed_where(path, withheld={"UN Environment Programme"}, kept={"Kenya"})
    nq = load_nq_open(path, withhold=0.2, seed=seed)
    assert un_question not in {q.question for q in nq.items}
    assert nq.details["dropped_answer_elsewhere"] == 1
    assert len(nq.items) == QUESTIONS - 1
    # With both Nairobi passages withheld, both questions are honestly unanswerable.
    seed = seed_where(path, withheld={"UN Environment Programme", "Kenya"}, kept=set())
    nq = load_nq_open(path, withhold=0.2, seed=seed)
    unanswerable = {q.question for q in nq.items if not q.answerable}
    assert unanswerable == {un_question, ROWS[3][0]} and nq.details["dropped_answer_elsewhere"] == 0


def test_split_is_seeded_halves_that_do_not_move_with_the_withheld_share(tmp_path: Path) -> None:
    path = oracle_file(tmp_path / "nq.jsonl.gz")
    dev = {q.id for q in load_nq_open(path, split="dev", withhold=0.0, seed=1).items}
    test = {q.id for q in load_nq_open(path, split="test", withhold=0.0, seed=1).items}
    every = {q.id for q in load_nq_open(path, split="all", withhold=0.0, seed=1).items}
    assert (len(dev), len(test)) == (7, 6) and dev.isdisjoint(test) and dev | test == every
    assert dev == {q.id for q in load_nq_open(path, split="dev", withhold=0.0, seed=1).items}
    assert dev != {q.id for q in load_nq_open(path, split="dev", withhold=0.0, seed=2).items}
    for withhold in (0.2, 0.4):
        withheld_dev = load_nq_open(path, split="dev", withhold=withhold, seed=1)
        assert {q.id for q in withheld_dev.items} <= dev  # only drops, never a question from the other half


def test_bad_files_and_arguments_are_one_line_errors(tmp_path: Path) -> None:
    path = oracle_file(tmp_path / "nq.jsonl.gz")
    with pytest.raises(DatasetError, match="unknown split 'train'"):
        load_nq_open(path, split="train")
    with pytest.raises(DatasetError, match="--withhold must be at least 0 and below 1"):
        load_nq_open(path, withhold=1.0)
    broken = tmp_path / "broken.jsonl.gz"
    with gzip.open(broken, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"question": "q", "answers": ["a"], "ctxs": []}) + "\n")
    with pytest.raises(DatasetError, match=rf"^{broken}:1: not in NQ-open oracle format"):
        load_nq_open(broken)
    plain = tmp_path / "plain.jsonl.gz"
    plain.write_text("not gzip", encoding="utf-8")
    with pytest.raises(DatasetError, match="cannot read NQ-open file"):
        load_nq_open(plain)
    with pytest.raises(RagError, match="--split and --withhold apply to --format nq-open only"):
        load_dataset(path, fmt="jsonl", split="dev")


def test_dataset_names_its_collection_and_samples_within_the_split(tmp_path: Path) -> None:
    path = oracle_file(tmp_path / "nq.jsonl.gz")
    data = load_dataset(path, fmt="nq-open", split="dev", sample=3, seed=5)
    assert data.default_collection == nq_collection(0.2, 5) == "nq-open-w20-s5"
    assert nq_collection(0.125, 0) == "nq-open-w12.5-s0"
    dev = {q.id for q in load_nq_open(path, split="dev", seed=5).items}
    assert len(data.items) == 3 and {q.id for q in data.items} <= dev
    assert data.details["split"] == "dev" and data.details["sample"] == 3


def test_cli_indexes_the_kept_passages_once_into_their_own_collection(
    tmp_path: Path, embeddings: LocalEmbeddings
) -> None:
    path = oracle_file(tmp_path / "nq.jsonl.gz")
    home = tmp_path / "home"
    args = ["eval", "--format", "nq-open", str(path), "--seed", "3", "--json", "--compare"]
    result = CliRunner().invoke(app, args, env={"RAG_HOME": str(home)})
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    nq = load_nq_open(path, seed=3)
    assert metrics["config"]["collection"] == "nq-open-w20-s3" and metrics["n"] == len(nq.items)
    assert metrics["config"]["dropped_answer_elsewhere"] == nq.details["dropped_answer_elsewhere"]
    # Each kept passage is one file and one chunk; the withheld ones are nowhere in the collection.
    assistant = Assistant(Settings(home=home, collection="nq-open-w20-s3"), embeddings=embeddings)
    assert assistant.store.count() == len(nq.passages)
    assert metrics["answer_ceiling"] == 1.0  # every answerable question's passage is indexed
    assert {q["status"] for q in metrics["per_question"]} <= {"answered", "uncertain", "abstained"}
    again = ensure_indexed(nq.passages, settings=assistant.settings, store=assistant.store)
    assert (again.added, again.updated, again.deleted) == (0, 0, 0) and again.unchanged == len(nq.passages)
    assert len(list(paragraph_folder(assistant.settings).iterdir())) == len(nq.passages)


def test_a_copied_home_indexes_each_passage_once(tmp_path: Path, embeddings: LocalEmbeddings) -> None:
    """Sources are absolute paths: the copy's first run must drop the original's, not index every passage twice."""
    path = oracle_file(tmp_path / "nq.jsonl.gz")
    nq = load_nq_open(path, seed=3)
    first = Settings(home=tmp_path / "home", collection=nq_collection(0.2, 3))
    ensure_indexed(nq.passages, settings=first, store=Assistant(first, embeddings=embeddings).store)
    shutil.copytree(first.home, tmp_path / "copy")
    copy = first.model_copy(update={"home": tmp_path / "copy"})
    assistant = Assistant(copy, embeddings=embeddings)
    report = ensure_indexed(nq.passages, settings=copy, store=assistant.store)
    assert report.deleted == len(nq.passages), "the original home's sources are dropped"
    assert assistant.store.count() == len(nq.passages)
    assert {d.source for d in assistant.documents()} == {str(p) for p in paragraph_folder(copy).resolve().iterdir()}


def test_cli_on_a_home_another_process_owns_is_refused_in_one_line(tmp_path: Path) -> None:
    from test_lock import holding  # pytest puts tests/ on sys.path (no __init__.py)

    from rag.lock import EXIT_IN_USE

    path = oracle_file(tmp_path / "nq.jsonl.gz")
    home = tmp_path / "home"
    with holding(home, "owner"):
        result = CliRunner().invoke(app, ["eval", "--format", "nq-open", str(path)], env={"RAG_HOME": str(home)})
    assert result.exit_code == EXIT_IN_USE, result.stderr
    assert result.stderr.count("\n") == 1 and "is in use by `rag chat`" in result.stderr
    assert not (home / "evals").exists()  # refused before a passage file was written

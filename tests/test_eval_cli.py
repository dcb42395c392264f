"""`rag eval` end to end on the real pipeline: the seed set with its regression gates, reports, plots, SQuAD."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from test_eval_dataset import squad_file  # pytest puts tests/ on sys.path (no __init__.py)
from typer.testing import CliRunner

from evals.gates import SEED_GATES, gate_failures
from evals.metrics import METRIC_KEYS
from evals.runner import RETRIEVERS
from evals.squad import ensure_indexed, paragraph_folder
from rag.assistant import Assistant
from rag.cli import app
from rag.embeddings import LocalEmbeddings
from rag.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "evals" / "data" / "seed_qa.jsonl"


@pytest.fixture(scope="module")
def seed_run(seeded_home: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """One `rag eval --compare --json --out` over the seed set, shared by the assertions below."""
    out = tmp_path_factory.mktemp("eval-report")
    result = CliRunner().invoke(
        app, ["eval", str(SEED), "--compare", "--json", "--out", str(out)], env={"RAG_HOME": str(seeded_home)}
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), out


def test_seed_set_passes_its_regression_gates(seed_run: tuple[dict[str, Any], Path]) -> None:
    metrics, _ = seed_run
    assert gate_failures(metrics, SEED_GATES) == []


def test_json_has_exactly_the_metric_keys_plus_per_question_config_and_compare(
    seed_run: tuple[dict[str, Any], Path],
) -> None:
    metrics, _ = seed_run
    extras = {"per_question", "config", "compare", "abstention", "baselines", "baseline_ratios", "ceiling"}
    assert set(metrics) == {*METRIC_KEYS, *extras}
    assert metrics["n"] == len(metrics["per_question"]) == sum(1 for line in SEED.open() if line.strip())
    config = metrics["config"]
    assert config["mode"] == "extractive" and config["retriever"] == "hybrid" and config["k"] == 5
    assert config["collection"] == "corpus" and config["embedding_model"] == "all-MiniLM-L6-v2"
    assert list(metrics["compare"]) == list(RETRIEVERS)
    assert {k: v for k, v in metrics.items() if k in METRIC_KEYS} == metrics["compare"]["hybrid"]
    # Ranking-only rows carry retrieval metrics but no answer metrics.
    ensemble = metrics["compare"]["langchain-ensemble"]
    assert 0 < ensemble["recall@5"] <= 1 and ensemble["answer_accuracy"] is None
    assert 0 < ensemble["answer_recall@5"] <= 1 and ensemble["answer_ceiling"] == metrics["answer_ceiling"] == 1.0
    # The lead baselines answer from hybrid's top chunk; ours is compared with each in the same run.
    assert list(metrics["baselines"]) == ["lead-1", "lead-2", "lead-3"]
    words = [metrics["baselines"][name]["answer_words"] for name in ("lead-1", "lead-2", "lead-3")]
    assert 0 < words[0] < words[1] < words[2]
    ratios = metrics["baseline_ratios"]["lead-2"]
    assert ratios["answer_words"] == pytest.approx(metrics["answer_words"] / words[1])
    assert metrics["ceiling"]["answer_accuracy_of_ceiling"] == metrics["answer_accuracy"]
    follow_up = next(q for q in metrics["per_question"] if q["question"] == "How many officers did it send in June?")
    assert follow_up["correct"] and "400" in follow_up["got"] and follow_up["status"] in ("answered", "uncertain")
    assert set(follow_up["hit_rank"]) == set(RETRIEVERS)


def test_abstention_tradeoff_agrees_with_the_answers_at_the_configured_threshold(
    seed_run: tuple[dict[str, Any], Path],
) -> None:
    metrics, _ = seed_run
    abstention = metrics["abstention"]
    assert abstention["threshold"] == metrics["config"]["abstain_threshold"] == Settings().abstain_threshold
    [current] = [p for p in abstention["tradeoff"] if p["threshold"] == abstention["threshold"]]
    # Every seed-set abstention is the confidence test, so the sweep at the threshold is what the answers did.
    assert current["abstention_recall"] == metrics["abstention_recall"]
    assert current["false_abstention_rate"] == metrics["false_abstention_rate"]
    assert 0.5 < abstention["auc"] <= 1.0
    recalls = [p["abstention_recall"] for p in abstention["tradeoff"]]
    assert recalls == sorted(recalls) and len(recalls) == 7


def test_report_files_and_plots_are_written(seed_run: tuple[dict[str, Any], Path]) -> None:
    metrics, out = seed_run
    report = (out / "report.md").read_text(encoding="utf-8")
    for name in [*RETRIEVERS, "lead-1", "lead-2", "lead-3"]:
        assert f"| {name} |" in report
    assert "- vs lead-2: answer_accuracy " in report and "- ceiling: a gold answer" in report
    assert "## Worst failures" in report and "embedding_model" in report
    assert "## Abstention" in report and "(current)" in report and "![abstention](abstention.png)" in report
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["n"] == metrics["n"]
    for png in ("recall_at_k.png", "latency.png", "abstention.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(out / png) as image:
            image.verify()
        with Image.open(out / png) as image:
            assert image.width >= 600 and image.height >= 400


def test_text_output_is_a_metrics_table(seeded_home: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", str(SEED), "--sample", "4", "--retriever", "bm25"], env={"RAG_HOME": str(seeded_home)}
    )
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header.split() == ["metric", "bm25"]  # no lead columns without --compare
    table, notes = rows[: len(METRIC_KEYS)], rows[len(METRIC_KEYS) :]
    assert [r.split()[0] for r in table] == list(METRIC_KEYS)
    assert table[-1].split() == ["n", "4"]
    assert notes[0].startswith("ceiling: a gold answer is somewhere in the collection for 1.000")


def test_bad_options_and_an_empty_collection_fail_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"RAG_HOME": str(tmp_path / "home")}
    unknown = runner.invoke(app, ["eval", str(SEED), "--retriever", "tfidf"], env=env)
    assert unknown.exit_code == 2 and unknown.stderr.strip().startswith("error: unknown retriever 'tfidf'")
    empty = runner.invoke(app, ["eval", str(SEED)], env=env)
    assert empty.exit_code == 2 and len(empty.stderr.strip().splitlines()) == 1
    assert "No index for collection 'corpus'" in empty.stderr


def test_squad2_run_indexes_its_paragraphs_once(tmp_path: Path, embeddings: LocalEmbeddings) -> None:
    path = squad_file(tmp_path / "squad.json")
    home = tmp_path / "home"
    result = CliRunner().invoke(
        app, ["eval", str(path), "--format", "squad2", "--json", "--compare"], env={"RAG_HOME": str(home)}
    )
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["config"]["collection"] == "squad2-dev" and metrics["n"] == 3
    # Two documents are too few for rank_bm25's IDF (a term in half the corpus scores 0), so look 5 deep.
    assert all(metrics["compare"][name]["recall@5"] == 1.0 for name in RETRIEVERS)
    assert metrics["abstention_recall"] in (0.0, 1.0)
    # A second indexing of the same paragraphs embeds nothing and changes nothing.
    from evals.dataset import load_squad2

    paragraphs, _ = load_squad2(path, sample=None, seed=0)
    assistant = Assistant(Settings(home=home, collection="squad2-dev"), embeddings=embeddings)
    again = ensure_indexed(paragraphs, settings=assistant.settings, store=assistant.store)
    assert (again.added, again.updated, again.deleted) == (0, 0, 0) and again.unchanged == again.chunks == 2
    assert sorted(p.name for p in paragraph_folder(assistant.settings).iterdir()) == ["000-000.txt", "001-000.txt"]
    assert {d.title for d in assistant.documents()} == {"Kenya Police", "Ugali"}

"""Reports of an eval run: a Markdown table, metrics.json, and matplotlib plots (recall@k, latency, abstention)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evals.metrics import METRIC_KEYS, RANK_DEPTH, abstention_tradeoff, percentile, recall_curve
from evals.runner import EvalRun

WORST_FAILURES = 10


def format_value(value: Any, key: str = "") -> str:
    """A metric as a table cell: ratios to 3 decimals, milliseconds (keys ending _ms) and words to 1, None a dash."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}" if key.endswith("_ms") or key == "answer_words" else f"{value:.3f}"


def rows(run: EvalRun) -> dict[str, dict[str, Any]]:
    """Every row of the run: each retriever, then the lead baselines of a --compare run."""
    return {name: run.metrics(name) for name in run.retrievers} | run.baselines()


def metrics_table(run: EvalRun) -> str:
    """One Markdown row per retriever and lead baseline, one column per metric."""
    lines = ["| row | " + " | ".join(METRIC_KEYS) + " |", "|---" * (len(METRIC_KEYS) + 1) + "|"]
    for name, metrics in rows(run).items():
        lines.append(f"| {name} | " + " | ".join(format_value(metrics[key], key) for key in METRIC_KEYS) + " |")
    return "\n".join(lines)


def ratio_cell(value: float | None) -> str:
    """A ratio as a table cell (×), missing as a dash."""
    return "—" if value is None else f"{value:.2f}×"


def comparison_lines(run: EvalRun) -> list[str]:
    """One line each for the ceiling, the timeliness and the lead baselines, ours relative to them."""
    lines = []
    if (ceiling := run.ceiling()) is not None:
        lines.append(
            f"ceiling: a gold answer is somewhere in the collection for {ceiling['answer_ceiling']:.3f} of the "
            f"answerable questions; answer_recall@5 is {ratio_cell(ceiling['answer_recall@5_of_ceiling'])} and "
            f"answer_accuracy {ratio_cell(ceiling['answer_accuracy_of_ceiling'])} of it"
        )
    if (timely := run.timeliness()) is not None:
        asked = "asked with" if timely["as_of_asked"] else "asked without (--ignore-as-of)"
        lines.append(
            f"timeliness: {timely['questions']} questions carry an as_of, {asked} it; counting only documents dated "
            f"on or before it, answer_recall@5 {format_value(timely['answer_recall@5'])} (any date: "
            f"{format_value(timely['answer_recall@5_any_date'])}), answer_accuracy "
            f"{format_value(timely['answer_accuracy'])} (any date: {format_value(timely['answer_accuracy_any_date'])})"
        )
    for name, ratios in run.baseline_ratios().items():
        lines.append(
            f"vs {name}: answer_accuracy {ratio_cell(ratios['answer_accuracy'])}, "
            f"answer_words {ratio_cell(ratios['answer_words'])} (ours ÷ {name})"
        )
    return lines


def text_table(run: EvalRun) -> str:
    """The metrics for the terminal: one row per metric, one column per retriever and lead baseline."""
    columns = rows(run)
    width = max(len(name) for name in columns) + 2
    lines = ["metric".ljust(28) + "".join(name.rjust(width) for name in columns)]
    for key in METRIC_KEYS:
        lines.append(key.ljust(28) + "".join(format_value(m[key], key).rjust(width) for m in columns.values()))
    lines += comparison_lines(run)
    if (abstention := run.abstention()) is not None:
        lines.append(
            f"abstention: confidence AUC {abstention['auc']:.3f} at threshold {abstention['threshold']:.2f} "
            "(RAG_ABSTAIN_THRESHOLD; --out shows the trade-off)"
        )
    return "\n".join(lines)


def failures(run: EvalRun) -> list[dict[str, Any]]:
    """The worst failures: half wrong answers and false abstentions (lowest F1 first), half answered unanswerables."""
    primary = run.config["retriever"]
    missed = sorted(
        (q for q in run.per_question if q["answerable"] and not q["correct"]),
        key=lambda q: (q["f1"] or 0.0, -(q["hit_rank"].get(primary) or RANK_DEPTH + 1)),
    )
    answered = [q for q in run.per_question if not q["answerable"] and not q["abstained"]]
    # Each kind gets half the rows, and the other kind takes any share one of them cannot fill.
    half = WORST_FAILURES // 2
    take_missed = max(half, WORST_FAILURES - len(answered))
    return (missed[:take_missed] + answered)[:WORST_FAILURES]


def cell(text: str, limit: int = 220) -> str:
    """Text made safe for one Markdown table cell."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failures_table(run: EvalRun) -> str:
    """The worst failures with question, expected and got."""
    worst = failures(run)
    if not worst:
        return "No failures."
    primary = run.config["retriever"]
    lines = ["| id | question | expected | status | got | hit rank |", "|---|---|---|---|---|---|"]
    for q in worst:
        question = q["question"] if not q["history"] else f"(after: {q['history'][-1][0]}) {q['question']}"
        expected = " / ".join(q["expected"]) if q["answerable"] else "(abstain)"
        got = "" if q["abstained"] else q["got"]
        rank = q["hit_rank"].get(primary)
        lines.append(
            f"| {q['id']} | {cell(question)} | {cell(expected)} | {q['status']} | {cell(got)} | "
            f"{rank if rank is not None else '—'} |"
        )
    return "\n".join(lines)


def abstention_section(run: EvalRun) -> str:
    """How well the extractive confidence separates the questions, and what other thresholds would do."""
    abstention = run.abstention()
    if abstention is None:
        return "Not measured: it needs extractive answers to both answerable and unanswerable questions."
    rows = ["| threshold | abstention_recall | false_abstention_rate |", "|---|---|---|"]
    for point in abstention["tradeoff"]:
        mark = " (current)" if point["threshold"] == abstention["threshold"] else ""
        rows.append(
            f"| {point['threshold']:.2f}{mark} | {point['abstention_recall']:.3f} | "
            f"{point['false_abstention_rate']:.3f} |"
        )
    return (
        f"Confidence AUC **{abstention['auc']:.3f}**: the chance that an unanswerable question scores below an "
        "answerable one (0.5 is a coin toss). An extractive answer abstains when its confidence is below "
        "`RAG_ABSTAIN_THRESHOLD`; these rows show what other thresholds would give on these questions "
        "(questions answered without one, such as questions about the corpus itself, are left out).\n\n"
        + "\n".join(rows)
    )


def comparison_section(run: EvalRun) -> str:
    """Ours against the ceiling and the lead baselines, as ratios measured in this run."""
    lines = comparison_lines(run)
    return "\n".join(f"- {line}" for line in lines) if lines else "No ceiling or baselines in this run."


def render_markdown(run: EvalRun, *, plots: list[str]) -> str:
    """The whole report.md."""
    config = "\n".join(f"- {key}: `{value}`" for key, value in run.config.items())
    images = "\n".join(f"![{Path(p).stem}]({p})" for p in plots)
    return f"""# Evaluation report

## Metrics

{metrics_table(run)}

Answer metrics come from `Assistant.ask` (retrieval: {run.config["answers_from"]}); rows without them rank only.
Their latency is that retriever's ranking time, the answer row's is the whole `ask`. The lead-k rows answer with
the first k sentences of the {run.config["answers_from"]} top chunk. `answer_recall@k`: a gold answer is in the top
k chunks; `answer_ceiling`: a gold answer is anywhere in the collection.

{comparison_section(run)}

## Abstention

{abstention_section(run)}

## Config

{config}

## Worst failures

{failures_table(run)}

## Plots

{images}
"""


def plot_recall(run: EvalRun, path: Path) -> None:
    """recall@k for k = 1..RANK_DEPTH, one line per retriever."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = list(range(1, RANK_DEPTH + 1))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    # Distinct markers and dashes: equal curves (hybrid and bm25 on a small corpus) must not hide each other.
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":")]
    for i, name in enumerate(run.retrievers):
        curve = recall_curve(run.per_question, name)
        marker, dashes = styles[i % len(styles)]
        label = f"{name} (r@5 {curve[4]:.2f})"
        ax.plot(ks, curve, marker=marker, linestyle=dashes, markersize=4, alpha=0.85, label=label)
    answerable = sum(q["answerable"] for q in run.per_question)
    ax.set(
        xlabel="k (chunks retrieved)",
        ylabel="recall@k",
        title=f"recall@k on {run.config.get('dataset', 'dataset')} ({answerable} answerable questions)",
        xticks=ks,
        ylim=(0, 1.02),
        xlim=(1, RANK_DEPTH),
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_latency(run: EvalRun, path: Path) -> None:
    """Histogram of per-question `ask` latency, with p50 and p95 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latencies = [q["latency_ms"] for q in run.per_question]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.hist(latencies, bins=min(30, max(5, len(latencies) // 3)), color="#4C72B0", alpha=0.85)
    for q, style in ((50, "--"), (95, ":")):
        value = percentile(latencies, q) or 0.0
        ax.axvline(value, color="black", linestyle=style, label=f"p{q} {value:.0f} ms")
    ax.set(
        xlabel="ask latency (ms)",
        ylabel="questions",
        title=f"ask latency, {run.config['mode']} answers ({len(latencies)} questions)",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_abstention(run: EvalRun, path: Path) -> bool:
    """Abstention recall against false abstentions as the threshold sweeps 0..1; False when not measurable."""
    abstention = run.abstention()
    if abstention is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = abstention_tradeoff(run.per_question, [t / 100 for t in range(101)])
    [current] = [p for p in abstention["tradeoff"] if p["threshold"] == abstention["threshold"]]
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    ax.plot(
        [p["false_abstention_rate"] for p in sweep],
        [p["abstention_recall"] for p in sweep],
        color="#4C72B0",
        label=f"threshold 0..1 (AUC {abstention['auc']:.2f})",
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="coin toss")
    ax.plot(
        current["false_abstention_rate"],
        current["abstention_recall"],
        "o",
        color="#C44E52",
        label=f"current threshold {abstention['threshold']:.2f}",
    )
    ax.set(
        xlabel="false abstention rate (answerable questions refused)",
        ylabel="abstention recall (unanswerable questions refused)",
        title="abstention trade-off",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_report(run: EvalRun, out: Path) -> list[Path]:
    """Write report.md, metrics.json and the PNG plots into out; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    plots = ["recall_at_k.png", "latency.png"]
    plot_recall(run, out / "recall_at_k.png")
    plot_latency(run, out / "latency.png")
    if plot_abstention(run, out / "abstention.png"):
        plots.append("abstention.png")
    (out / "metrics.json").write_text(json.dumps(run.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_markdown(run, plots=plots), encoding="utf-8")
    return [out / name for name in ("report.md", "metrics.json", *plots)]

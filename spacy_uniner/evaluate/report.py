"""What an evaluation run shows: the markdown table and the bar chart, from the scores per system
and dataset that `run_evaluation` collects."""
from pathlib import Path
from typing import Any, Dict

import numpy
# Figure without pyplot: no backend or display is chosen, so this works on servers and leaves a notebook's backend alone.
from matplotlib.figure import Figure

Results = Dict[str, Dict[str, Dict[str, Any]]]  # system -> dataset -> scores
METRICS = {"paper": "paper metric (per query, normalized strings)", "spans": "span metric (spaCy Scorer, strict)"}


def f1_by_dataset(results: Results) -> Dict[str, Dict[str, Dict[str, float]]]:
    """metric -> system -> dataset (plus "average", the paper's headline row) -> F1 in percent."""
    names = list(dict.fromkeys(name for datasets in results.values() for name in datasets))
    table: Dict[str, Dict[str, Dict[str, float]]] = {}
    for metric in METRICS:
        table[metric] = {}
        for system, datasets in results.items():
            row = {name: 100 * datasets[name][metric]["f"] for name in names if name in datasets}
            row["average"] = float(numpy.mean(list(row.values())))
            table[metric][system] = row
    return table


def markdown_table(results: Results) -> str:
    """Per system: rows = datasets plus their average (the paper's headline row), P/R/F under each
    metric and the throughput; then the F1 of every system side by side."""
    sections = []
    for system, datasets in results.items():
        lines = [f"### {system}", "", "| dataset | paper P | paper R | paper F | span P | span R | span F | sentences/s | queries/s |", "|---" * 9 + "|"]
        for name, scores in datasets.items():
            cells = [f"{100 * scores[metric][key]:.1f}" for metric in ("paper", "spans") for key in ("p", "r", "f")]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {scores['sentences_per_s']:.2f} | {scores['queries_per_s']:.2f} |")
        average = [f"{100 * numpy.mean([scores[metric][key] for scores in datasets.values()]):.1f}" for metric in ("paper", "spans") for key in ("p", "r", "f")]
        lines.append("| **average** | " + " | ".join(average) + " | | |")
        sections.append("\n".join(lines))
    table = f1_by_dataset(results)
    systems = list(results)
    names = list(next(iter(table["paper"].values())))  # every system ran the same datasets
    lines = ["### F1 side by side (paper metric / span metric)", "", "| dataset | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for name in names:
        cells = [" / ".join(f"{table[metric][system][name]:.1f}" for metric in METRICS) if name in table["paper"][system] else "" for system in systems]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def bar_chart(results: Results, path: Path) -> Figure:
    """F1 per dataset and on average, one bar per system, one panel per metric, saved as a PNG."""
    table = f1_by_dataset(results)
    systems = list(results)
    names = list(next(iter(table["paper"].values())))
    width = 0.8 / len(systems)
    figure = Figure(figsize=(max(8, 1.3 * len(names)), 4 * len(METRICS)), layout="tight")
    axes = figure.subplots(len(METRICS), 1, sharex=True)
    for ax, (metric, title) in zip(numpy.atleast_1d(axes), METRICS.items()):
        for offset, system in enumerate(systems):
            values = [table[metric][system].get(name, 0.0) for name in names]
            bars = ax.bar(numpy.arange(len(names)) + (offset - (len(systems) - 1) / 2) * width, values, width, label=system)
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_title(f"F1, {title}")
        ax.set_ylabel("F1")
        ax.set_ylim(0, 100)
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(numpy.arange(len(names)), names, rotation=30, ha="right")
    figure.savefig(path, dpi=120)
    return figure

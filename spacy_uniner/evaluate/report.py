"""What an evaluation run shows: the markdown table and the bar chart, from the scores per system
and dataset that `run_evaluation` collects."""
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List

import numpy
# Figure without pyplot: no backend or display is chosen, so this works on servers and leaves a notebook's backend alone.
from matplotlib.figure import Figure

from ..files import atomic_file

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


def markdown_table(results: Results, mention_thresholds: Dict[str, float], label_margins: Dict[str, float]) -> str:
    """Per system: rows = datasets plus their average (the paper's headline row), P/R/F under each
    metric and the throughput; then the F1 of every system side by side."""
    sections = []
    for system, datasets in results.items():
        threshold, margin = mention_thresholds[system], label_margins[system]
        counted = ([f"scoring at least {threshold:g}, the pipeline's threshold"] if threshold else []) + ([f"within {margin:g} of the score of their best type, its label_margin"] if margin < 1 else [])
        heading = f"### {system}" + (f" (paper metric on the mentions {' and '.join(counted)})" if counted else "")
        lines = [heading, "", "| dataset | paper P | paper R | paper F | span P | span R | span F | sentences/s | queries/s |", "|---" * 9 + "|"]
        for name, scores in datasets.items():
            cells = [f"{100 * scores[metric][key]:.1f}" for metric in ("paper", "spans") for key in ("p", "r", "f")]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {scores['sentences_per_s']:.2f} | {scores['queries_per_s']:.2f} |")
        average = [f"{100 * numpy.mean([scores[metric][key] for scores in datasets.values()]):.1f}" for metric in ("paper", "spans") for key in ("p", "r", "f")]
        lines.append("| **average** | " + " | ".join(average) + " | | |")
        sections.append("\n".join(lines))
    names = list(next(iter(f1_by_dataset(results)["paper"].values())))  # every system ran the same datasets
    sections.append(side_by_side("### F1 side by side (paper metric / span metric)", results, names))
    sections.extend(threshold_table(system, datasets) for system, datasets in results.items() if has_sweep(datasets))
    return "\n\n".join(sections) + "\n"


def side_by_side(heading: str, results: Results, names: List[str]) -> str:
    """The F1 of every system on the named rows (datasets, "average"), paper metric / span metric."""
    table = f1_by_dataset(results)
    systems = list(results)
    lines = [heading, "", "| dataset | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for name in names:
        cells = [" / ".join(f"{table[metric][system][name]:.1f}" for metric in METRICS) if name in table["paper"][system] else "" for system in systems]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seen_table(results: Results, seen: List[str]) -> str:
    """F1 on the sets the student was trained on, apart from the zero-shot tables and their averages."""
    return side_by_side("### Seen in training (not zero-shot: in no table or average above; paper metric / span metric)", results, seen)


def has_sweep(datasets: Dict[str, Dict[str, Any]]) -> bool:
    return any(len(scores.get("thresholds", [])) > 1 for scores in datasets.values())


def threshold_table(system: str, datasets: Dict[str, Dict[str, Any]]) -> str:
    """Paper-metric P / R / F per dataset at each threshold, the best F1 of each dataset in bold.
    Shown beside the headline, never instead of it: choosing a threshold on a test set is tuning."""
    thresholds = [row["threshold"] for row in next(iter(datasets.values()))["thresholds"]]
    lines = [
        f"### {system}: paper metric P / R / F by score threshold (best F1 per set in bold; the headline above is at the pipeline's threshold)",
        "",
        "| dataset | " + " | ".join(f"{threshold:g}" for threshold in thresholds) + " |",
        "|---" * (len(thresholds) + 1) + "|",
    ]
    for name, scores in datasets.items():
        rows = scores["thresholds"]
        best = max(range(len(rows)), key=lambda i: rows[i]["f"])
        cells = [f"{100 * row['p']:.1f} / {100 * row['r']:.1f} / {100 * row['f']:.1f}" for row in rows]
        cells[best] = f"**{cells[best]}**"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def precision_recall_chart(results: Results, path: Path) -> Figure:
    """Paper-metric precision against recall as the score threshold rises, one line per dataset and
    their average (thresholds marked on it), one panel per system that has a sweep."""
    systems = [system for system, datasets in results.items() if has_sweep(datasets)]
    figure = Figure(figsize=(6.5 * len(systems), 5.5), layout="tight")
    for ax, system in zip(numpy.atleast_1d(figure.subplots(1, len(systems))), systems):
        curves = {name: scores["thresholds"] for name, scores in results[system].items()}
        for name, rows in curves.items():
            ax.plot([100 * row["r"] for row in rows], [100 * row["p"] for row in rows], marker=".", linewidth=1, alpha=0.7, label=name)
        recall = 100 * numpy.mean([[row["r"] for row in rows] for rows in curves.values()], axis=0)
        precision = 100 * numpy.mean([[row["p"] for row in rows] for rows in curves.values()], axis=0)
        ax.plot(recall, precision, marker="o", color="black", linewidth=2, label="average")
        for threshold, x, y in zip((row["threshold"] for row in next(iter(curves.values()))), recall, precision):
            ax.annotate(f"{threshold:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_title(f"{system}: precision / recall by score threshold (paper metric)")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    save_figure(figure, path)
    return figure


def bar_chart(results: Results, path: Path) -> Figure:
    """F1 per dataset and on average, one bar per system, one panel per metric, saved as a PNG."""
    return grouped_bars(f1_by_dataset(results), path)


def f1_by_domain(results: Results, domains: Dict[str, str]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """metric -> system -> domain (macro average of its sets), then "all sets" (macro over every
    set) and "all domains" (macro over the domains) -> F1 in percent."""
    by_dataset = f1_by_dataset(results)
    table: Dict[str, Dict[str, Dict[str, float]]] = {}
    for metric, systems in by_dataset.items():
        table[metric] = {}
        for system, row in systems.items():
            sets = {name: f1 for name, f1 in row.items() if name in domains}
            grouped: Dict[str, List[float]] = {}
            for name, f1 in sets.items():
                grouped.setdefault(domains[name], []).append(f1)
            averages = {domain: float(numpy.mean(values)) for domain, values in grouped.items()}
            averages["all sets"] = float(numpy.mean(list(sets.values())))
            averages["all domains"] = float(numpy.mean([averages[domain] for domain in grouped]))
            table[metric][system] = averages
    return table


def domain_table(results: Results, domains: Dict[str, str]) -> str:
    """F1 per domain (macro average of its sets) for every system, paper metric / span metric."""
    table = f1_by_domain(results, domains)
    systems = list(results)
    counts = Counter(domains.values())
    lines = ["### F1 by domain (macro average of its sets; paper metric / span metric)", "", "| domain | sets | " + " | ".join(systems) + " |", "|---" * (len(systems) + 2) + "|"]
    for group in next(iter(table["paper"].values())):
        sets = counts.get(group, len(domains)) if group != "all domains" else len(counts)
        cells = [" / ".join(f"{table[metric][system][group]:.1f}" for metric in METRICS) for system in systems]
        name = group if group in counts else f"**{group}**"
        lines.append(f"| {name} | {sets} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sets_table(results: Results, domains: Dict[str, str]) -> str:
    """What each set contributed: sentences in it and evaluated, types asked, and every system's
    time, with the time its rate gives for every sentence of the set."""
    systems = list(results)
    header = "| set | domain | sentences in set | evaluated | types | " + " | ".join(f"{system} s (all sentences, est.)" for system in systems) + " |"
    lines = ["### Sets read, and the time each took", "", header, "|---" * (5 + len(systems)) + "|"]
    first = results[systems[0]]
    for name, domain in domains.items():
        scores = first[name]
        rates = [results[system][name]["sentences_per_s"] for system in systems]
        times = [f"{scores['sentences'] / rate:,.0f} ({scores.get('sentences_in_set', scores['sentences']) / rate:,.0f})" for rate in rates]
        lines.append(f"| {name} | {domain} | {scores.get('sentences_in_set', '')} | {scores['sentences']} | {scores.get('types', '')} | " + " | ".join(times) + " |")
    return "\n".join(lines)


def domain_chart(results: Results, domains: Dict[str, str], path: Path) -> Figure:
    """F1 per domain and overall, one bar group per domain, one bar per system, one panel per metric."""
    return grouped_bars(f1_by_domain(results, domains), path)


def grouped_bars(table: Dict[str, Dict[str, Dict[str, float]]], path: Path) -> Figure:
    """Bars of metric -> system -> group -> F1: one group per key, one bar per system, one panel
    per metric, saved as a PNG."""
    systems = list(next(iter(table.values())))
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
    save_figure(figure, path)
    return figure


def save_figure(figure: Figure, path: Path) -> None:
    with atomic_file(path) as partial:
        figure.savefig(partial, dpi=120, format=Path(path).suffix.lstrip("."))

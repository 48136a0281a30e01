"""The learning curve a spaCy user needs before adapting: for each set and each gold size, the
student adapted by `adapt` beside spaCy's own `ner` trained on the same sentences (`spacy_ner`),
both scored with spaCy's scorer on the same held-out part of the set, the paper's metric beside it.
One seeded shuffle a set: the held-out part is its first `eval_size` sentences, and each gold-train
is the first N of the rest (the larger holds the smaller). Each point is written when it is done
and kept for a rerun with the same settings, so a killed run goes on where it stopped."""
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy
import srsly
from matplotlib.figure import Figure

from .adapt import DISTILLED_SHARE, NEGATIVES, distilled_of, labels_taught, negatives_cap, run_adapt, write_gold_docs
from .errors import UserError
from .evaluate.datasets import Sentence, load_benchmark
from .evaluate.report import save_figure
from .files import check_output_folder, write_json, write_text


def curve_parts(sentences: List[Sentence], sizes: List[int], eval_size: int, seed: int) -> Tuple[List[Sentence], Dict[int, List[Sentence]]]:
    """The held-out part and a gold-train per size, from one shuffle by `seed`."""
    sentences = [sentence for sentence in sentences if sentence.tokens]
    if eval_size < 1 or eval_size + max(sizes) > len(sentences):
        raise UserError(f"{sentences[0].dataset if sentences else 'the set'} has {len(sentences)} sentences: too few for {eval_size} held out and a gold-train of {max(sizes)}")
    order = numpy.random.default_rng(seed).permutation(len(sentences))
    held_out, pool = order[:eval_size], order[eval_size:]
    return [sentences[i] for i in sorted(held_out)], {size: [sentences[i] for i in sorted(pool[:size])] for size in sizes}


def run_point(student: Path, folder: Path, size: int, eval_path: Path, train: List[Sentence], settings: Dict[str, Any], adapt_options: Dict[str, Any]) -> Dict[str, Any]:
    """One point of the curve: both systems trained on `train` and scored on `eval_path` (the
    student's score before adapting given in `adapt_options` when known); the adapted student and
    spaCy's pipeline are removed once scored (the curve is its numbers)."""
    point_path = folder / f"{size}.json"
    if point_path.exists():
        point = srsly.read_json(point_path)
        if point.get("settings") == settings:
            return point
    train_path = folder / f"train-{size}.spacy"
    write_gold_docs(train_path, train)
    adapted = folder / f"adapted-{size}"
    report = run_adapt(student, train_path, eval_path, adapted, compare_spacy=True, **adapt_options)
    for made in (adapted, adapted.with_name(adapted.name + "-checkpoints")):  # kept by a killed run, which resumes from them
        shutil.rmtree(made)
    point = {"settings": settings, "size": size, **{key: value for key, value in report.items() if key != "training"}, "steps": report["training"].get("steps")}
    del point["spacy"]["pipeline"]  # removed with the checkpoints
    write_json(point_path, point)
    return srsly.read_json(point_path)  # as a rerun reads it (JSON keeps 10 digits of a score)


def run_curve(
    student: Path,
    sets: List[str],
    sizes: List[int],
    output: Path,
    mirror: Path,
    eval_size: int = 300,
    seed: int = 0,
    adapt_options: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """The curve for every set of `sets` (names of assets/benchmarks.json) and size of `sizes`,
    into the folder `output`: a folder a set with its DocBins and points, and curve.json, curve.md
    and curve.png. `adapt_options` go to `run_adapt` (config_path, distilled, overrides, ...)."""
    adapt_options = dict(adapt_options or {})
    # Checked before hours of work, and recorded in each point's settings as JSON can hold it.
    adapt_options["negatives"] = negatives_cap(adapt_options.get("negatives", NEGATIVES))
    adapt_options["distilled"] = distilled_of(student, adapt_options.get("distilled"), adapt_options.get("distilled_share", DISTILLED_SHARE))
    inputs = {"student": student, "mirror": mirror, **{key: value for key, value in adapt_options.items() if isinstance(value, Path)}}
    check_output_folder(output, inputs, replaced=False)
    sizes = sorted(set(sizes))
    settings = {"student": str(Path(student).resolve()), "eval_size": eval_size, "seed": seed, **{key: str(value) if isinstance(value, Path) else value for key, value in adapt_options.items()}}
    parts = {name: curve_parts(load_benchmark(name, mirror).sentences, sizes, eval_size, seed) for name in sets}  # every set checked before hours of work
    curve: Dict[str, List[Dict[str, Any]]] = {}
    for name, (held_out, trains) in parts.items():
        folder = Path(output) / name
        eval_path = folder / "eval.spacy"
        write_gold_docs(eval_path, held_out)
        points: List[Dict[str, Any]] = []
        zero_shot: Dict[Tuple[str, ...], Dict[str, float]] = {}  # one held-out part: scored once for each set of labels taught
        for size in sizes:
            taught = tuple(labels_taught(trains[size]))
            before = {"before": zero_shot[taught]} if taught in zero_shot else {}
            points.append(run_point(student, folder, size, eval_path, trains[size], dict(settings, set=name), {**adapt_options, **before, "seed": seed}))
            zero_shot[taught] = points[-1]["before"]
        curve[name] = points
    report = {"sets": sets, "sizes": sizes, "eval_size": eval_size, "seed": seed, "curve": curve}
    write_json(Path(output) / "curve.json", report)
    write_text(Path(output) / "curve.md", curve_table(curve))
    curve_chart(curve, Path(output) / "curve.png")
    return report


def curve_table(curve: Dict[str, List[Dict[str, Any]]]) -> str:
    lines = [
        "| set | gold sentences | labels taught | student zero-shot | adapted student | spaCy ner | adapted - spaCy | student paper F1 | minutes (adapt / spaCy) |",
        "|---" * 9 + "|",
    ]
    for name, points in curve.items():
        for point in points:
            student, baseline = 100 * point["after"]["ents_f"], 100 * point["spacy"]["ents_f"]
            lines.append(
                f"| {name} | {point['size']} | {len(point['labels'])} | {100 * point['before']['ents_f']:.1f} | {student:.1f} | {baseline:.1f} | {student - baseline:+.1f} "
                f"| {100 * point['before']['paper_f']:.1f} -> {100 * point['after']['paper_f']:.1f} | {point['minutes']:.1f} / {point['spacy']['minutes']:.1f} |"
            )
    return "spaCy's span F1 on doc.ents (strict), held-out part of each set, on the labels the gold-train teaches\n\n" + "\n".join(lines) + "\n"


def curve_chart(curve: Dict[str, List[Dict[str, Any]]], path: Path) -> Figure:
    """Span F1 against gold sentences, one panel a set: the adapted student, spaCy's ner, and the
    student before adapting (on the same labels: a small gold-train may teach fewer)."""
    figure = Figure(figsize=(4 * len(curve), 3.4), layout="constrained")
    for ax, (name, points) in zip(figure.subplots(1, len(curve), squeeze=False)[0], curve.items()):
        sizes = [point["size"] for point in points]
        ax.plot(sizes, [100 * point["after"]["ents_f"] for point in points], marker="o", label="adapted student")
        ax.plot(sizes, [100 * point["spacy"]["ents_f"] for point in points], marker="s", label="spaCy ner")
        ax.plot(sizes, [100 * point["before"]["ents_f"] for point in points], linestyle="--", color="grey", label="student, zero-shot")
        ax.set_xscale("log")
        ax.minorticks_off()  # the sizes themselves label the axis
        ax.set_xticks(sizes, [str(size) for size in sizes])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("gold sentences")
        ax.set_ylabel("span F1")
        ax.legend(fontsize=7)
    save_figure(figure, path)
    return figure

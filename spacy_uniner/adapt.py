"""Adaptation: a distilled student taught a user's own domain from their gold spaCy data, as the
paper's supervised setting does it. Gold docs -> UniNER conversations (every label of the data asked
of every passage, `[]` where it has none, at most NEGATIVES of those per answered question; a
"Dataset: NAME" line when a name is given) mixed with a share of the student's distilled
conversations, so that it keeps the types it knew -> the same trainer, from the student's own
weights -> a pipeline like `train`'s. The held-out gold is scored before and after, with the
paper's metric and spaCy's span scores."""
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy
import spacy
from spacy.tokens import Doc, DocBin, Span

from .component import pipeline_model, uniner_of
from .data import read_conversations, read_docs
from .errors import UserError
from .evaluate.datasets import Benchmark, Sentence, load_benchmark
from .evaluate.run import evaluate_benchmark, sentence_doc
from .files import atomic_file, check_output_file, check_output_folder, write_json
from .gold import DISTILLED_SHARE, MAX_DISTILLED_SHARE, NEGATIVES, gold_conversations
from .pipelines import load_pipeline, pipeline_meta
from .spacy_ner import train_spacy_ner
from .train import checkpoints_beside, run_training


def gold_spans(doc: Doc, spans_key: Optional[str]) -> List[Span]:
    if spans_key is None:
        return list(doc.ents)
    return list(doc.spans[spans_key]) if spans_key in doc.spans else []


def labels_taught(sentences: List[Sentence]) -> List[str]:
    return sorted({label for sentence in sentences for _, _, label in sentence.spans})


def read_gold(path: Path, name: str, spans_key: Optional[str] = None, label_names: Optional[Dict[str, str]] = None) -> Benchmark:
    """A gold DocBin as a benchmark: each doc a sentence with its own spacing, its gold `doc.ents`
    (or `doc.spans[spans_key]`) the mentions, their labels as written or mapped by `label_names`.
    A DocBin that holds no gold mention at all is an error."""
    docs = read_docs(path)
    names = label_names or {}
    sentences = []
    for index, doc in enumerate(docs):
        spans = [(span.start, span.end, names.get(span.label_, span.label_)) for span in gold_spans(doc, spans_key)]
        sentences.append(Sentence(name, index, [token.text for token in doc], spans, [bool(token.whitespace_) for token in doc]))
    labels = labels_taught(sentences)
    if not labels:
        where = f"doc.spans[{spans_key!r}]" if spans_key else "doc.ents (give --spans-key for gold in doc.spans)"
        raise UserError(f"{path} holds {len(docs)} docs and no gold mention in {where}: nothing to learn from")
    return Benchmark(name, labels, sentences)


def negatives_cap(negatives: Optional[float]) -> Optional[float]:
    """`--negatives` as `gold_conversations` takes it (and JSON can hold it): None, no cap, for None
    or infinity."""
    if negatives is not None and (isinstance(negatives, bool) or not isinstance(negatives, (int, float)) or not 0 <= negatives):
        raise UserError(f"--negatives must be a number >= 0 of questions answered [] per question with mentions (inf: all of them), got {negatives!r}")
    return None if negatives == float("inf") else negatives


def distilled_of(student: Path, distilled: Optional[Path], share: float) -> Optional[Path]:
    """The distilled conversations to mix in: `distilled` when given, else those the student learned
    from (`train` names them in the pipeline's meta.json, from its folder); none for a share of 0 or
    a student whose meta names none. A named file that is gone is an error, not a student adapted
    without them."""
    if distilled is not None or share == 0 or not (Path(student) / "meta.json").is_file():
        return distilled
    section = pipeline_meta(Path(student)).get("uniner", {})
    recorded = section.get("distilled") if isinstance(section, dict) else section
    if recorded is None:
        return None
    if not isinstance(recorded, str):
        raise UserError(f"{student}'s meta.json holds {{\"uniner\": {section!r}}} where `train` writes {{\"uniner\": {{\"distilled\": PATH}}}}: mend it, or give --distilled FILE")
    path = (Path(student) / recorded).resolve()  # from the pipeline's folder (`train`); an absolute path stays
    if not path.is_file():
        raise UserError(f"{student}'s meta.json names {recorded} ({path}) as the conversations it learned from, which is not there: give them with --distilled FILE, or --distilled-share 0 to mix in none")
    return path


def mixed_conversations(gold: List[Dict[str, Any]], distilled: Optional[Path], share: float, seed: int) -> Tuple[List[Dict[str, Any]], int]:
    """The gold conversations and `share` times as many of the distilled ones (drawn with `seed`)."""
    if distilled is None or share <= 0:
        return gold, 0
    records = [
        {"id": f"distilled-{conversation_id}", "conversations": [{"from": ("human", "gpt")[i % 2], "value": message} for i, message in enumerate(messages)]}
        for conversation_id, messages in read_conversations(distilled)
    ]
    count = min(len(records), round(share * len(gold)))
    picked = numpy.random.default_rng(seed).choice(len(records), size=count, replace=False)
    return gold + [records[i] for i in sorted(picked)], count


def score_gold(nlp: spacy.Language, gold: Benchmark) -> Dict[str, float]:
    """The pipeline on the gold docs: the paper's metric and spaCy's span F (in [0, 1], as spaCy reports)."""
    scores = evaluate_benchmark(nlp, gold, gold.sentences, None)["scores"]
    paper, spans = scores["paper"], scores["spans"]
    return {"paper_p": paper["p"], "paper_r": paper["r"], "paper_f": paper["f"], "ents_p": spans["p"], "ents_r": spans["r"], "ents_f": spans["f"]}


def run_adapt(
    student: Path,
    gold_train: Path,
    gold_eval: Path,
    output: Path,
    config_path: Path,
    checkpoints: Optional[Path] = None,
    dataset: Optional[str] = None,
    spans_key: Optional[str] = None,
    label_names: Optional[Dict[str, str]] = None,
    distilled: Optional[Path] = None,
    distilled_share: float = DISTILLED_SHARE,
    negatives: Optional[float] = NEGATIVES,
    seed: int = 0,
    overrides: Optional[Dict[str, Any]] = None,
    report_path: Optional[Path] = None,
    compare_spacy: bool = False,
    before: Optional[Dict[str, float]] = None,
) -> Dict[str, Any]:
    """Fine-tune `student` (a `uniner` pipeline folder) on the gold docs of `gold_train` mixed with
    its distilled conversations, write the adapted pipeline to `output`, and report the paper F and
    span F on `gold_eval` before and after. `overrides` are the trainer's config keys (as `train`
    takes them); the student's own pipeline settings are kept, with the gold labels. With
    `compare_spacy`, spaCy's own `ner` is trained on the same gold-train into CHECKPOINTS/spacy-ner
    and scored beside it (`spacy_ner`). `before` is the student's score on `gold_eval` when known.
    `negatives` caps the questions answered `[]` per question with mentions (`gold_conversations`;
    None or infinity: every label asked of every doc). `distilled` defaults to the conversations the
    student learned from (`distilled_of`); the adapted pipeline names the same ones."""
    if isinstance(distilled_share, bool) or not isinstance(distilled_share, (int, float)) or not 0 <= distilled_share <= MAX_DISTILLED_SHARE:
        raise UserError(f"the distilled share (--distilled-share) must be a number from 0 to {MAX_DISTILLED_SHARE} distilled conversations per gold one, got {distilled_share!r}")
    negatives = negatives_cap(negatives)
    distilled = distilled_of(student, distilled, distilled_share)
    checkpoints = Path(checkpoints) if checkpoints is not None else checkpoints_beside(output)
    inputs = {"student": student, "gold-train": gold_train, "gold-eval": gold_eval, "distilled conversations": distilled, "training config": config_path}
    check_output_folder(output, inputs)
    check_output_folder(checkpoints, inputs, replaced=False)
    if report_path is not None:
        check_output_file(report_path, inputs)
    started = time.perf_counter()
    nlp = load_pipeline(str(student))
    if nlp is None:
        raise UserError(f"{student} is not a spaCy pipeline (no config.cfg): give a student pipeline from `train`")
    uniner = uniner_of(nlp)
    if uniner is None:
        raise UserError(f"{student} has no uniner component (it has {nlp.pipe_names}): give a student pipeline from `train`")
    model = pipeline_model(student)
    name = dataset or Path(gold_train).stem
    train_gold, eval_gold = read_gold(gold_train, name, spans_key, label_names), read_gold(gold_eval, name, spans_key, label_names)
    # A rare label may have no mention in a small eval part (FabNER's `manufacturing standard`: 2 in
    # 300 sentences): it is still asked and scored, as spaCy's scorer does, its answers counting as
    # false positives only, and the report names it.
    unmentioned = sorted(set(train_gold.types) - set(eval_gold.types))
    if unmentioned:
        warnings.warn(f"[adapt] {gold_eval} has no gold mention of {unmentioned}, which {gold_train} teaches: what adapting did for them shows only in false positives")
    eval_gold.types = train_gold.types
    uniner.dataset = dataset
    before = before or score_gold(nlp, eval_gold)
    del nlp, uniner  # the student's weights are not held in memory while it trains

    conversations, mixed = mixed_conversations(gold_conversations(train_gold, dataset, negatives=negatives, seed=seed), distilled, distilled_share, seed)
    data = Path(checkpoints) / "adapt-conversations.json"
    write_json(data, conversations)
    settings = {
        **(overrides or {}),
        "model.base": str(model),
        "components.uniner.labels": train_gold.types,
        "components.uniner.dataset": dataset,
    }
    training = run_training(data, output, config_path, Path(student) / "config.cfg", Path(checkpoints), settings, distilled=distilled)
    after = score_gold(spacy.load(output), eval_gold)
    minutes = round((time.perf_counter() - started) / 60, 2)
    if compare_spacy:
        baseline = train_spacy_ner(train_gold, Path(checkpoints) / "spacy-ner", seed)
        baseline.update(score_gold(spacy.load(baseline["pipeline"]), eval_gold))
    report = {
        "before": before,
        "after": after,
        "labels": train_gold.types,
        "labels_without_eval_mentions": unmentioned,
        "dataset": dataset,
        "train_docs": len(train_gold.sentences),
        "eval_docs": len(eval_gold.sentences),
        "gold_conversations": len(conversations) - mixed,
        "distilled": None if distilled is None else str(distilled),
        "distilled_conversations": mixed,
        "minutes": minutes,
        "training": {key: value for key, value in training.items() if key not in ("held_out_answers",)},
        **({"spacy": baseline} if compare_spacy else {}),
    }
    if report_path is not None:
        write_json(report_path, report)
    return report


def write_gold_docs(path: Path, sentences: List[Sentence]) -> None:
    """Benchmark sentences as a gold DocBin (`sentence_doc`'s gold), as a user's own would come."""
    nlp = spacy.blank("en")
    with atomic_file(path) as partial:
        DocBin(docs=[sentence_doc(nlp, sentence, gold=True) for sentence in sentences]).to_disk(partial)


def split_benchmark(name: str, mirror: Path, train_output: Path, eval_output: Path, train_size: int, eval_size: Optional[int], seed: int = 0) -> Dict[str, int]:
    """A benchmark set of the mirror split by `seed` into gold-train (`train_size` sentences) and
    gold-eval (`eval_size` of the rest, or all of them) DocBins, as a user's own gold data would
    come: the stand-in for it in the project's `adapt` workflow and in the adaptation measurements."""
    check_output_file(train_output, {"mirror": mirror})
    check_output_file(eval_output, {"mirror": mirror, "gold-train output": train_output})
    if eval_size is not None and eval_size < 1:
        raise UserError(f"the gold-eval size must be at least 1 (or left out: all the rest), got {eval_size}")
    sentences = [sentence for sentence in load_benchmark(name, mirror).sentences if sentence.tokens]
    if train_size < 1 or train_size >= len(sentences):
        raise UserError(f"{name} has {len(sentences)} sentences: the gold-train size must be from 1 to {len(sentences) - 1}, got {train_size}")
    order = numpy.random.default_rng(seed).permutation(len(sentences))
    train_part, eval_part = sorted(order[:train_size]), sorted(order[train_size:])[:eval_size]
    for path, part in ((train_output, train_part), (eval_output, eval_part)):
        write_gold_docs(path, [sentences[i] for i in part])
    return {"sentences": len(sentences), "train": len(train_part), "eval": len(eval_part)}

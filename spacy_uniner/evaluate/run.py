"""Run a pipeline's `uniner` component over benchmark sentences, the way users run it, and score it
both ways: the paper's metric on its raw answers, spaCy's span scores on the doc.ents it writes."""
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy
import srsly
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc, Span
from spacy.training import Example
from tqdm import tqdm

from ..component import UniNER
from ..prompts import build_prompt
from .datasets import BENCHMARKS, Benchmark, Sentence, load_benchmark, paper_queries
from .metrics import PRF, paper_parse


class RecordingGenerator:
    """Passes prompts to the component's generator and keeps every answer, keyed by prompt."""

    def __init__(self, generator):
        self.generator = generator
        self.answers: Dict[str, str] = {}

    def generate(self, prompts: List[str]) -> List[str]:
        answers = self.generator.generate(prompts)
        self.answers.update(zip(prompts, answers))
        return answers

    def load(self, source=None) -> None:
        self.generator.load(source)

    def save(self, path) -> None:
        self.generator.save(path)


def uniner_of(nlp: Language) -> UniNER:
    for _, component in nlp.pipeline:
        if isinstance(component, UniNER):
            return component
    raise ValueError(f"The pipeline has no uniner component (its pipes: {nlp.pipe_names})")


def sample(sentences: List[Sentence], limit: Optional[int], seed: int) -> List[Sentence]:
    """`limit` sentences drawn with `seed`, in file order; all of them without a limit."""
    if limit is None or limit >= len(sentences):
        return sentences
    picked = numpy.random.default_rng(seed).choice(len(sentences), size=limit, replace=False)
    return [sentences[i] for i in sorted(picked)]


def sentence_doc(nlp: Language, sentence: Sentence, gold: bool) -> Doc:
    doc = Doc(nlp.vocab, words=sentence.tokens, spaces=[True] * (len(sentence.tokens) - 1) + [False])
    if gold:
        doc.ents = [Span(doc, start, end, label=label) for start, end, label in sentence.spans]
    return doc


def paper_golds(benchmark_name: str, mirror: Path, benchmarks: Path = BENCHMARKS) -> Optional[Dict[tuple, str]]:
    """The gold answer of every (text, type) query of the paper's own file, when the mirror has it:
    the paper metric then scores against exactly the paper's golds."""
    paper_file = srsly.read_json(benchmarks)[benchmark_name].get("paper_file")
    if not paper_file or not (Path(mirror) / paper_file).exists():
        return None
    return {(text, entity_type): answer for text, entity_type, answer in paper_queries(Path(mirror) / paper_file)}


def evaluate_benchmark(nlp: Language, benchmark: Benchmark, sentences: List[Sentence], golds: Optional[Dict[tuple, str]]) -> Dict[str, Any]:
    """Predictions (one record per (sentence, type) query) and scores for one benchmark."""
    uniner = uniner_of(nlp)
    uniner.labels = benchmark.types
    recorder = RecordingGenerator(uniner.generator)
    uniner.generator = recorder
    started = time.perf_counter()
    try:
        predicted = list(tqdm(nlp.pipe(sentence_doc(nlp, s, gold=False) for s in sentences), total=len(sentences), desc=benchmark.name, unit="sentence"))
    finally:
        uniner.generator = recorder.generator
    seconds = time.perf_counter() - started
    records, paper = [], PRF()
    for sentence in sentences:
        for entity_type in benchmark.types:
            prompt = build_prompt(sentence.text, entity_type)
            if prompt not in recorder.answers:
                raise ValueError(f"{benchmark.name} sentence {sentence.index} is longer than the component's window_size ({uniner.window_size} tokens): raise it to ask about whole sentences, as the paper does")
            answer = recorder.answers[prompt]
            gold = golds.get((sentence.text, entity_type)) if golds is not None else json.dumps(sentence.mentions(entity_type))
            record = {"dataset": benchmark.name, "sentence": sentence.index, "type": entity_type, "answer": answer, "parsed": paper_parse(answer), "gold": None if gold is None else paper_parse(gold)}
            if gold is not None:  # a sentence the paper's file leaves out is not in its metric
                paper.add(record["parsed"], record["gold"])
            records.append(record)
    spans = Scorer.score_spans([Example(doc, sentence_doc(nlp, s, gold=True)) for doc, s in zip(predicted, sentences)], "ents")
    scores = {
        "paper": paper.scores(),
        "spans": {"p": spans["ents_p"], "r": spans["ents_r"], "f": spans["ents_f"], "per_type": spans["ents_per_type"]},
        "sentences": len(sentences),
        "queries": len(records),
        "sentences_per_s": round(len(sentences) / seconds, 3),
        "queries_per_s": round(len(records) / seconds, 3),
    }
    return {"records": records, "scores": scores}


def markdown_table(results: Dict[str, Dict[str, Any]]) -> str:
    """Rows = datasets plus their average (the paper's headline row); P/R/F under each metric."""
    lines = ["| dataset | paper P | paper R | paper F | span P | span R | span F | sentences/s |", "|---" * 8 + "|"]
    rows = {name: scores for name, scores in results.items()}
    rows["average"] = {
        metric: {key: numpy.mean([scores[metric][key] for scores in results.values()]) for key in ("p", "r", "f")}
        for metric in ("paper", "spans")
    }
    for name, scores in rows.items():
        cells = [f"{100 * scores[metric][key]:.1f}" for metric in ("paper", "spans") for key in ("p", "r", "f")]
        speed = f"{scores['sentences_per_s']:.2f}" if "sentences_per_s" in scores else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {speed} |")
    return "\n".join(lines) + "\n"


def run_evaluation(nlp: Language, names: List[str], mirror: Path, output: Path, limit: Optional[int] = None, seed: int = 0) -> Dict[str, Any]:
    """Evaluate on each named benchmark, writing `output/<dataset>.jsonl` (every query) and
    `output/<dataset>.json` (its scores) as each finishes, then `output.json` and `output.md`. A
    dataset whose scores are there, for the same limit and seed, is not run again."""
    output.mkdir(parents=True, exist_ok=True)
    settings = {"limit": limit, "seed": seed}
    results = {}
    for name in names:
        done = output / f"{name}.json"
        if done.exists() and srsly.read_json(done).get("settings") == settings:
            results[name] = srsly.read_json(done)["scores"]
            continue
        benchmark = load_benchmark(name, mirror)
        result = evaluate_benchmark(nlp, benchmark, sample(benchmark.sentences, limit, seed), paper_golds(name, mirror))
        srsly.write_jsonl(output / f"{name}.jsonl", result["records"])
        srsly.write_json(done, {"settings": settings, "scores": result["scores"]})  # last: marks it done
        results[name] = srsly.read_json(done)["scores"]  # as a resumed run reads it
    summary = {"settings": settings, "datasets": results}
    srsly.write_json(output.with_suffix(".json"), summary)
    output.with_suffix(".md").write_text(markdown_table(results), encoding="utf8")
    return summary

"""Run a pipeline's `uniner` component over benchmark sentences, the way users run it, and score it
both ways: the paper's metric on its raw answers, spaCy's span scores on the doc.ents it writes."""
import hashlib
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy
import spacy
import srsly
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc, Span
from spacy.training import Example
from tqdm import tqdm

from ..answers import parse_answer
from ..component import uniner_of
from ..data import Conversations, normalize_type, question_pairs, read_conversations
from ..errors import UserError
from ..files import write_json, write_jsonl, write_text
from ..prompts import build_prompt, label_of_question
from ..scores import ScoredAnswer, scored_answers
from .datasets import BENCHMARKS, DEV, Benchmark, Sentence, benchmark_spec, load_benchmark, paper_queries, set_of_passage_id, words_key
from .metrics import paper_parse, paper_parse_scored, threshold_scores
from .report import bar_chart, domain_chart, domain_table, markdown_table, precision_recall_chart, seen_table, sets_table

if TYPE_CHECKING:
    from ..component import UniNER


class RecordingGenerator:
    """Passes prompts to the component's generator and keeps every answer, with its scores, keyed
    by prompt."""

    def __init__(self, generator):
        self.generator = generator
        self.answers: Dict[str, ScoredAnswer] = {}

    def generate_scored(self, prompts: List[str]) -> List[ScoredAnswer]:
        answers = scored_answers(self.generator, prompts)
        self.answers.update(zip(prompts, answers))
        return answers

    def generate(self, prompts: List[str]) -> List[str]:
        return [answer.text for answer in self.generate_scored(prompts)]

    def load(self, source=None) -> None:
        self.generator.load(source)

    def save(self, path) -> None:
        self.generator.save(path)


@contextmanager
def recording(uniner: Optional["UniNER"]) -> Iterator[Optional[RecordingGenerator]]:
    """The component's generator behind a recorder while inside: every answer it gives, keyed by
    prompt. None for a pipeline without the component."""
    if uniner is None:
        yield None
        return
    recorder = RecordingGenerator(uniner.generator)
    uniner.generator = recorder
    try:
        yield recorder
    finally:
        uniner.generator = recorder.generator


def sample(sentences: List[Sentence], limit: Optional[int], seed: int) -> List[Sentence]:
    """`limit` sentences drawn with `seed`, in file order; all of them without a limit."""
    if limit is None or limit >= len(sentences):
        return sentences
    picked = numpy.random.default_rng(seed).choice(len(sentences), size=limit, replace=False)
    return [sentences[i] for i in sorted(picked)]


GOLD_MENTIONS = "benchmark_gold"  # the span group of a reference doc's gold mentions


def sentence_doc(nlp: Language, sentence: Sentence, gold: bool) -> Doc:
    """A benchmark sentence as a Doc; with `gold`, its mentions in the span group GOLD_MENTIONS, and
    in doc.ents too unless they overlap (nested sets)."""
    doc = Doc(nlp.vocab, words=sentence.tokens, spaces=sentence.spaces or [True] * (len(sentence.tokens) - 1) + [False])
    if gold:
        doc.spans[GOLD_MENTIONS] = [Span(doc, start, end, label=label) for start, end, label in sentence.spans]
        covered = [i for start, end, _ in sentence.spans for i in range(start, end)]
        if len(covered) == len(set(covered)):
            doc.ents = list(doc.spans[GOLD_MENTIONS])
    return doc


def gold_or_entities(doc: Doc, attr: str) -> List[Span]:
    """For spaCy's span scores: a reference doc's gold mentions (nested ones included), a predicted
    doc's entities."""
    return list(doc.spans[GOLD_MENTIONS]) if GOLD_MENTIONS in doc.spans else list(doc.ents)


def paper_golds(benchmark_name: str, mirror: Path, benchmarks: Path = BENCHMARKS) -> Optional[Dict[tuple, str]]:
    """The gold answer of every (text, type) query of the paper's own file, when the mirror has it:
    the paper metric then scores against exactly the paper's golds."""
    paper_file = benchmark_spec(benchmark_name, benchmarks).get("paper_file")
    if not paper_file or not (Path(mirror) / paper_file).exists():
        return None
    return {(text, entity_type): answer for text, entity_type, answer in paper_queries(Path(mirror) / paper_file)}


def gazetteer(conversations: Path) -> Language:
    """The baseline: spaCy's EntityRuler over every teacher mention with its type, from the training
    conversations, matched case-insensitively."""
    patterns = {}
    for _, messages in read_conversations(conversations):
        for question, answer in question_pairs(messages):
            label = normalize_type(label_of_question(question))
            patterns.update(((label, mention), None) for mention in parse_answer(answer).strings)
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
    ruler.add_patterns([{"label": label, "pattern": mention} for label, mention in patterns])
    return nlp


def evaluate_benchmark(nlp: Language, benchmark: Benchmark, sentences: List[Sentence], golds: Optional[Dict[tuple, str]]) -> Dict[str, Any]:
    """Predictions (one record per (sentence, type) query) and scores for one benchmark. A pipeline
    with a `uniner` component is asked the benchmark's types and scored on its raw answers, keeping
    the mentions the component keeps, by its `threshold` and `label_margin` (every one at 0 and
    1.0, the paper's protocol; each record keeps them all, with their scores); any other (the
    gazetteer, spaCy's ner) on the mentions its doc.ents give each type."""
    uniner = uniner_of(nlp)
    threshold, label_margin = counting_rule(nlp)
    if uniner is not None:
        uniner.labels = benchmark.types
    started = time.perf_counter()
    with recording(uniner) as recorder:
        predicted = list(tqdm(nlp.pipe(sentence_doc(nlp, s, gold=False) for s in sentences), total=len(sentences), desc=benchmark.name, unit="sentence"))
    seconds = time.perf_counter() - started
    # Other systems' labels count where they name a benchmark type ("PERSON" for "person").
    types = {normalize_type(entity_type): entity_type for entity_type in benchmark.types}
    for doc in predicted:
        doc.ents = [Span(doc, ent.start, ent.end, label=types[normalize_type(ent.label_)]) for ent in doc.ents if normalize_type(ent.label_) in types]
    records = []
    for sentence, doc in zip(sentences, predicted):
        for entity_type in benchmark.types:
            if recorder is None:
                answer = ScoredAnswer(json.dumps([ent.text for ent in doc.ents if ent.label_ == entity_type]))
            elif (prompt := build_prompt(sentence.text, entity_type, uniner.dataset)) in recorder.answers:
                answer = recorder.answers[prompt]
            else:
                raise UserError(f"{benchmark.name} sentence {sentence.index} is longer than the component's window_size ({uniner.window_size} tokens): raise it to ask about whole sentences, as the paper does")
            gold = golds.get((sentence.text, entity_type)) if golds is not None else json.dumps(sentence.mentions(entity_type))
            parsed, mention_scores = paper_parse_scored(answer)
            records.append({"dataset": benchmark.name, "sentence": sentence.index, "type": entity_type, "answer": answer.text, "parsed": parsed, "scores": mention_scores, "gold": None if gold is None else paper_parse(gold)})
    paper = threshold_scores(records, [threshold], label_margin)[0]
    spans = Scorer.score_spans([Example(doc, sentence_doc(nlp, s, gold=True)) for doc, s in zip(predicted, sentences)], "ents", getter=gold_or_entities)
    scores = {
        "paper": {key: value for key, value in paper.items() if key != "threshold"},
        "spans": {"p": spans["ents_p"], "r": spans["ents_r"], "f": spans["ents_f"], "per_type": spans["ents_per_type"]},
        "sentences": len(sentences),
        "sentences_in_set": len(benchmark.sentences),
        "types": len(benchmark.types),
        "queries": len(records),
        "sentences_per_s": round(len(sentences) / seconds, 3),
        "queries_per_s": round(len(records) / seconds, 3),
        "threshold": threshold,
        "label_margin": label_margin,
    }
    return {"records": records, "scores": scores}


def counting_rule(nlp: Language) -> Tuple[float, float]:
    """Which mentions count: the `uniner` component's threshold and label_margin; for other
    systems, every mention (0 and 1.0)."""
    uniner = uniner_of(nlp)
    return (0.0, 1.0) if uniner is None else (uniner.threshold, uniner.label_margin)


def in_texts(texts: List[List[str]], sentences: List[Sentence], shingle: int = 8, fewest_words: int = 4) -> Tuple[List[Sentence], List[Sentence]]:
    """The sentences that the texts (as `words_key` words) hold: copied ones, of `shingle` words or
    more, every run of `shingle` of whose words a text holds; and short ones, of `fewest_words` or
    more, whose words a text holds in a row. Shorter sentences (MIT's "pub", "todd") say nothing
    about where a text came from and are not checked."""
    runs_seen = {tuple(words[i : i + shingle]) for words in texts for i in range(len(words) - shingle + 1)}
    joined = " | ".join(" ".join(words) for words in texts)
    copied, short = [], []
    for sentence in sentences:
        words = words_key(sentence.text)
        if len(words) >= shingle:
            if all(tuple(words[i : i + shingle]) in runs_seen for i in range(len(words) - shingle + 1)):
                copied.append(sentence)
        elif len(words) >= fewest_words and f" {' '.join(words)} " in f" {joined} ":
            short.append(sentence)
    return copied, short


def training_texts(conversations: Conversations, gold: bool = False) -> List[List[str]]:
    """The words of the training texts: the gold sets' passages (`gold`) or every other one."""
    return [words_key(messages[0]) for conversation_id, messages in conversations if (set_of_passage_id(conversation_id) is not None) == gold]


def zero_shot_check(path: Path, conversations: Conversations, sentences: List[Sentence]) -> List[Sentence]:
    """The zero-shot rule: no evaluation sentence in a training text (the gold sets' passages aside:
    the sets they come from are scored as seen). Case and tokenization are ignored, as benchmark
    text is pre-tokenized ("model s ,"). A copied sentence (`in_texts`) is refused with an error; a
    short one is returned, for the caller to leave out, because a few words in a row ("I 'm not
    sure .", "Administrative divisions of Peru") may be a common phrase rather than a copy."""
    copied, short = in_texts(training_texts(conversations), sentences)
    if copied:
        listed = [f"{sentence.dataset} sentence {sentence.index}: {sentence.text[:80]!r}" for sentence in copied]
        raise UserError(f"Zero-shot rule: {len(copied)} evaluation sentences are in the training conversations {path}; take them out of the training data:\n" + "\n".join(listed[:20]))
    return short


def seen_sets(conversations: Conversations, benchmarks: Dict[str, Benchmark]) -> List[str]:
    """Which of `benchmarks` the training file's gold passages (from `build-data --gold-sets`) come
    from, or hold copied sentences of (CoNLL++ is CoNLL03's text again): scored apart, never as
    zero-shot."""
    named = {set_of_passage_id(conversation_id) for conversation_id, _ in conversations}
    seen = {name for name in benchmarks if name.removesuffix(DEV) in named}
    copied, _ = in_texts(training_texts(conversations, gold=True), [sentence for name, benchmark in benchmarks.items() if name not in seen for sentence in benchmark.sentences])
    return [name for name in benchmarks if name in seen or name in {sentence.dataset for sentence in copied}]


def system_identity(nlp: Language) -> Dict[str, Any]:
    """What a system's answers depend on besides the sentences, so that saved scores are reused
    for that system only: its config (backend block, labels, decoding settings), the precision its
    student decodes in as this machine resolved it, and its weights' files (names, sizes, times)."""
    identity: Dict[str, Any] = {"config": hashlib.sha256(nlp.config.to_str().encode("utf8")).hexdigest()}
    uniner = uniner_of(nlp)
    generator = getattr(uniner, "generator", None)
    precision = getattr(generator, "precision", None)
    if precision is not None:
        identity["precision"] = precision.name
    source = getattr(generator, "source", None)
    if source is not None:
        files = sorted(path for path in Path(source).rglob("*") if path.is_file()) if Path(source).is_dir() else []
        stamps = [(path.relative_to(source).as_posix(), path.stat().st_size, path.stat().st_mtime_ns) for path in files]
        identity["weights"] = hashlib.sha256(json.dumps([str(source), stamps]).encode("utf8")).hexdigest()
    return identity


def run_evaluation(
    systems: Dict[str, Language],
    names: List[str],
    mirror: Path,
    output: Path,
    limit: Optional[int] = None,
    seed: int = 0,
    training_data: Optional[Path] = None,
    thresholds: Sequence[float] = (0.0,),
    by_domain: bool = False,
) -> Dict[str, Any]:
    """Evaluate every system on the same sentences of each named benchmark, writing
    `output/<system>/<dataset>.jsonl` (every query, with its mention scores) and `.json` (its
    scores) as each finishes, then `output.json`, the table `output.md` and the chart `output.png`.
    A dataset whose scores are there for the same limit and seed is not run again. A set that cannot
    be read (a missing file, a line that does not parse, a tag with no type) is skipped with its
    error in the summary and the table; the others run. With `training_data`, the zero-shot rule:
    a sentence copied into it stops the run, a short one that it holds is left out (and listed).
    With several `thresholds`, the paper metric at each (mentions scoring below it dropped; from
    the saved queries, so no second decoding) goes into the table and the precision/recall chart
    `output-pr.png`; the headline scores count the mentions the pipeline keeps by its own threshold
    and label_margin (0 and 1.0 by default, the paper's protocol), and so does every row of the
    sweep. With `by_domain`, the table adds each domain's macro average and the sets read, and
    `output-domains.png` charts the domains."""
    settings = {"limit": limit, "seed": seed, "mention_scores": True}
    specs = {name: benchmark_spec(name) for name in names}  # an unknown name stops the run before any work
    benchmarks: Dict[str, Benchmark] = {}
    skipped: Dict[str, str] = {}
    for name in names:
        try:
            benchmarks[name] = load_benchmark(name, mirror)
        except (OSError, ValueError) as err:
            skipped[name] = str(err)
            print(f"Skipping {name}: {err}")
    if not benchmarks:
        raise UserError(f"No benchmark could be read: {skipped}")
    # Short sentences that a training text holds are left out before sampling, so the sample of a
    # set without any stays the same.
    left_out: Dict[str, List[int]] = {}
    seen: List[str] = []
    if training_data is not None:
        conversations = read_conversations(training_data)  # read once: a training file is tens of MB
        seen = seen_sets(conversations, benchmarks)
        for sentence in zero_shot_check(training_data, conversations, [sentence for name, benchmark in benchmarks.items() if name not in seen for sentence in benchmark.sentences]):
            left_out.setdefault(sentence.dataset, []).append(sentence.index)
    chosen = {name: sample([s for s in benchmark.sentences if s.index not in left_out.get(name, ())], limit, seed) for name, benchmark in benchmarks.items()}
    results: Dict[str, Dict[str, Any]] = {}
    seconds: Dict[str, Dict[str, float]] = {}
    mention_thresholds: Dict[str, float] = {}
    label_margins: Dict[str, float] = {}
    identities = {system: system_identity(nlp) for system, nlp in systems.items()}
    for system, nlp in systems.items():
        mention_thresholds[system], label_margins[system] = counting_rule(nlp)
    for system, nlp in systems.items():
        folder = output / system
        folder.mkdir(parents=True, exist_ok=True)
        results[system], seconds[system] = {}, {}
        for name, benchmark in benchmarks.items():
            done = folder / f"{name}.json"
            run_settings = dict(settings, threshold=mention_thresholds[system], label_margin=label_margins[system], system=identities[system])
            if not (done.exists() and srsly.read_json(done).get("settings") == run_settings):
                started = time.perf_counter()
                result = evaluate_benchmark(nlp, benchmark, chosen[name], paper_golds(name, mirror))
                write_jsonl(folder / f"{name}.jsonl", result["records"])
                # Last: marks it done.
                write_json(done, {"settings": run_settings, "scores": result["scores"], "seconds": round(time.perf_counter() - started, 1)})
            record = srsly.read_json(done)  # as a resumed run reads it
            results[system][name], seconds[system][name] = record["scores"], record.get("seconds")
            results[system][name]["thresholds"] = threshold_scores(srsly.read_jsonl(folder / f"{name}.jsonl"), thresholds, label_margins[system])
    domains = {name: specs[name]["domain"] for name in benchmarks}
    precisions = {system: identity["precision"] for system, identity in identities.items() if identity.get("precision")}
    summary = {"settings": dict(settings, thresholds=list(thresholds)), "precisions": precisions, "mention_thresholds": mention_thresholds, "label_margins": label_margins, "systems": results, "seconds": seconds, "domains": domains, "skipped": skipped, "left_out": left_out, "seen": seen}
    write_json(output.with_suffix(".json"), summary)
    # The tables, averages and charts are the zero-shot sets'; a set the student was trained on is
    # shown apart (when every set was, the tables are theirs, under that heading).
    shown = {system: {name: scores for name, scores in datasets.items() if name not in seen} for system, datasets in results.items()}
    shown = results if not any(shown.values()) else shown
    shown_domains = {name: domain for name, domain in domains.items() if name in next(iter(shown.values()))}
    sections = [markdown_table(shown, mention_thresholds, label_margins)]
    if seen:
        sections.append(seen_table(results, seen))
    if precisions:
        sections.insert(0, "Decoded in: " + ", ".join(f"{system} {name}" for system, name in precisions.items()))
    if by_domain:
        sections[:0] = [domain_table(shown, shown_domains), sets_table(shown, shown_domains)]
        domain_chart(shown, shown_domains, output.with_name(output.name + "-domains.png"))
    if left_out:
        sections.append("### Left out (short sentences a training text holds: the zero-shot rule)\n\n" + "\n".join(f"- {name}: sentences {indices}" for name, indices in left_out.items()))
    if skipped:
        sections.append("### Skipped sets\n\n" + "\n".join(f"- {name}: {error}" for name, error in skipped.items()))
    write_text(output.with_suffix(".md"), "\n\n".join(section.strip() for section in sections) + "\n")
    bar_chart(shown, output.with_suffix(".png"))
    if len(thresholds) > 1:
        precision_recall_chart(shown, output.with_name(output.name + "-pr.png"))
    return summary

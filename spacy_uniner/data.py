"""Teacher annotations -> training conversations in the format of the public Pile-NER-type data:
{"id", "conversations": [{"from": "human" | "gpt", "value"}, ...]}, rendered with the one template.

Per passage: `Text: ...`, `I've read this text.`, then one `What describes {type} in the text?` per
type with the JSON list of its mentions (deduplicated, in text order). Types absent from the passage
are asked too, as negatives answered `[]`: the ones the teacher was asked about and left empty, then
more sampled by type frequency, as the paper did.
"""
import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from .distill.run import PASSAGE_ID, PASSAGE_META
from .distill.task import ANSWER_KEY
from .errors import UserError
from .files import check_output_files, write_json
from .evaluate.datasets import GOLD_ID
from .gold import gold_set_conversations
from .prompts import conversation, text_turn


def normalize_type(label: str) -> str:
    """One spelling per type: lower case, single spaces ("Medical  Condition" -> "medical condition")."""
    return " ".join(label.split()).lower()


def passage_answers(doc: Doc) -> Dict[str, List[str]]:
    """The teacher's mentions per normalized type, as exact passage text, deduplicated, in text order."""
    answers: Dict[str, List[str]] = {}
    # The task keeps only types with a non-blank name, so a normalized type is never empty.
    for start, end, label in sorted(doc.user_data[ANSWER_KEY]["mentions"]):
        mentions = answers.setdefault(normalize_type(label), [])
        if doc.text[start:end] not in mentions:
            mentions.append(doc.text[start:end])
    return answers


def source_of(passage_id: str) -> str:
    return passage_id.split("-")[0]


def build_conversations(
    docs: List[Doc],
    negative_rate: float = 1.0,
    min_type_count: int = 1,
    dataset: Optional[str] = None,
    seed: int = 0,
    recorded_negatives: bool = True,
    draws: int = 1,
    extra_draws: Optional[Dict[str, int]] = None,
) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """Conversations for the passages in `docs` (as distillation wrote them), and a report.

    negative_rate: negatives per positive type of a passage, on average (stochastic rounding); the
        teacher's own empty types count first, the rest are drawn by how many passages have a type.
    min_type_count: a type in fewer passages than this is neither asked nor sampled (the long tail
        of one-off types is mostly noise).
    dataset: adds the paper's `Dataset: {name}` line, for mixing in supervised data.
    recorded_negatives: whether the teacher's own empty types are asked (with negative_rate 0 and
        this False, no negative is asked at all).
    draws: conversations per passage, each with its own draw of sampled negatives, in rounds: every
        passage once, then again.
    extra_draws: more draws for the passages of a source, beside `draws` ({"def": 1}), so that the
        sources richest in answers per token are seen more often.

    A passage's source is the start of its id, up to its first "-" (`pile`, `def`, `gliner` for the
    recorded sources); the report counts conversations per source.
    """
    extra_draws = extra_draws or {}
    if negative_rate < 0 or min_type_count < 1 or draws < 1 or min(extra_draws.values(), default=0) < 0:
        raise UserError(f"negative_rate must be >= 0, min_type_count and draws >= 1 and extra draws >= 0, not {negative_rate}, {min_type_count}, {draws} and {extra_draws}")
    answers = [passage_answers(doc) for doc in docs]
    type_counts = Counter(label for passage in answers for label in passage)
    kept = sorted(label for label, count in type_counts.items() if count >= min_type_count)
    index = {label: i for i, label in enumerate(kept)}
    weights = numpy.array([type_counts[label] for label in kept], dtype=float)
    rng = numpy.random.default_rng(seed)
    conversations = []
    report: Counter = Counter()
    sources: Counter = Counter()
    draws_of = [draws + extra_draws.get(source_of(doc.user_data.get(PASSAGE_ID, "")), 0) for doc in docs]
    rounds = max(draws_of, default=0)
    for doc, passage in [(doc, passage) for draw in range(rounds) for doc, passage, n in zip(docs, answers, draws_of) if draw < n]:
        positives = [(label, mentions) for label, mentions in passage.items() if label in index]
        recorded = [normalize_type(label) for label in doc.user_data.get(PASSAGE_META, {}).get("negative_types", [])] if recorded_negatives else []
        negatives = list(dict.fromkeys(label for label in recorded if label and label not in passage))
        wanted = int(negative_rate * len(positives) + rng.random()) - len(negatives)
        # Sampling weights with this passage's types and its recorded negatives zeroed: work per
        # passage is one array copy, not a Python loop over every type (13,020 in Pile-NER-type).
        p = weights.copy()
        p[[index[label] for label in [*passage, *negatives] if label in index]] = 0
        available = numpy.count_nonzero(p)
        if wanted > 0 and available:
            picks = rng.choice(len(kept), size=min(wanted, available), replace=False, p=p / p.sum())
            negatives += [kept[i] for i in picks]
        if not positives and not negatives:
            report["passages_without_questions"] += 1
            continue
        questions = positives + [(label, []) for label in negatives]
        questions = [questions[i] for i in rng.permutation(len(questions))]
        passage_id = doc.user_data.get(PASSAGE_ID, str(len(conversations)))
        conversations.append(conversation(passage_id, doc.text, questions, dataset))
        sources[source_of(passage_id)] += 1
        report["conversations"] += 1
        report["positive_questions"] += len(positives)
        report["negative_questions"] += len(negatives)
        report["mentions"] += sum(len(mentions) for _, mentions in positives)
    report.update(types=len(type_counts), types_kept=len(kept), passages=len(docs), draws=draws)
    return conversations, dict(report, **({"extra_draws": extra_draws} if extra_draws else {}), sources=dict(sources))


def read_docs(path: Path) -> List[Doc]:
    """The docs of a .spacy DocBin, with their user_data; a file that is not one is an error naming it."""
    try:
        return list(DocBin().from_disk(path).get_docs(Vocab()))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable .spacy DocBin ({err})") from err


def read_annotations(path: Path) -> List[Doc]:
    """The docs that distillation wrote (a .spacy DocBin with the teacher's answers in user_data)."""
    docs = read_docs(path)
    if not docs:
        raise UserError(f"{path} holds no annotated passages: nothing to build conversations from")
    missing = [i for i, doc in enumerate(docs) if ANSWER_KEY not in doc.user_data]
    if missing:
        raise UserError(f"{path}: docs {missing[:5]} have no teacher answer; is this the output of distill?")
    return docs


def question_pairs(messages: List[str]) -> List[List[str]]:
    """The [question, answer] pairs of a conversation's messages, after the text turn and its reply."""
    return [messages[i : i + 2] for i in range(2, len(messages), 2)]


Conversations = List[Tuple[str, List[str]]]  # (id, messages) of a training file


def read_conversations(path: Path) -> Conversations:
    """(id, messages) per conversation of a Pile-NER-type JSON file, checked: a list of records whose
    turns alternate human/gpt, open with a text turn and end with an answer."""
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable JSON file of conversations ({err})") from err
    if not isinstance(records, list) or not records:
        raise UserError(f"{path}: expected a non-empty JSON list of conversations, got {type(records).__name__} {str(records)[:80]!r}")
    conversations = []
    for n, record in enumerate(records):
        turns = record.get("conversations") if isinstance(record, dict) else None
        where = f"{path}: conversation {n} (id {record.get('id') if isinstance(record, dict) else None!r})"
        if not isinstance(turns, list) or len(turns) < 4 or len(turns) % 2:
            raise UserError(f"{where} must have a 'conversations' list of at least 4 turns, an even number: text, reply, then question/answer pairs")
        for i, turn in enumerate(turns):
            expected = ("human", "gpt")[i % 2]
            if not isinstance(turn, dict) or turn.get("from") != expected or not isinstance(turn.get("value"), str) or not turn["value"].strip():
                raise UserError(f"{where}, turn {i}: expected {{'from': {expected!r}, 'value': non-empty text}}, got {str(turn)[:80]!r}")
        if text_turn("") not in turns[0]["value"]:
            raise UserError(f"{where}: the first turn must be the text turn ('Text: ...'), got {turns[0]['value'][:80]!r}")
        conversations.append((str(record.get("id", n)), [turn["value"] for turn in turns]))
    return conversations


def run_build_data(annotations: Path, output: Path, report_path: Optional[Path] = None, gold: Optional[Dict[str, Any]] = None, **settings: Any) -> Dict[str, Any]:
    """The teacher's conversations (`settings` as `build_conversations` takes them) and, with `gold`
    (`gold_set_conversations`'s arguments), the gold sets' after them, in one file."""
    check_output_files((output, report_path), {"annotations": annotations, **({"mirror": gold["mirror"]} if gold else {})})
    # The gold sets first: a held-out or unknown name stops the build before the annotations are read.
    gold_conversations, gold_report = gold_set_conversations(**gold) if gold else ([], None)
    conversations, report = build_conversations(read_annotations(annotations), **settings)
    if gold:
        conversations += gold_conversations
        report.update(gold=gold_report, sources=dict(report["sources"], **{GOLD_ID: len(gold_conversations)}))
    write_json(output, conversations)
    if report_path is not None:
        write_json(report_path, report)
    return report

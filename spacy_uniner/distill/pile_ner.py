"""Real LLM annotations -> the recorded-response file that `spacy_uniner.RecordedTeacher.v1` replays.

Pile-NER keeps one answer per (passage, type) question. Joining a passage's answers gives the teacher's
tuple list back; the types it was asked about and answered `[]` are kept as `negative_types`, real
negatives that build-data uses before it samples any. Two smaller sources read the same way: SLIMER's
type definitions (three Pile sentences per type with GPT's mentions of that type) and GLiNER's
LLM-annotated sample (token spans). Each record's id names its source (`pile-`, `def-`, `gliner-`),
and the conversations keep it, so a report can say where each one came from.
"""
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Tuple

from ..answers import parse_answer
from ..errors import UserError
from ..files import read_json, read_jsonl_lines
from ..prompts import READ_REPLY, text_turn

_TEXT = text_turn("")  # "Text: ", the opening of every conversation

# (id, text, [(type, its mentions)]) of one text, as every source is read before it becomes a record.
SourceAnswers = Tuple[str, str, List[Tuple[str, List[str]]]]

_QUESTION = re.compile(r"^What describes (.+) in the text\?$", re.S)


def read_pile_ner(path: Path) -> Iterator[Dict[str, Any]]:
    """Recorded responses, {"id", "text", "response", "meta": {"negative_types"}}, from
    Pile-NER-type's train.json (a JSON list of conversations; all 45,889 passages), a SLIMER-style
    .jsonl sample of it (one (passage, type) question a line, as in ../shared/data/pile_ner/),
    SLIMER's definitions file (a JSON object keyed by type) or GLiNER's sample (a JSON list of
    {"tokenized_text", "ner"})."""
    return (_record(passage_id, text, answers) for passage_id, text, answers in _source_answers(Path(path)))


def _source_answers(path: Path) -> Iterator[SourceAnswers]:
    """(id, text, [(type, mentions)]) per text of one source, in whichever format it has."""
    if path.suffix == ".jsonl":
        return _from_questions(path, [record for _, record in read_jsonl_lines(path)])
    data = read_json(path)
    if isinstance(data, dict):
        return _from_definitions(path, data)
    if isinstance(data, list) and data and isinstance(data[0], dict) and "tokenized_text" in data[0]:
        return _from_token_spans(path, data)
    return _from_conversations(path, data)


def read_records(paths: Iterable[Path]) -> List[Dict[str, Any]]:
    """The records of every source, one per distinct text: a text in several sources (or asked
    about several types, as a definition sentence can be) gets all their answers joined."""
    ids: Dict[str, str] = {}  # text -> the id of its first record
    answers: Dict[str, List[Tuple[str, List[str]]]] = {}
    for path in paths:
        for passage_id, text, source_answers in _source_answers(Path(path)):
            ids.setdefault(text, passage_id)
            answers.setdefault(text, []).extend(source_answers)
    return [_record(ids[text], text, _joined(pairs)) for text, pairs in answers.items()]


def _joined(answers: List[Tuple[str, List[str]]]) -> List[Tuple[str, List[str]]]:
    """One (type, mentions) per type, mentions deduplicated in order."""
    by_type: Dict[str, List[str]] = {}
    for label, mentions in answers:
        known = by_type.setdefault(label, [])
        known += [mention for mention in mentions if mention not in known]
    return list(by_type.items())


def teacher_response(pairs: Iterable[Tuple[str, str]]) -> str:
    """A tuple list as the paper's teacher prompt asks for it: [("entity", "type"), ...]."""
    return "[" + ", ".join(f"({json.dumps(m, ensure_ascii=False)}, {json.dumps(t, ensure_ascii=False)})" for m, t in pairs) + "]"


def _record(passage_id: str, text: str, answers: List[Tuple[str, List[str]]]) -> Dict[str, Any]:
    pairs = [(mention, label) for label, mentions in answers for mention in mentions]
    negatives = [label for label, mentions in answers if not mentions]
    return {"id": passage_id, "text": text, "response": teacher_response(pairs), "meta": {"negative_types": negatives}}


def _from_questions(path: Path, rows: List[Dict[str, Any]]) -> Iterator[SourceAnswers]:
    answers: Dict[str, List[Tuple[str, List[str]]]] = {}
    texts: Dict[str, str] = {}
    for i, row in enumerate(rows, 1):
        try:
            passage_id = "pile-" + row["doc_question_pairID"].split(":")[0]
            texts[passage_id] = row["input"]
            answers.setdefault(passage_id, []).append((row["tagName"], parse_answer(row["output"]).strings))
        except (KeyError, TypeError, AttributeError) as error:
            raise UserError(
                f"{path} line {i}: expected doc_question_pairID, tagName, input and output fields ({error!r})"
            ) from error
    for passage_id, text in texts.items():
        yield passage_id, text, answers[passage_id]


def _from_conversations(path: Path, records: Any) -> Iterator[SourceAnswers]:
    if not isinstance(records, list):
        raise UserError(f"{path}: expected a JSON list of {{'id', 'conversations'}} records (Pile-NER-type)")
    for i, record in enumerate(records):
        try:
            turns = [turn["value"] for turn in record["conversations"]]
            if not turns[0].startswith(_TEXT) or turns[1] != READ_REPLY:
                raise UserError("the conversation does not open with 'Text: ...' and the read reply")
            answers = []
            for question, answer in zip(turns[2::2], turns[3::2]):
                match = _QUESTION.match(question)
                if match is None:
                    raise UserError(f"not a type question: {question[:80]!r}")
                answers.append((match.group(1), parse_answer(answer).strings))
        except (KeyError, TypeError, IndexError, ValueError) as error:
            name = record.get("id") if isinstance(record, dict) else None
            raise UserError(f"{path} record {i} ({name}): {error}") from error
        yield str(record.get("id", i)), turns[0][len(_TEXT):], answers


def _from_definitions(path: Path, definitions: Dict[str, Any]) -> Iterator[SourceAnswers]:
    """SLIMER's top391NEs_definitions.json: per type, example sentences with GPT's mentions of it."""
    for label, entry in definitions.items():
        try:
            for n, example in enumerate(entry["sentences_as_example"]):
                yield f"def-{label}-{n}", example["sentence"], [(label, list(example["entities"]))]
        except (KeyError, TypeError) as error:
            raise UserError(f"{path}: type {label!r}: expected sentences_as_example with sentence and entities ({error!r})") from error


def _from_token_spans(path: Path, rows: List[Dict[str, Any]]) -> Iterator[SourceAnswers]:
    """GLiNER's format: tokens and [first token, last token (inclusive), type] spans."""
    for i, row in enumerate(rows):
        try:
            tokens = row["tokenized_text"]
            answers = _joined([(label, [" ".join(tokens[start : end + 1])]) for start, end, label in row["ner"]])
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"{path} record {i}: expected tokenized_text and ner [[start, end, type], ...] ({error!r})") from error
        yield f"gliner-{i}", " ".join(tokens), answers


def recorded_responses(path: Path) -> bool:
    """Whether the file's first line is a recorded response (as `pile-ner-records` writes them)."""
    try:
        with path.open(encoding="utf8") as file:
            first = json.loads(file.readline())
    except ValueError:  # not JSON, or not UTF-8
        return False
    return isinstance(first, dict) and "response" in first

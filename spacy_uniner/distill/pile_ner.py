"""Real ChatGPT answers from the public Pile-NER data -> the recorded-response file that
`spacy_uniner.RecordedTeacher.v1` replays.

Pile-NER keeps one answer per (passage, type) question. Joining a passage's answers gives the teacher's
tuple list back; the types it was asked about and answered `[]` are kept as `negative_types`, real
negatives that build-data uses before it samples any.
"""
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Tuple

import srsly

from ..answers import parse_answer
from ..prompts import READ_REPLY, text_turn

_TEXT = text_turn("")  # "Text: ", the opening of every conversation

_QUESTION = re.compile(r"^What describes (.+) in the text\?$", re.S)


def read_pile_ner(path: Path) -> Iterator[Dict[str, Any]]:
    """Recorded responses, {"id", "text", "response", "meta": {"negative_types"}}, from either
    Pile-NER-type's train.json (a JSON list of conversations; all 45,889 passages) or a SLIMER-style
    .jsonl sample of it (one (passage, type) question a line, as in ../shared/data/pile_ner/)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return _from_questions(path, list(srsly.read_jsonl(path)))
    return _from_conversations(path, srsly.read_json(path))


def teacher_response(pairs: Iterable[Tuple[str, str]]) -> str:
    """A tuple list as the paper's teacher prompt asks for it: [("entity", "type"), ...]."""
    return "[" + ", ".join(f"({json.dumps(m, ensure_ascii=False)}, {json.dumps(t, ensure_ascii=False)})" for m, t in pairs) + "]"


def _record(passage_id: str, text: str, answers: List[Tuple[str, List[str]]]) -> Dict[str, Any]:
    pairs = [(mention, label) for label, mentions in answers for mention in mentions]
    negatives = [label for label, mentions in answers if not mentions]
    return {"id": passage_id, "text": text, "response": teacher_response(pairs), "meta": {"negative_types": negatives}}


def _from_questions(path: Path, rows: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    answers: Dict[str, List[Tuple[str, List[str]]]] = {}
    texts: Dict[str, str] = {}
    for i, row in enumerate(rows, 1):
        try:
            passage_id = "pile-" + row["doc_question_pairID"].split(":")[0]
            texts[passage_id] = row["input"]
            answers.setdefault(passage_id, []).append((row["tagName"], parse_answer(row["output"]).strings))
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"{path} line {i}: expected doc_question_pairID, tagName, input and output fields ({error!r})"
            ) from error
    for passage_id, text in texts.items():
        yield _record(passage_id, text, answers[passage_id])


def _from_conversations(path: Path, records: Any) -> Iterator[Dict[str, Any]]:
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of {{'id', 'conversations'}} records (Pile-NER-type)")
    for i, record in enumerate(records):
        try:
            turns = [turn["value"] for turn in record["conversations"]]
            if not turns[0].startswith(_TEXT) or turns[1] != READ_REPLY:
                raise ValueError("the conversation does not open with 'Text: ...' and the read reply")
            answers = []
            for question, answer in zip(turns[2::2], turns[3::2]):
                match = _QUESTION.match(question)
                if match is None:
                    raise ValueError(f"not a type question: {question[:80]!r}")
                answers.append((match.group(1), parse_answer(answer).strings))
        except (KeyError, TypeError, IndexError, ValueError) as error:
            name = record.get("id") if isinstance(record, dict) else None
            raise ValueError(f"{path} record {i} ({name}): {error}") from error
        yield _record(str(record.get("id", i)), turns[0][len(_TEXT):], answers)

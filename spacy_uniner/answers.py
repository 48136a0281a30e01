"""Tolerant parsing of LLM answers as they are really written: the student's JSON list of strings,
and the teacher's list of ("entity", "type") tuples."""
import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from .prompts import TURN_ENDS

_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SINGLE_QUOTED = re.compile(r"'([^']*)'")
_QUOTED = r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"""
_PAIR = re.compile(rf"\(\s*({_QUOTED})\s*,\s*({_QUOTED})\s*\)")
_JSON = json.JSONDecoder()


@dataclass
class ParsedAnswer:
    strings: List[str] = field(default_factory=list)
    # False when no well-formed list opened the answer (garbage, truncation, prose): what was
    # readable was still salvaged into `strings`.
    well_formed: bool = False
    # Items that were in the answer but are no usable mention: non-strings, empty strings.
    dropped: int = 0


def parse_answer(answer: str) -> ParsedAnswer:
    """Read the first list in an answer; never raises.

    Accepts trailing text after the list, Python-style single quotes, and a list cut off by the token
    limit (its complete strings are kept). Duplicates are removed, first occurrence kept.
    """
    answer = answer.split(TURN_ENDS[1], 1)[0]
    start = answer.find("[")
    if start < 0:
        return ParsedAnswer()
    items = _read_list(answer[start:])
    well_formed = items is not None
    if items is None:
        items = _salvage_strings(answer[start:])
    parsed = ParsedAnswer(well_formed=well_formed)
    seen = set()  # beside the list: a lookup in it would make a long answer's parse quadratic
    for item in items:
        if not isinstance(item, str) or not item.strip():
            parsed.dropped += 1
        elif item.strip() not in seen:
            seen.add(item.strip())
            parsed.strings.append(item.strip())
    return parsed


def _read_list(text: str) -> Any:
    try:
        value, _ = _JSON.raw_decode(text)
    except (ValueError, RecursionError):
        value = None
        # Single-quoted lists: try each closing bracket, shortest first; a "]" can sit in a string.
        for match in re.finditer(r"\]", text):
            try:
                value = ast.literal_eval(text[: match.end()])
                break
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
    return value if isinstance(value, list) else None


def _salvage_strings(text: str) -> List[str]:
    strings = []
    for match in _DOUBLE_QUOTED.finditer(text):
        try:
            strings.append(json.loads(f'"{match.group(1)}"'))
        except ValueError:
            strings.append(match.group(1))
    return strings or _SINGLE_QUOTED.findall(text)


@dataclass
class TeacherAnswer:
    pairs: List[Tuple[str, str]] = field(default_factory=list)
    # False when no list opened the answer and the pairs were salvaged tuple by tuple.
    well_formed: bool = False
    # Items that are no (entity, type) pair of non-empty strings.
    dropped: int = 0


def parse_teacher_answer(answer: str) -> TeacherAnswer:
    """Read the teacher's list of ("entity", "type") pairs; never raises.

    Takes Python tuples, JSON arrays or {"entity", "type"} objects, with code fences or prose around
    the list. When no list reads (a missing comma, an answer cut off), every complete
    ("entity", "type") tuple in the answer is salvaged. Duplicate pairs are removed.
    """
    start = answer.find("[")
    items = _read_list(answer[start:]) if start >= 0 else None
    parsed = TeacherAnswer(well_formed=items is not None)
    if items is None:
        items = [(_unquote(m.group(1)), _unquote(m.group(2))) for m in _PAIR.finditer(answer)]
    seen = set()
    for item in items:
        pair = _as_pair(item)
        if pair is None:
            parsed.dropped += 1
        elif pair not in seen:
            seen.add(pair)
            parsed.pairs.append(pair)
    return parsed


def _as_pair(item: Any) -> Optional[Tuple[str, str]]:
    if isinstance(item, dict):
        item = (item.get("entity", item.get("name")), item.get("type", item.get("entity_type")))
    if isinstance(item, (list, tuple)) and len(item) == 2:
        mention, label = item
        if isinstance(mention, str) and isinstance(label, str) and mention.strip() and label.strip():
            return mention.strip(), " ".join(label.split())
    return None


def _unquote(literal: str) -> str:
    try:
        return ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return literal[1:-1]

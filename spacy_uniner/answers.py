"""Tolerant parsing of the model's answer: a JSON list of strings, as small models really write it."""
import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, List

from .prompts import TURN_ENDS

_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SINGLE_QUOTED = re.compile(r"'([^']*)'")
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
    for item in items:
        if not isinstance(item, str) or not item.strip():
            parsed.dropped += 1
        elif item.strip() not in parsed.strings:
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

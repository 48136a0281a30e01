"""Constrained decoding (the component's `constrained` flag): an answer may only be a JSON list of
strings that occur in the passage. Greedy decoding takes, at each step, the best token that keeps
the answer a prefix of such a list; when none of the model's best candidates does, the list is
closed where it stands."""
import json
import re
from typing import Optional

WHITESPACE = re.compile(r"\s+")


def passage_key(text: str) -> str:
    """Text as the check compares it: case-folded, without whitespace, since tokenizers decode
    with their own spacing (BERT's "u. s." for "u.s.") and case (uncased vocabularies)."""
    return WHITESPACE.sub("", text.casefold())


class PassageConstraint:
    """Which answers are allowed for one passage."""

    def __init__(self, passage: str):
        self.passage = passage_key(passage)

    def state(self, answer: str) -> Optional[str]:
        """Where a JSON list of passage strings stands after `answer`: "start" (nothing yet),
        "value" (after "[": a string or "]" may follow), "item" (after ",": a string must follow),
        "string" (inside one), "next" ("," or "]" may follow), "closed"; None when `answer` cannot
        begin such a list."""
        position, end = 0, len(answer)

        def skip_space(at: int) -> int:
            while at < end and answer[at].isspace():
                at += 1
            return at

        position = skip_space(position)
        if position == end:
            return "start"
        if answer[position] != "[":
            return None
        state = "value"
        position += 1
        while True:
            position = skip_space(position)
            if position == end:
                return state
            char = answer[position]
            if char == "]" and state in ("value", "next"):
                return "closed" if skip_space(position + 1) == end else None
            if char == "," and state == "next":
                state, position = "item", position + 1
                continue
            if char != '"' or state not in ("value", "item"):
                return None
            closing = self._string_end(answer, position + 1)
            content = answer[position + 1 : end if closing is None else closing]
            if passage_key(self._unescape(content)) not in self.passage:
                return None
            if closing is None:
                return "string"
            state, position = "next", closing + 1

    def allows(self, answer: str) -> bool:
        return self.state(answer) is not None

    def close(self, answer: str) -> str:
        """The shortest completion of an allowed `answer` to a JSON list."""
        state = self.state(answer)
        if state == "start":
            return "[]"
        if state == "string":
            return answer + '"]'
        if state == "item":
            return answer.rstrip()[:-1] + "]"
        if state in ("value", "next"):
            return answer + "]"
        return answer

    @staticmethod
    def _string_end(answer: str, start: int) -> Optional[int]:
        """The index of the quote that ends a JSON string starting at `start`, or None if open."""
        position = start
        while position < len(answer):
            if answer[position] == "\\":
                position += 2
                continue
            if answer[position] == '"':
                return position
            position += 1
        return None

    @staticmethod
    def _unescape(content: str) -> str:
        """A JSON string's content, decoded where complete (a trailing half escape is dropped)."""
        for cut in (content, content[:-1]):
            try:
                return json.loads(f'"{cut}"')
            except ValueError:
                continue
        return content

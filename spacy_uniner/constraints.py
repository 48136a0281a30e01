"""Constrained decoding (the component's `constrained` flag): an answer may only be a JSON list of
strings that occur in the passage. Greedy decoding takes, at each step, the best token that keeps
the answer a prefix of such a list; when none of the model's best candidates does, the list is
closed where it stands."""
import json
import re
from typing import Iterator, Optional

WHITESPACE = re.compile(r"\s+")
# What a tokenizer's `decode` writes for bytes that do not (yet) make a character: a byte-level
# vocabulary writes a CJK, Cyrillic or Greek letter as several tokens, the first ending mid-character.
REPLACEMENT = "\ufffd"


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
            content = self._unescape(answer[position + 1 : end if closing is None else closing])
            if not self.holds(content, open_string=closing is None):
                return None
            if closing is None:
                return "string"
            state, position = "next", closing + 1

    def holds(self, content: str, open_string: bool) -> bool:
        """Whether the passage holds `content`. A string still being written may end in the first
        bytes of a character (decoded as U+FFFD): it is held where the passage has, after the text
        before them, a character that takes more bytes than that in UTF-8. Whether those bytes are
        that character's first ones is checked at the next token, which completes it."""
        key = passage_key(content)
        if key in self.passage:
            return True
        whole = content.rstrip(REPLACEMENT)
        partial = len(content) - len(whole)
        if not open_string or not partial:
            return False
        key = passage_key(whole)
        return any(
            len(self.passage[found + len(key)].encode("utf8")) > partial
            for found in occurrences(self.passage, key)
            if found + len(key) < len(self.passage)
        )

    def allows(self, answer: str) -> bool:
        return self.state(answer) is not None

    def close(self, answer: str) -> str:
        """The shortest completion of an allowed `answer` to a JSON list."""
        state = self.state(answer)
        if state == "start":
            return "[]"
        if state == "string":
            return answer.rstrip(REPLACEMENT) + '"]'
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


def occurrences(text: str, part: str) -> Iterator[int]:
    """Where `part` starts in `text`, overlaps included."""
    found = text.find(part)
    while found != -1:
        yield found
        found = text.find(part, found + 1)

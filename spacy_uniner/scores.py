"""How sure the student was of each mention it wrote: the probability it gave the mention while it
decoded its answer greedily, read from the logits that decoding computes anyway.

A mention's score is the product of the probabilities of the answer tokens that overlap its quoted
string, both quotes included. The opening quote carries the choice to write a mention at all (`["`
against `[]`, or `", "` against `"]`), the closing quote the choice of where it ends, and the tokens
between them its words.
"""
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, Iterable, List, Optional, Sequence, Tuple

QUOTES = "\"'"


@dataclass
class ScoredAnswer:
    """An answer's text with, per generated token, where it ends in `text` and its log-probability.
    Without tokens (a generator that gives no scores) every mention scores 1.0."""

    text: str
    token_ends: List[int] = field(default_factory=list)
    token_logprobs: List[float] = field(default_factory=list)

    @classmethod
    def from_raw(cls, raw: str, raw_ends: Iterable[int], logprobs: Iterable[float]) -> "ScoredAnswer":
        """An answer as read (`raw` stripped) from its tokens' ends in `raw` and log-probabilities:
        the ends move with the strip, in order, and stay inside the text (a token past a cut marker
        ends at the text's end)."""
        text = raw.strip()
        lead = len(raw) - len(raw.lstrip())
        ends, end = [], 0
        for raw_end in raw_ends:
            end = max(end, min(len(text), raw_end - lead))
            ends.append(end)
        return cls(text, ends, [float(logprob) for logprob in logprobs])

    def mention_scores(self, mentions: List[str]) -> List[float]:
        """The score of each mention, looked up in answer order. A mention the answer does not spell
        as such (an escape the parser resolved) gets the probability of the whole answer."""
        scores, cursor = [], 0
        for mention in mentions:
            found = self._locate(mention, cursor)
            if found is None:
                scores.append(self._probability(0, len(self.text)))
                continue
            start, end = found
            scores.append(self._probability(start, end))
            cursor = end
        return scores

    def _locate(self, mention: str, cursor: int) -> Optional[Tuple[int, int]]:
        """Characters of `mention` in the answer with its quotes, the first occurrence after
        `cursor` (or anywhere, for a mention the parser moved, e.g. by dropping a duplicate)."""
        spellings = list(dict.fromkeys([json.dumps(mention, ensure_ascii=False)[1:-1], mention]))
        for begin in (cursor, 0):
            for spelling in spellings:
                start = self.text.find(spelling, begin)
                if start >= 0:
                    end = start + len(spelling)
                    start -= start > 0 and self.text[start - 1] in QUOTES
                    end += end < len(self.text) and self.text[end] in QUOTES
                    return start, end
        return None

    def _probability(self, start: int, end: int) -> float:
        total, token_start = 0.0, 0
        for token_end, logprob in zip(self.token_ends, self.token_logprobs):
            if token_start < end and token_end > start:
                total += logprob
            token_start = token_end
        return math.exp(total)


def scored_answers(generator: Any, prompts: List[str]) -> List[ScoredAnswer]:
    """A generator's answers with scores when it gives them (`generate_scored`), else unscored."""
    generate_scored = getattr(generator, "generate_scored", None)
    if generate_scored is not None:
        return generate_scored(prompts)
    return [ScoredAnswer(text) for text in generator.generate(prompts)]


def within_label_margin(mentions: Sequence[Tuple[Hashable, float]], margin: float) -> List[bool]:
    """For each (mention, score), the mention as found under one label: whether its score is within
    `margin` of the best score the same mention got under any label. A string is rarely of several
    types at once, so where the model was much surer of one label the others are dropped; a margin
    of 1.0 keeps every label (the paper's protocol, which asks and scores each type alone)."""
    best: Dict[Hashable, float] = {}
    for mention, score in mentions:
        best[mention] = max(best.get(mention, 0.0), score)
    return [score >= best[mention] - margin for mention, score in mentions]

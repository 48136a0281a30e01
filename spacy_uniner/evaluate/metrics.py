"""The paper's metric, as its evaluate.py computes it, so numbers compare with the paper.

Per (sentence, type) query the answer's strings are normalized (lower case, no punctuation, no
articles a/an/the, single spaces) and deduplicated; a predicted string is correct when the gold list
of the same query holds it. Precision, recall and F1 are micro averages over all queries.
"""
import json
import re
import string
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Sequence, Tuple

from ..scores import ScoredAnswer, within_label_margin

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
# The reference parser reads only a list that opens the answer, up to the first "]", on one line.
_LEADING_LIST = re.compile(r"\[(.*?)\]")
_EPSILON = 1e-10  # the reference's guard against empty denominators, kept so scores match exactly


def normalize_mention(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def paper_items(answer: str) -> List[str]:
    """An answer's strings as the reference reads them: only a JSON list of strings at the very
    start of the answer, up to its first "]", counts; anything else (prose first, a "]" inside a
    string, a nested list, a number) is an empty answer."""
    match = _LEADING_LIST.match(answer)
    try:
        items = json.loads(match.group()) if match else []
    except ValueError:
        return []
    return items if all(isinstance(item, str) for item in items) else []


def paper_parse(answer: str) -> List[str]:
    """The normalized, deduplicated strings of an answer (see `paper_items`)."""
    return list(dict.fromkeys(normalize_mention(item) for item in paper_items(answer)))


def paper_parse_scored(answer: ScoredAnswer) -> Tuple[List[str], List[float]]:
    """`paper_parse` with each string's score, the best of the mentions normalized to it."""
    items = paper_items(answer.text)
    best: Dict[str, float] = {}
    for item, score in zip(items, answer.mention_scores(items)):
        key = normalize_mention(item)
        best[key] = max(best.get(key, 0.0), score)
    return list(best), list(best.values())


@dataclass
class PRF:
    correct: int = 0
    predicted: int = 0
    gold: int = 0

    @property
    def precision(self) -> float:
        return self.correct / (self.predicted + _EPSILON)

    @property
    def recall(self) -> float:
        return self.correct / (self.gold + _EPSILON)

    @property
    def f1(self) -> float:
        return 2 * self.precision * self.recall / (self.precision + self.recall + _EPSILON)

    def add(self, predicted: List[str], gold: List[str]) -> None:
        self.correct += sum(item in gold for item in predicted)
        self.predicted += len(predicted)
        self.gold += len(gold)

    def scores(self) -> dict:
        return {"p": self.precision, "r": self.recall, "f": self.f1, "correct": self.correct, "predicted": self.predicted, "gold": self.gold}


def kept_by_query(records: Sequence[Dict[str, Any]], threshold: float, label_margin: float = 1.0) -> List[List[str]]:
    """Each record's predicted strings that count, as the component keeps mentions: those scoring
    at least `threshold` (all of them at 0) and, among the records of one sentence (one a type),
    within `label_margin` of the best score the same string got under any type (every one at 1.0,
    the paper's protocol)."""
    kept = [[(item, score) for item, score in zip(record["parsed"], record["scores"]) if score >= threshold] for record in records]
    within = iter(within_label_margin([((record["dataset"], record["sentence"], item), score) for record, items in zip(records, kept) for item, score in items], label_margin))
    return [[item for item, _ in items if next(within)] for items in kept]


def threshold_scores(records: Iterable[Dict[str, Any]], thresholds: Sequence[float], label_margin: float = 1.0) -> List[Dict[str, float]]:
    """The paper metric over `records` (with "dataset", "sentence", "parsed", "scores" and "gold")
    counting, at each threshold, the strings `kept_by_query` keeps."""
    records = list(records)
    rows = []
    for threshold in thresholds:
        total = PRF()
        for record, kept in zip(records, kept_by_query(records, threshold, label_margin)):
            if record["gold"] is not None:  # a query the paper's file leaves out is not in its metric
                total.add(kept, record["gold"])
        rows.append({"threshold": threshold, **total.scores()})
    return rows


def paper_scores(answers: Iterable[Tuple[str, str]]) -> PRF:
    """Micro P/R/F over (predicted answer, gold answer) pairs, one pair per (sentence, type) query."""
    total = PRF()
    for predicted, gold in answers:
        total.add(paper_parse(predicted), paper_parse(gold))
    return total

"""Answer strings -> character offsets -> token spans, and the choice of `doc.ents` among them."""
import re
from typing import Iterable, List, Tuple

from spacy.tokens import Doc, Span
from spacy.util import filter_spans


def find_mention(text: str, mention: str) -> List[Tuple[int, int]]:
    """Character offsets of every occurrence of `mention` in `text`.

    Exact case wins; only when there is no exact occurrence are case-insensitive ones used (uncased
    models answer in lower case). Whitespace runs match any whitespace run, and a mention that starts
    or ends with a word character must not start or end inside a word ("AI" is not in "said").
    """
    parts = mention.split()
    if not parts:
        return []
    pattern = r"\s+".join(re.escape(part) for part in parts)
    if re.match(r"\w", parts[0]):
        pattern = r"(?<!\w)" + pattern
    if re.search(r"\w$", parts[-1]):
        pattern += r"(?!\w)"
    for flags in (0, re.IGNORECASE):
        found = [m.span() for m in re.finditer(pattern, text, flags)]
        if found:
            return found
    return []


def mention_spans(window: Span, mention: str, label: str) -> List[Span]:
    """The token spans of `mention` inside `window`, labelled, snapped outward to token boundaries."""
    doc = window.doc
    spans = []
    for start, end in find_mention(window.text, mention):
        span = doc.char_span(
            window.start_char + start, window.start_char + end, label=label, alignment_mode="expand"
        )
        if span is not None:
            spans.append(span)
    return spans


def resolve_ents(doc: Doc, candidates: Iterable[Span], overwrite: bool) -> Tuple[Span, ...]:
    """Non-overlapping entities: longest candidate first (then the earliest); existing entities win
    every conflict unless `overwrite`, in which case the new candidates win."""
    new = filter_spans(candidates)
    existing = list(doc.ents)
    winners, others = (new, existing) if overwrite else (existing, new)
    taken = set()
    for span in winners:
        taken.update(range(span.start, span.end))
    kept = [span for span in others if taken.isdisjoint(range(span.start, span.end))]
    return tuple(sorted(winners + kept, key=lambda span: span.start))
